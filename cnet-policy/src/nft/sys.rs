//! The one place that touches libnftnl directly (through `nftnl::nftnl_sys`).
//!
//! nftnl's safe API lacks what the IR needs: the interval and map flags on named sets,
//! concatenated keys (`NFTA_SET_DESC_CONCAT`, `KEY_END`), verdict maps, loads into chosen
//! registers, inverted lookups, `range`, `log prefix`, and parsing of dumps. This module
//! builds every netlink message of a batch from owned libnftnl objects, except set elements,
//! whose attributes it encodes itself (thousands per message, one buffer each, no per-element
//! allocation), and parses the few read-back messages we need. All `unsafe` of the crate's nftables layer is here; each block
//! states the contract it relies on.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;
use nftnl::{MsgType, NlMsg};

use super::ir::{
    ChainKind, ChainPolicy, CtState, Element, Expr, Family, Field, Hook, KeyType, MatchOp, Rule,
    SetDecl, TableId, Value, Verdict,
};
use super::validate::padded_len;

pub mod socket;

/// `NFT_SET_CONSTANT` (not in libc).
const NFT_SET_CONSTANT: u32 = 0x2;
/// `NFT_SET_CONCAT` (not in libc): the key is a concatenation stored with `KEY_END` ranges.
const NFT_SET_CONCAT: u32 = 0x80;
/// First 32-bit data register.
const REG32_00: u32 = libc::NFT_REG32_00 as u32;
/// The verdict register.
const REG_VERDICT: u32 = libc::NFT_REG_VERDICT as u32;
/// Budget for the element payload of one NEWSETELEM message (the attribute length is 16 bits).
const ELEM_MSG_BUDGET: usize = 48 * 1024;

/// The kernel family number of a table family.
pub fn family_number(f: Family) -> u16 {
    (match f {
        Family::Inet => libc::NFPROTO_INET,
        Family::Ip => libc::NFPROTO_IPV4,
        Family::Ip6 => libc::NFPROTO_IPV6,
        Family::Bridge => libc::NFPROTO_BRIDGE,
    }) as u16
}

fn cstring(s: &str) -> CString {
    // Names, comments and prefixes are validated to contain no NUL; strip defensively.
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Which libnftnl object a message carries.
enum Obj {
    Table(NonNull<sys::nftnl_table>),
    Chain(NonNull<sys::nftnl_chain>),
    Rule(NonNull<sys::nftnl_rule>),
    Set(NonNull<sys::nftnl_set>),
    /// NEWSETELEM/DELSETELEM attributes encoded by [`elems`] itself (no libnftnl objects:
    /// one buffer per message instead of an allocation per element).
    RawElems(Vec<u8>),
}

/// One netlink message of a batch: an owned libnftnl object, the message type and flags.
pub struct Msg {
    obj: Obj,
    msg_type: u16,
    family: u16,
    flags: u16,
}

// SAFETY: a Msg exclusively owns its libnftnl object; libnftnl objects have no thread
// affinity.
unsafe impl Send for Msg {}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Msg(type {}, family {})", self.msg_type, self.family)
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        // SAFETY: each pointer came from the matching *_alloc, is owned by this Msg only,
        // and is freed exactly once here.
        unsafe {
            match self.obj {
                Obj::Table(p) => sys::nftnl_table_free(p.as_ptr()),
                Obj::Chain(p) => sys::nftnl_chain_free(p.as_ptr()),
                Obj::Rule(p) => sys::nftnl_rule_free(p.as_ptr()),
                Obj::Set(p) => sys::nftnl_set_free(p.as_ptr()),
                Obj::RawElems(_) => {}
            }
        }
    }
}

// SAFETY: `write` builds one message whose size is bounded by nft_nlmsg_maxsize(): tables,
// chains, sets and rules are small, and element messages are split by `elems` to stay under
// ELEM_MSG_BUDGET (< 64 KiB), which is what the batch reserves per message.
unsafe impl NlMsg for Msg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _msg_type: MsgType) {
        // SAFETY: forwarded contract (buffer of at least nft_nlmsg_maxsize() bytes).
        unsafe { self.write_flags(buf, seq, self.flags) }
    }
}

/// A batch message written without `NLM_F_ACK`: the kernel replies to it only if it fails
/// (errors are always reported), which saves one ACK datagram per message.
pub struct Quiet<'a>(pub &'a Msg);

// SAFETY: as for Msg; only the flags differ.
unsafe impl NlMsg for Quiet<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _msg_type: MsgType) {
        // SAFETY: forwarded contract.
        unsafe {
            self.0
                .write_flags(buf, seq, self.0.flags & !(libc::NLM_F_ACK as u16))
        }
    }
}

impl Msg {
    /// # Safety
    /// `buf` must have room for nft_nlmsg_maxsize() bytes.
    unsafe fn write_flags(&self, buf: *mut c_void, seq: u32, flags: u16) {
        // SAFETY: the caller (nftnl::Batch) passes a buffer of at least nft_nlmsg_maxsize()
        // bytes; the objects are valid and owned by self.
        unsafe {
            let nlh = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                self.msg_type,
                self.family,
                flags,
                seq,
            );
            match self.obj {
                Obj::Table(p) => sys::nftnl_table_nlmsg_build_payload(nlh, p.as_ptr()),
                Obj::Chain(p) => sys::nftnl_chain_nlmsg_build_payload(nlh, p.as_ptr()),
                Obj::Rule(p) => sys::nftnl_rule_nlmsg_build_payload(nlh, p.as_ptr()),
                Obj::Set(p) => sys::nftnl_set_nlmsg_build_payload(nlh, p.as_ptr()),
                Obj::RawElems(ref attrs) => {
                    // The attributes follow the header (nlmsg_len is 4-aligned); their total
                    // stays under ELEM_MSG_BUDGET + names, within the reserved size.
                    let len = (*nlh).nlmsg_len as usize;
                    std::ptr::copy_nonoverlapping(
                        attrs.as_ptr(),
                        nlh.cast::<u8>().add(len),
                        attrs.len(),
                    );
                    (*nlh).nlmsg_len = (len + attrs.len()) as u32;
                }
            }
        }
    }
}

fn flags(extra: i32) -> u16 {
    (libc::NLM_F_ACK | extra) as u16
}

fn new_table(id: &TableId) -> NonNull<sys::nftnl_table> {
    let name = cstring(&id.name);
    // SAFETY: alloc returns a fresh object or NULL (checked); setters copy the string.
    unsafe {
        let t = NonNull::new(sys::nftnl_table_alloc()).unwrap_or_else(|| std::process::abort());
        sys::nftnl_table_set_u32(
            t.as_ptr(),
            sys::NFTNL_TABLE_FAMILY as u16,
            u32::from(family_number(id.family)),
        );
        sys::nftnl_table_set_str(t.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
        sys::nftnl_table_set_u32(t.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16, 0);
        t
    }
}

/// `add table` (no EXCL: a no-op when it exists) or `delete table`.
pub fn table(id: &TableId, add: bool) -> Msg {
    let (msg_type, fl) = if add {
        (libc::NFT_MSG_NEWTABLE, flags(libc::NLM_F_CREATE))
    } else {
        (libc::NFT_MSG_DELTABLE, flags(0))
    };
    Msg {
        obj: Obj::Table(new_table(id)),
        msg_type: msg_type as u16,
        family: family_number(id.family),
        flags: fl,
    }
}

fn new_chain(table: &TableId, name: &str) -> NonNull<sys::nftnl_chain> {
    let t = cstring(&table.name);
    let n = cstring(name);
    // SAFETY: fresh object (NULL checked); setters copy strings.
    unsafe {
        let c = NonNull::new(sys::nftnl_chain_alloc()).unwrap_or_else(|| std::process::abort());
        sys::nftnl_chain_set_u32(
            c.as_ptr(),
            sys::NFTNL_CHAIN_FAMILY as u16,
            u32::from(family_number(table.family)),
        );
        sys::nftnl_chain_set_str(c.as_ptr(), sys::NFTNL_CHAIN_TABLE as u16, t.as_ptr());
        sys::nftnl_chain_set_str(c.as_ptr(), sys::NFTNL_CHAIN_NAME as u16, n.as_ptr());
        c
    }
}

fn hook_number(h: Hook) -> u32 {
    (match h {
        Hook::Prerouting => libc::NF_INET_PRE_ROUTING,
        Hook::Input => libc::NF_INET_LOCAL_IN,
        Hook::Forward => libc::NF_INET_FORWARD,
        Hook::Output => libc::NF_INET_LOCAL_OUT,
        Hook::Postrouting => libc::NF_INET_POST_ROUTING,
    }) as u32
}

/// `add chain` (base chains get type filter, hook, priority, policy).
pub fn add_chain(table: &TableId, name: &str, kind: ChainKind) -> Msg {
    let c = new_chain(table, name);
    if let ChainKind::Base {
        hook,
        priority,
        policy,
    } = kind
    {
        let pol = match policy {
            ChainPolicy::Accept => libc::NF_ACCEPT,
            ChainPolicy::Drop => libc::NF_DROP,
        } as u32;
        // SAFETY: c is a valid chain; setters copy values.
        unsafe {
            sys::nftnl_chain_set_u32(
                c.as_ptr(),
                sys::NFTNL_CHAIN_HOOKNUM as u16,
                hook_number(hook),
            );
            sys::nftnl_chain_set_s32(c.as_ptr(), sys::NFTNL_CHAIN_PRIO as u16, priority);
            sys::nftnl_chain_set_u32(c.as_ptr(), sys::NFTNL_CHAIN_POLICY as u16, pol);
            sys::nftnl_chain_set_str(c.as_ptr(), sys::NFTNL_CHAIN_TYPE as u16, c"filter".as_ptr());
        }
    }
    Msg {
        obj: Obj::Chain(c),
        msg_type: libc::NFT_MSG_NEWCHAIN as u16,
        family: family_number(table.family),
        flags: flags(libc::NLM_F_CREATE),
    }
}

/// `delete chain`.
pub fn delete_chain(table: &TableId, name: &str) -> Msg {
    Msg {
        obj: Obj::Chain(new_chain(table, name)),
        msg_type: libc::NFT_MSG_DELCHAIN as u16,
        family: family_number(table.family),
        flags: flags(0),
    }
}

fn new_rule(table: &TableId, chain: &str) -> NonNull<sys::nftnl_rule> {
    let t = cstring(&table.name);
    let c = cstring(chain);
    // SAFETY: fresh object (NULL checked); setters copy strings.
    unsafe {
        let r = NonNull::new(sys::nftnl_rule_alloc()).unwrap_or_else(|| std::process::abort());
        sys::nftnl_rule_set_u32(
            r.as_ptr(),
            sys::NFTNL_RULE_FAMILY as u16,
            u32::from(family_number(table.family)),
        );
        sys::nftnl_rule_set_str(r.as_ptr(), sys::NFTNL_RULE_TABLE as u16, t.as_ptr());
        sys::nftnl_rule_set_str(r.as_ptr(), sys::NFTNL_RULE_CHAIN as u16, c.as_ptr());
        r
    }
}

/// `flush chain`: DELRULE without a handle deletes every rule of the chain.
pub fn flush_chain(table: &TableId, chain: &str) -> Msg {
    Msg {
        obj: Obj::Rule(new_rule(table, chain)),
        msg_type: libc::NFT_MSG_DELRULE as u16,
        family: family_number(table.family),
        flags: flags(0),
    }
}

/// Key length in bytes as the kernel sees it (concatenations are register-padded).
fn key_len(key: &[KeyType]) -> usize {
    if key.len() == 1 {
        key[0].byte_len()
    } else {
        key.iter().map(|k| padded_len(*k)).sum()
    }
}

/// nft's concatenated datatype number: 6 bits per field.
fn key_datatype(key: &[KeyType]) -> u32 {
    key.iter().fold(0u32, |acc, k| (acc << 6) | k.datatype())
}

fn concat_interval(d: &SetDecl) -> bool {
    d.interval && d.key.len() > 1
}

fn new_set(table: &TableId, d: &SetDecl) -> NonNull<sys::nftnl_set> {
    let t = cstring(&table.name);
    let n = cstring(&d.name);
    // SAFETY: fresh object (NULL checked); setters copy strings.
    unsafe {
        let s = NonNull::new(sys::nftnl_set_alloc()).unwrap_or_else(|| std::process::abort());
        sys::nftnl_set_set_str(s.as_ptr(), sys::NFTNL_SET_TABLE as u16, t.as_ptr());
        sys::nftnl_set_set_str(s.as_ptr(), sys::NFTNL_SET_NAME as u16, n.as_ptr());
        sys::nftnl_set_set_u32(
            s.as_ptr(),
            sys::NFTNL_SET_FAMILY as u16,
            u32::from(family_number(table.family)),
        );
        s
    }
}

/// `add set` / `add map` with its flags and key description, or `delete set`.
pub fn set(table: &TableId, d: &SetDecl, add: bool, id: u32) -> Msg {
    let s = new_set(table, d);
    if add {
        let mut fl = 0u32;
        if d.constant {
            fl |= NFT_SET_CONSTANT;
        }
        if d.interval {
            fl |= libc::NFT_SET_INTERVAL as u32;
        }
        if d.verdict_map {
            fl |= libc::NFT_SET_MAP as u32;
        }
        if d.key.len() > 1 {
            // The kernel wants the CONCAT flag exactly when the description has > 1 field.
            fl |= NFT_SET_CONCAT;
        }
        let fields: Vec<u8> = d.key.iter().map(|k| k.byte_len() as u8).collect();
        // SAFETY: s is valid; set_data copies at most 16 field lengths (validated: a key has
        // at most 16 registers, so at most 16 fields).
        unsafe {
            let p = s.as_ptr();
            sys::nftnl_set_set_u32(p, sys::NFTNL_SET_FLAGS as u16, fl);
            sys::nftnl_set_set_u32(p, sys::NFTNL_SET_KEY_TYPE as u16, key_datatype(&d.key));
            sys::nftnl_set_set_u32(p, sys::NFTNL_SET_KEY_LEN as u16, key_len(&d.key) as u32);
            sys::nftnl_set_set_u32(p, sys::NFTNL_SET_ID as u16, id);
            if d.verdict_map {
                sys::nftnl_set_set_u32(p, sys::NFTNL_SET_DATA_TYPE as u16, libc::NFT_DATA_VERDICT);
            }
            if d.key.len() == 1 {
                set_key_byteorder(p, d.key[0]);
            }
            if d.key.len() > 1 {
                sys::nftnl_set_set_data(
                    p,
                    sys::NFTNL_SET_DESC_CONCAT as u16,
                    fields.as_ptr().cast::<c_void>(),
                    fields.len() as u32,
                );
            }
        }
    }
    let (msg_type, fl) = if add {
        (
            libc::NFT_MSG_NEWSET,
            flags(libc::NLM_F_CREATE | libc::NLM_F_EXCL),
        )
    } else {
        (libc::NFT_MSG_DELSET, flags(0))
    };
    Msg {
        obj: Obj::Set(s),
        msg_type: msg_type as u16,
        family: family_number(table.family),
        flags: fl,
    }
}

/// Tell `nft list` the key's byte order (nft's BYTEORDER_HOST_ENDIAN = 1 for strings like
/// ifname, BYTEORDER_BIG_ENDIAN = 2 for addresses and ports) so it prints elements right.
///
/// # Safety
/// `p` must be a valid set object.
unsafe fn set_key_byteorder(p: *mut sys::nftnl_set, k: KeyType) {
    let order: u32 = if k == KeyType::Ifname { 1 } else { 2 };
    // SAFETY: the udata buffer is fresh (NULL checked), a u32 attribute fits its size; the
    // set copies the bytes; the buffer is freed once.
    unsafe {
        let Some(buf) = NonNull::new(sys::nftnl_udata_buf_alloc(64)) else {
            std::process::abort()
        };
        if sys::nftnl_udata_put_u32(buf.as_ptr(), sys::NFTNL_UDATA_SET_KEYBYTEORDER as u8, order) {
            sys::nftnl_set_set_data(
                p,
                sys::NFTNL_SET_USERDATA as u16,
                sys::nftnl_udata_buf_data(buf.as_ptr()),
                sys::nftnl_udata_buf_len(buf.as_ptr()),
            );
        }
        sys::nftnl_udata_buf_free(buf.as_ptr());
    }
}

/// Append the bytes the kernel compares for `v` (what [`Value::bytes`] returns, without
/// allocating).
fn value_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::V4(a) => out.extend_from_slice(&a.octets()),
        Value::V6(a) => out.extend_from_slice(&a.octets()),
        Value::Port(p) | Value::EtherType(p) => out.extend_from_slice(&p.to_be_bytes()),
        Value::Proto(p) | Value::Nfproto(p) | Value::Icmpv6Type(p) => out.push(*p),
        Value::Ifname(n) => {
            let at = out.len();
            out.extend_from_slice(n.as_bytes());
            out.resize(at + 16, 0);
        }
    }
}

/// Append the key bytes of one side (start or end) of an element: concatenations padded per
/// field.
fn key_into(out: &mut Vec<u8>, e: &Element, key: &[KeyType], end: bool) {
    for (p, k) in e.0.iter().zip(key) {
        let at = out.len();
        value_into(out, if end { p.end() } else { p.start() });
        if key.len() > 1 {
            out.resize(at + padded_len(*k), 0);
        }
    }
}

/// Key bytes of one side (start or end) of an element: concatenations padded per field.
#[cfg(test)]
fn key_bytes(e: &Element, key: &[KeyType], end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    key_into(&mut out, e, key, end);
    out
}

/// Big-endian `+1` in place; `false` on overflow (the range runs to the top of the type).
fn increment(v: &mut [u8]) -> bool {
    for byte in v.iter_mut().rev() {
        if *byte == 0xff {
            *byte = 0;
        } else {
            *byte += 1;
            return true;
        }
    }
    false
}

/// Big-endian `+1`; `None` on overflow (the range runs to the top of the type).
#[cfg(test)]
fn successor(b: &[u8]) -> Option<Vec<u8>> {
    let mut v = b.to_vec();
    increment(&mut v).then_some(v)
}

fn verdict_code(v: &Verdict) -> (i32, Option<&str>) {
    match v {
        Verdict::Accept => (libc::NF_ACCEPT, None),
        Verdict::Drop => (libc::NF_DROP, None),
        Verdict::Return => (libc::NFT_RETURN, None),
        Verdict::Continue => (libc::NFT_CONTINUE, None),
        Verdict::Jump(c) => (libc::NFT_JUMP, Some(c)),
        Verdict::Goto(c) => (libc::NFT_GOTO, Some(c)),
    }
}

/// Raw kernel elements of one IR element: (key, key_end, interval-end flag, verdict).
#[cfg(test)]
type RawElem<'a> = (Vec<u8>, Option<Vec<u8>>, bool, Option<&'a Verdict>);

/// The raw kernel elements [`encode_entry`] writes for one IR element.
#[cfg(test)]
fn raw_elems<'a>(d: &SetDecl, e: &Element, v: Option<&'a Verdict>) -> Vec<RawElem<'a>> {
    let start = key_bytes(e, &d.key, false);
    if !d.interval {
        return vec![(start, None, false, v)];
    }
    let end = key_bytes(e, &d.key, true);
    if concat_interval(d) {
        return vec![(start, Some(end), false, v)];
    }
    let mut out = vec![(start, None, false, v)];
    if let Some(after) = successor(&end) {
        out.push((after, None, true, None));
    }
    out
}

/// `struct nlattr` flag of nested attributes (libmnl sets it too).
const NLA_F_NESTED: u16 = 0x8000;
// Attribute numbers from linux/netfilter/nf_tables.h that the libc crate lacks.
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// Open an attribute of type `ty` at the end of `buf`; returns its start for [`attr_end`].
fn attr_start(buf: &mut Vec<u8>, ty: u16) -> usize {
    let pos = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&ty.to_ne_bytes());
    pos
}

/// Close the attribute opened at `pos`: write its length (header + payload, unpadded) and pad
/// the buffer to 4 bytes.
fn attr_end(buf: &mut Vec<u8>, pos: usize) {
    let len = (buf.len() - pos) as u16;
    buf[pos..pos + 2].copy_from_slice(&len.to_ne_bytes());
    buf.resize(padded_len_bytes(buf.len()), 0);
}

fn padded_len_bytes(n: usize) -> usize {
    (n + 3) & !3
}

fn attr_bytes(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let a = attr_start(buf, ty);
    buf.extend_from_slice(data);
    attr_end(buf, a);
}

fn attr_strz(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let a = attr_start(buf, ty);
    buf.extend(s.bytes().filter(|b| *b != 0));
    buf.push(0);
    attr_end(buf, a);
}

/// `NFTA_SET_ELEM_KEY`/`KEY_END` { `NFTA_DATA_VALUE` bytes }.
fn attr_key(buf: &mut Vec<u8>, ty: u16, key: &[u8]) {
    let k = attr_start(buf, NLA_F_NESTED | ty);
    attr_bytes(buf, NFTA_DATA_VALUE, key);
    attr_end(buf, k);
}

/// Encode one raw element as an `NFTA_LIST_ELEM` nest (what libnftnl's
/// `nftnl_set_elem_nlmsg_build_payload` writes for these fields).
fn encode_raw(
    buf: &mut Vec<u8>,
    key: &[u8],
    key_end: Option<&[u8]>,
    interval_end: bool,
    verdict: Option<&Verdict>,
) {
    let el = attr_start(buf, NLA_F_NESTED | NFTA_LIST_ELEM);
    if interval_end {
        attr_bytes(
            buf,
            NFTA_SET_ELEM_FLAGS,
            &(libc::NFT_SET_ELEM_INTERVAL_END as u32).to_be_bytes(),
        );
    }
    attr_key(buf, NFTA_SET_ELEM_KEY, key);
    if let Some(k) = key_end {
        attr_key(buf, NFTA_SET_ELEM_KEY_END, k);
    }
    if let Some(v) = verdict {
        let (code, chain) = verdict_code(v);
        let data = attr_start(buf, NLA_F_NESTED | NFTA_SET_ELEM_DATA);
        let vd = attr_start(buf, NLA_F_NESTED | NFTA_DATA_VERDICT);
        attr_bytes(buf, NFTA_VERDICT_CODE, &(code as u32).to_be_bytes());
        if let Some(c) = chain {
            attr_strz(buf, NFTA_VERDICT_CHAIN, c);
        }
        attr_end(buf, vd);
        attr_end(buf, data);
    }
    attr_end(buf, el);
}

/// Encode the kernel elements of one IR element (`scratch` is reused for the key bytes):
/// one element for plain sets; start and `KEY_END` for concatenated intervals (pipapo); for
/// one-field intervals (rbtree) a start element and an interval-end element at end + 1,
/// omitted when the range reaches the top of the type (as nft does).
fn encode_entry(
    buf: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    d: &SetDecl,
    e: &Element,
    v: Option<&Verdict>,
) {
    scratch.clear();
    key_into(scratch, e, &d.key, false);
    if !d.interval {
        encode_raw(buf, scratch, None, false, v);
        return;
    }
    let split = scratch.len();
    key_into(scratch, e, &d.key, true);
    let (start, end) = scratch.split_at_mut(split);
    if concat_interval(d) {
        encode_raw(buf, start, Some(end), false, v);
        return;
    }
    encode_raw(buf, start, None, false, v);
    if increment(end) {
        encode_raw(buf, end, None, true, None);
    }
}

/// `add element` (create semantics: EXCL) or `delete element`, split into messages that
/// each stay under the per-message limit. The attributes are encoded here directly (many
/// elements per message, no per-element libnftnl object).
pub fn elems<'a>(
    table: &TableId,
    d: &SetDecl,
    entries: impl IntoIterator<Item = (&'a Element, &'a Option<Verdict>)>,
    add: bool,
) -> Vec<Msg> {
    let (msg_type, fl) = if add {
        (
            libc::NFT_MSG_NEWSETELEM,
            flags(libc::NLM_F_CREATE | libc::NLM_F_EXCL),
        )
    } else {
        (libc::NFT_MSG_DELSETELEM, flags(0))
    };
    let start_msg = || {
        let mut buf = Vec::with_capacity(4096);
        attr_strz(&mut buf, NFTA_SET_ELEM_LIST_TABLE, &table.name);
        attr_strz(&mut buf, NFTA_SET_ELEM_LIST_SET, &d.name);
        let list = attr_start(&mut buf, NLA_F_NESTED | NFTA_SET_ELEM_LIST_ELEMENTS);
        (buf, list)
    };
    let finish = |(mut buf, list): (Vec<u8>, usize)| {
        attr_end(&mut buf, list);
        Msg {
            obj: Obj::RawElems(buf),
            msg_type: msg_type as u16,
            family: family_number(table.family),
            flags: fl,
        }
    };
    let mut msgs = Vec::new();
    let mut cur = start_msg();
    let mut count = 0usize;
    let mut scratch = Vec::with_capacity(128);
    for (e, v) in entries {
        let before = cur.0.len();
        encode_entry(
            &mut cur.0,
            &mut scratch,
            d,
            e,
            if add { v.as_ref() } else { None },
        );
        if count > 0 && cur.0.len() > ELEM_MSG_BUDGET {
            // Move the element(s) that overflowed into a fresh message.
            let tail = cur.0.split_off(before);
            msgs.push(finish(std::mem::replace(&mut cur, start_msg())));
            cur.0.extend_from_slice(&tail);
            count = 0;
        }
        count += 1;
    }
    if count > 0 {
        msgs.push(finish(cur));
    }
    msgs
}

/// A libnftnl expression under construction.
struct ExprBuf(NonNull<sys::nftnl_expr>);

impl ExprBuf {
    fn new(name: &CStr) -> ExprBuf {
        // SAFETY: name is a NUL-terminated expression name; NULL (unknown name/OOM) aborts.
        let p = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
        ExprBuf(NonNull::new(p).unwrap_or_else(|| std::process::abort()))
    }
    fn u32(self, attr: u32, v: u32) -> ExprBuf {
        // SAFETY: valid expression; value copied.
        unsafe { sys::nftnl_expr_set_u32(self.0.as_ptr(), attr as u16, v) };
        self
    }
    fn data(self, attr: u32, d: &[u8]) -> ExprBuf {
        // SAFETY: valid expression; libnftnl copies `d` (at most 64 bytes: a register value).
        unsafe {
            sys::nftnl_expr_set(
                self.0.as_ptr(),
                attr as u16,
                d.as_ptr().cast::<c_void>(),
                d.len() as u32,
            )
        };
        self
    }
    fn str(self, attr: u32, s: &str) -> ExprBuf {
        let c = cstring(s);
        // SAFETY: valid expression; the string is copied.
        unsafe { sys::nftnl_expr_set_str(self.0.as_ptr(), attr as u16, c.as_ptr()) };
        self
    }
    fn add_to(self, r: NonNull<sys::nftnl_rule>) {
        // SAFETY: the rule takes ownership of the expression.
        unsafe { sys::nftnl_rule_add_expr(r.as_ptr(), self.0.as_ptr()) };
    }
}

fn load(r: NonNull<sys::nftnl_rule>, f: Field, reg: u32) {
    let meta = |key: i32| {
        ExprBuf::new(c"meta")
            .u32(sys::NFTNL_EXPR_META_KEY, key as u32)
            .u32(sys::NFTNL_EXPR_META_DREG, reg)
            .add_to(r)
    };
    let payload = |base: i32, off: u32, len: u32| {
        ExprBuf::new(c"payload")
            .u32(sys::NFTNL_EXPR_PAYLOAD_BASE, base as u32)
            .u32(sys::NFTNL_EXPR_PAYLOAD_OFFSET, off)
            .u32(sys::NFTNL_EXPR_PAYLOAD_LEN, len)
            .u32(sys::NFTNL_EXPR_PAYLOAD_DREG, reg)
            .add_to(r)
    };
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER;
    match f {
        Field::MetaNfproto => meta(libc::NFT_META_NFPROTO),
        Field::MetaProtocol => meta(libc::NFT_META_PROTOCOL),
        Field::MetaL4proto => meta(libc::NFT_META_L4PROTO),
        Field::MetaIifname => meta(libc::NFT_META_IIFNAME),
        Field::MetaOifname => meta(libc::NFT_META_OIFNAME),
        Field::IpSaddr => payload(nh, 12, 4),
        Field::IpDaddr => payload(nh, 16, 4),
        Field::Ip6Saddr => payload(nh, 8, 16),
        Field::Ip6Daddr => payload(nh, 24, 16),
        Field::ThSport => payload(th, 0, 2),
        Field::ThDport => payload(th, 2, 2),
        Field::Icmpv6Type => payload(th, 0, 1),
    }
}

/// Load `fields` into consecutive registers from REG32_00; returns the first register.
fn load_concat(r: NonNull<sys::nftnl_rule>, fields: &[Field]) -> u32 {
    let mut reg = REG32_00;
    for f in fields {
        load(r, *f, reg);
        reg += (padded_len(f.key_type()) / 4) as u32;
    }
    REG32_00
}

fn lookup(r: NonNull<sys::nftnl_rule>, sreg: u32, set: &str, dreg: Option<u32>, invert: bool) {
    let mut e = ExprBuf::new(c"lookup")
        .u32(sys::NFTNL_EXPR_LOOKUP_SREG, sreg)
        .str(sys::NFTNL_EXPR_LOOKUP_SET, set);
    if let Some(d) = dreg {
        e = e.u32(sys::NFTNL_EXPR_LOOKUP_DREG, d);
    }
    if invert {
        e = e.u32(sys::NFTNL_EXPR_LOOKUP_FLAGS, libc::NFT_LOOKUP_F_INV as u32);
    }
    e.add_to(r);
}

fn cmp(r: NonNull<sys::nftnl_rule>, reg: u32, eq: bool, data: &[u8]) {
    let op = if eq {
        libc::NFT_CMP_EQ
    } else {
        libc::NFT_CMP_NEQ
    };
    ExprBuf::new(c"cmp")
        .u32(sys::NFTNL_EXPR_CMP_SREG, reg)
        .u32(sys::NFTNL_EXPR_CMP_OP, op as u32)
        .data(sys::NFTNL_EXPR_CMP_DATA, data)
        .add_to(r);
}

fn range(r: NonNull<sys::nftnl_rule>, reg: u32, eq: bool, a: &Value, b: &Value) {
    let op = if eq {
        libc::NFT_RANGE_EQ
    } else {
        libc::NFT_RANGE_NEQ
    };
    ExprBuf::new(c"range")
        .u32(sys::NFTNL_EXPR_RANGE_SREG, reg)
        .u32(sys::NFTNL_EXPR_RANGE_OP, op as u32)
        .data(sys::NFTNL_EXPR_RANGE_FROM_DATA, &a.bytes())
        .data(sys::NFTNL_EXPR_RANGE_TO_DATA, &b.bytes())
        .add_to(r);
}

fn ct_state(r: NonNull<sys::nftnl_rule>, states: &[CtState], negate: bool) {
    let mask: u32 = states.iter().fold(0, |m, s| m | s.bit());
    ExprBuf::new(c"ct")
        .u32(sys::NFTNL_EXPR_CT_KEY, libc::NFT_CT_STATE as u32)
        .u32(sys::NFTNL_EXPR_CT_DREG, REG32_00)
        .add_to(r);
    ExprBuf::new(c"bitwise")
        .u32(sys::NFTNL_EXPR_BITWISE_SREG, REG32_00)
        .u32(sys::NFTNL_EXPR_BITWISE_DREG, REG32_00)
        .u32(sys::NFTNL_EXPR_BITWISE_LEN, 4)
        .data(sys::NFTNL_EXPR_BITWISE_MASK, &mask.to_ne_bytes())
        .data(sys::NFTNL_EXPR_BITWISE_XOR, &0u32.to_ne_bytes())
        .add_to(r);
    // "any of the states": (state & mask) != 0; negated: == 0.
    cmp(r, REG32_00, negate, &0u32.to_ne_bytes());
}

fn verdict(r: NonNull<sys::nftnl_rule>, v: &Verdict) {
    let (code, chain) = verdict_code(v);
    let mut e = ExprBuf::new(c"immediate")
        .u32(sys::NFTNL_EXPR_IMM_DREG, REG_VERDICT)
        .u32(sys::NFTNL_EXPR_IMM_VERDICT, code as u32);
    if let Some(c) = chain {
        e = e.str(sys::NFTNL_EXPR_IMM_CHAIN, c);
    }
    e.add_to(r);
}

fn comment(r: NonNull<sys::nftnl_rule>, text: &str) {
    let c = cstring(text);
    // SAFETY: the udata buffer is allocated with the comment limit (NULL checked);
    // put_strz refuses (returns false) a string that does not fit; set_data copies the
    // buffer into the rule; the buffer is freed once.
    unsafe {
        let Some(buf) = NonNull::new(sys::nftnl_udata_buf_alloc(sys::NFTNL_UDATA_COMMENT_MAXLEN))
        else {
            std::process::abort()
        };
        if sys::nftnl_udata_put_strz(
            buf.as_ptr(),
            sys::NFTNL_UDATA_RULE_COMMENT as u8,
            c.as_ptr(),
        ) {
            sys::nftnl_rule_set_data(
                r.as_ptr(),
                sys::NFTNL_RULE_USERDATA as u16,
                sys::nftnl_udata_buf_data(buf.as_ptr()),
                sys::nftnl_udata_buf_len(buf.as_ptr()),
            );
        }
        sys::nftnl_udata_buf_free(buf.as_ptr());
    }
}

/// `add rule` (appended at the end of the chain).
pub fn rule(table: &TableId, chain: &str, rule: &Rule) -> Msg {
    let r = new_rule(table, chain);
    for e in &rule.exprs {
        match e {
            Expr::Match { fields, op } => match op {
                MatchOp::Eq(v) | MatchOp::Ne(v) => {
                    load(r, fields[0], REG32_00);
                    cmp(r, REG32_00, matches!(op, MatchOp::Eq(_)), &v.bytes());
                }
                MatchOp::Range(a, b) | MatchOp::NotRange(a, b) => {
                    load(r, fields[0], REG32_00);
                    range(r, REG32_00, matches!(op, MatchOp::Range(..)), a, b);
                }
                MatchOp::InSet(s) | MatchOp::NotInSet(s) => {
                    let reg = load_concat(r, fields);
                    lookup(r, reg, s, None, matches!(op, MatchOp::NotInSet(_)));
                }
            },
            Expr::Vmap { fields, map } => {
                let reg = load_concat(r, fields);
                lookup(r, reg, map, Some(REG_VERDICT), false);
            }
            Expr::CtState { states, negate } => ct_state(r, states, *negate),
            Expr::Counter => ExprBuf::new(c"counter").add_to(r),
            Expr::Notrack => ExprBuf::new(c"notrack").add_to(r),
            Expr::Log { prefix } => ExprBuf::new(c"log")
                .str(sys::NFTNL_EXPR_LOG_PREFIX, prefix)
                .add_to(r),
            Expr::Verdict(v) => verdict(r, v),
        }
    }
    if let Some(c) = &rule.comment {
        comment(r, c);
    }
    Msg {
        obj: Obj::Rule(r),
        msg_type: libc::NFT_MSG_NEWRULE as u16,
        family: family_number(table.family),
        flags: flags(libc::NLM_F_CREATE | libc::NLM_F_APPEND),
    }
}

/// Build a read request (GET*, optionally a dump) into `buf`; returns its length.
/// `table` filters dumps to one table.
pub fn get_request(
    buf: &mut [u8],
    msg_type: i32,
    family: u16,
    dump: bool,
    table: Option<&str>,
    seq: u32,
) -> usize {
    assert!(buf.len() >= 4096, "request buffer too small");
    let fl = if dump {
        (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16
    } else {
        libc::NLM_F_ACK as u16
    };
    let name = table.map(cstring);
    // SAFETY: buf has room for the header and a table-name attribute (checked above: names
    // are at most 64 bytes); the temporary objects are freed after building the payload.
    unsafe {
        let nlh = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            msg_type as u16,
            family,
            fl,
            seq,
        );
        if let Some(n) = &name {
            match msg_type {
                t if t == libc::NFT_MSG_GETTABLE => {
                    let o = sys::nftnl_table_alloc();
                    if o.is_null() {
                        std::process::abort()
                    }
                    sys::nftnl_table_set_str(o, sys::NFTNL_TABLE_NAME as u16, n.as_ptr());
                    sys::nftnl_table_nlmsg_build_payload(nlh, o);
                    sys::nftnl_table_free(o);
                }
                t if t == libc::NFT_MSG_GETCHAIN => {
                    let o = sys::nftnl_chain_alloc();
                    if o.is_null() {
                        std::process::abort()
                    }
                    sys::nftnl_chain_set_str(o, sys::NFTNL_CHAIN_TABLE as u16, n.as_ptr());
                    sys::nftnl_chain_nlmsg_build_payload(nlh, o);
                    sys::nftnl_chain_free(o);
                }
                t if t == libc::NFT_MSG_GETRULE => {
                    let o = sys::nftnl_rule_alloc();
                    if o.is_null() {
                        std::process::abort()
                    }
                    sys::nftnl_rule_set_str(o, sys::NFTNL_RULE_TABLE as u16, n.as_ptr());
                    sys::nftnl_rule_nlmsg_build_payload(nlh, o);
                    sys::nftnl_rule_free(o);
                }
                t if t == libc::NFT_MSG_GETSET => {
                    let o = sys::nftnl_set_alloc();
                    if o.is_null() {
                        std::process::abort()
                    }
                    sys::nftnl_set_set_str(o, sys::NFTNL_SET_TABLE as u16, n.as_ptr());
                    sys::nftnl_set_nlmsg_build_payload(nlh, o);
                    sys::nftnl_set_free(o);
                }
                _ => {}
            }
        }
        (*nlh).nlmsg_len as usize
    }
}

/// What a read-back message says: (family, table, name, handle) of a table, chain, set or
/// rule (rules have the chain as name), or the generation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// NEWGEN: the ruleset generation.
    Gen(u32),
    /// An object: kind (`table`, `chain`, `set`, `rule`), family, table, name, handle.
    Obj {
        /// Object kind.
        kind: &'static str,
        /// Family number.
        family: u32,
        /// Table name.
        table: String,
        /// Name (chain name for rules).
        name: String,
        /// Kernel handle.
        handle: u64,
    },
}

fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libnftnl returns NUL-terminated strings owned by the object, alive here.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Parse one data message of a read-back (its nfnetlink message type tells the kind).
pub fn parse(msg: &[u8]) -> Option<Parsed> {
    if msg.len() < std::mem::size_of::<libc::nlmsghdr>() || msg.as_ptr().align_offset(4) != 0 {
        return None;
    }
    let nlh = msg.as_ptr().cast::<libc::nlmsghdr>();
    // SAFETY: `msg` is one complete netlink message (its length checked by
    // socket::messages) and 4-byte aligned (checked above); the parse functions read within nlmsg_len; every object
    // is freed after its fields are copied out.
    unsafe {
        let ty = i32::from((*nlh).nlmsg_type & 0xff);
        match ty {
            t if t == libc::NFT_MSG_NEWGEN => {
                let g = sys::nftnl_gen_alloc();
                if g.is_null() {
                    std::process::abort()
                }
                let ok = sys::nftnl_gen_nlmsg_parse(nlh, g) >= 0;
                let id = sys::nftnl_gen_get_u32(g, sys::NFTNL_GEN_ID as u16);
                sys::nftnl_gen_free(g);
                ok.then_some(Parsed::Gen(id))
            }
            t if t == libc::NFT_MSG_NEWTABLE => {
                let o = sys::nftnl_table_alloc();
                if o.is_null() {
                    std::process::abort()
                }
                let ok = sys::nftnl_table_nlmsg_parse(nlh, o) >= 0;
                let p = Parsed::Obj {
                    kind: "table",
                    family: sys::nftnl_table_get_u32(o, sys::NFTNL_TABLE_FAMILY as u16),
                    table: owned(sys::nftnl_table_get_str(o, sys::NFTNL_TABLE_NAME as u16)),
                    name: String::new(),
                    handle: sys::nftnl_table_get_u64(o, sys::NFTNL_TABLE_HANDLE as u16),
                };
                sys::nftnl_table_free(o);
                ok.then_some(p)
            }
            t if t == libc::NFT_MSG_NEWCHAIN => parse_obj(msg, "chain", 1, 3, 2),
            t if t == libc::NFT_MSG_NEWRULE => parse_obj(msg, "rule", 1, 2, 3),
            t if t == libc::NFT_MSG_NEWSET => parse_obj(msg, "set", 1, 2, 16),
            _ => None,
        }
    }
}

/// Parse the identity of a chain, set or rule message from its top-level attributes only
/// (table and name strings, the big-endian u64 handle): a rule's expressions are skipped,
/// which makes reading back thousands of rules cheap. `None` when an attribute is missing or
/// the message is malformed.
fn parse_obj(msg: &[u8], kind: &'static str, table: u16, name: u16, handle: u16) -> Option<Parsed> {
    const NLMSG_HDR: usize = 16;
    const NFGENMSG: usize = 4;
    let family = u32::from(*msg.get(NLMSG_HDR)?);
    let (mut t, mut n, mut h) = (None, None, None);
    let mut rest = msg.get(NLMSG_HDR + NFGENMSG..)?;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        let data = &rest[4..len];
        let text = || {
            let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
            String::from_utf8_lossy(&data[..end]).into_owned()
        };
        if ty == table {
            t = Some(text());
        } else if ty == name {
            n = Some(text());
        } else if ty == handle {
            h = Some(u64::from_be_bytes(data.get(..8)?.try_into().ok()?));
        }
        rest = rest.get(padded_len_bytes(len)..).unwrap_or(&[]);
    }
    Some(Parsed::Obj {
        kind,
        family,
        table: t?,
        name: n?,
        handle: h?,
    })
}

/// How many elements the kernel holds for this IR set (one-field interval sets store a start
/// and an end element per range).
pub fn kernel_element_count(s: &super::ir::Set) -> usize {
    if !s.decl.interval || s.decl.key.len() > 1 {
        return s.elements.len();
    }
    // One start element each, plus an end element unless the range reaches the top.
    s.elements
        .keys()
        .map(|e| match e.0.first().map(|p| p.end().bytes()) {
            Some(end) if end.iter().all(|b| *b == 0xff) => 1,
            _ => 2,
        })
        .sum()
}

/// Build a GETSETELEM dump request for one set into `buf`; returns its length.
pub fn get_elems_request(buf: &mut [u8], table: &TableId, set: &str, seq: u32) -> usize {
    assert!(buf.len() >= 4096, "request buffer too small");
    let t = cstring(&table.name);
    let n = cstring(set);
    // SAFETY: buf has room for the header and two short name attributes; the temporary set
    // is freed after building the payload.
    unsafe {
        let nlh = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            libc::NFT_MSG_GETSETELEM as u16,
            family_number(table.family),
            (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16,
            seq,
        );
        let o = sys::nftnl_set_alloc();
        if o.is_null() {
            std::process::abort()
        }
        sys::nftnl_set_set_str(o, sys::NFTNL_SET_TABLE as u16, t.as_ptr());
        sys::nftnl_set_set_str(o, sys::NFTNL_SET_NAME as u16, n.as_ptr());
        sys::nftnl_set_elems_nlmsg_build_payload(nlh, o);
        sys::nftnl_set_free(o);
        (*nlh).nlmsg_len as usize
    }
}

/// Number of elements in one NEWSETELEM dump message.
pub fn count_elems(msg: &[u8]) -> usize {
    if msg.len() < std::mem::size_of::<libc::nlmsghdr>() || msg.as_ptr().align_offset(4) != 0 {
        return 0;
    }
    // SAFETY: `msg` is one complete, aligned netlink message; the set and iterator are
    // freed before returning.
    unsafe {
        let nlh = msg.as_ptr().cast::<libc::nlmsghdr>();
        if i32::from((*nlh).nlmsg_type & 0xff) != libc::NFT_MSG_NEWSETELEM {
            return 0;
        }
        let s = sys::nftnl_set_alloc();
        if s.is_null() {
            std::process::abort()
        }
        let mut n = 0;
        if sys::nftnl_set_elems_nlmsg_parse(nlh, s) >= 0 {
            let it = sys::nftnl_set_elems_iter_create(s);
            if !it.is_null() {
                // iter_next returns the current element and advances (NULL at the end).
                while !sys::nftnl_set_elems_iter_next(it).is_null() {
                    n += 1;
                }
                sys::nftnl_set_elems_iter_destroy(it);
            }
        }
        sys::nftnl_set_free(s);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::super::ir::Part;
    use super::*;

    /// Our own element encoding, parsed back by libnftnl: every element of a large verdict
    /// map arrives, split into messages that each fit the per-message budget.
    #[test]
    fn raw_element_messages_parse_back_with_libnftnl() {
        let d = SetDecl {
            name: "vm".into(),
            key: vec![KeyType::Ifname],
            interval: false,
            constant: false,
            verdict_map: true,
        };
        let entries: Vec<(Element, Option<Verdict>)> = (0..5000)
            .map(|i| {
                (
                    Element::value(Value::Ifname(format!("cnet{i:08x}"))),
                    Some(Verdict::Goto(format!("pod-{i}"))),
                )
            })
            .collect();
        let table = TableId {
            family: Family::Inet,
            name: "cnet".into(),
        };
        for add in [true, false] {
            let msgs = elems(&table, &d, entries.iter().map(|(e, v)| (e, v)), add);
            assert!(msgs.len() > 1, "5000 map elements need several messages");
            let mut total = 0;
            for m in &msgs {
                let mut buf = vec![0u32; 1 << 15];
                // SAFETY: 128 KiB buffer, more than one message can take.
                unsafe { m.write(buf.as_mut_ptr().cast(), 7, MsgType::Add) };
                let len = buf[0] as usize;
                assert!(len <= ELEM_MSG_BUDGET + 1024, "message of {len} bytes");
                // SAFETY: viewing the u32 buffer as bytes.
                let bytes =
                    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) };
                let ty = u16::from_ne_bytes([bytes[4], bytes[5]]);
                let want = if add {
                    libc::NFT_MSG_NEWSETELEM
                } else {
                    libc::NFT_MSG_DELSETELEM
                };
                assert_eq!(i32::from(ty & 0xff), want);
                // count_elems reads NEWSETELEM messages; a DELSETELEM has the same layout.
                bytes[4] = libc::NFT_MSG_NEWSETELEM as u8;
                total += count_elems(bytes);
            }
            assert_eq!(total, entries.len());
        }
    }

    #[test]
    fn successor_carries_and_overflows() {
        assert_eq!(successor(&[0, 0xff]), Some(vec![1, 0]));
        assert_eq!(successor(&[0xff, 0xff]), None);
        assert_eq!(successor(&[10, 0, 0, 255]), Some(vec![10, 0, 1, 0]));
    }

    #[test]
    fn concat_keys_are_register_padded() {
        let key = [KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService];
        assert_eq!(key_len(&key), 12);
        assert_eq!(key_len(&[KeyType::InetService]), 2);
        let e = Element(vec![
            Part::Single(Value::V4(std::net::Ipv4Addr::new(10, 0, 0, 1))),
            Part::Single(Value::Proto(6)),
            Part::Range(Value::Port(80), Value::Port(90)),
        ]);
        assert_eq!(
            key_bytes(&e, &key, false),
            vec![10, 0, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(
            key_bytes(&e, &key, true),
            vec![10, 0, 0, 1, 6, 0, 0, 0, 0, 90, 0, 0]
        );
        assert_eq!(key_datatype(&key), (7 << 12) | (12 << 6) | 13);
    }

    #[test]
    fn one_field_interval_becomes_start_and_end_plus_one() {
        let d = SetDecl {
            name: "s".into(),
            key: vec![KeyType::InetService],
            interval: true,
            constant: false,
            verdict_map: false,
        };
        let e = Element(vec![Part::Range(Value::Port(80), Value::Port(90))]);
        let raws = raw_elems(&d, &e, None);
        assert_eq!(raws.len(), 2);
        assert_eq!(raws[0].0, vec![0, 80]);
        assert_eq!((raws[1].0.clone(), raws[1].2), (vec![0, 91], true));
        let top = Element(vec![Part::Range(Value::Port(65000), Value::Port(65535))]);
        assert_eq!(raw_elems(&d, &top, None).len(), 1);
    }

    /// The allocation-free key writer agrees with `Value::bytes`, and an entry encodes to
    /// exactly the raw elements `raw_elems` describes.
    #[test]
    fn direct_encoding_matches_value_bytes_and_raw_elements() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        for v in [
            Value::V4(Ipv4Addr::new(10, 1, 2, 3)),
            Value::V6(Ipv6Addr::LOCALHOST),
            Value::Port(8080),
            Value::Proto(17),
            Value::Ifname("veth0".into()),
            Value::Ifname("a-very-long-interface-name".into()),
            Value::Nfproto(10),
            Value::EtherType(0x86dd),
            Value::Icmpv6Type(135),
        ] {
            let mut out = vec![7u8];
            value_into(&mut out, &v);
            assert_eq!(&out[1..], &v.bytes()[..], "{v:?}");
        }
        let decl = |key: Vec<KeyType>, interval: bool, verdict_map: bool| SetDecl {
            name: "s".into(),
            key,
            interval,
            constant: false,
            verdict_map,
        };
        let cases = [
            (
                decl(vec![KeyType::Ifname], false, true),
                Element(vec![Part::Single(Value::Ifname("cnet0001".into()))]),
                Some(Verdict::Goto("pod-in".into())),
            ),
            (
                decl(vec![KeyType::Ipv4Addr], true, false),
                Element(vec![Part::Range(
                    Value::V4(Ipv4Addr::new(10, 0, 0, 0)),
                    Value::V4(Ipv4Addr::new(10, 0, 0, 255)),
                )]),
                None,
            ),
            (
                decl(vec![KeyType::InetService], true, false),
                Element(vec![Part::Range(Value::Port(65000), Value::Port(65535))]),
                None,
            ),
            (
                decl(
                    vec![KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
                    true,
                    false,
                ),
                Element(vec![
                    Part::Single(Value::V4(Ipv4Addr::new(10, 0, 0, 1))),
                    Part::Single(Value::Proto(6)),
                    Part::Range(Value::Port(80), Value::Port(90)),
                ]),
                None,
            ),
        ];
        for (d, e, v) in &cases {
            let (mut direct, mut scratch) = (Vec::new(), Vec::new());
            encode_entry(&mut direct, &mut scratch, d, e, v.as_ref());
            let mut via_raw = Vec::new();
            for (k, ke, end, vd) in raw_elems(d, e, v.as_ref()) {
                encode_raw(&mut via_raw, &k, ke.as_deref(), end, vd);
            }
            assert_eq!(direct, via_raw, "{e:?}");
        }
    }
}
