//! Interface and namespace settings over netlink instead of `/proc/sys`.
//!
//! The first `/proc/sys/net/...` lookup of a process costs ~0.5–5 ms on a busy node: the
//! dcache holds one `net`/`ipv4`/`conf` dentry per network namespace that ever looked, all in
//! the same hash chains, and the lookup walks past the other namespaces' entries. Netlink
//! carries the same values without a path walk:
//! - **IPv4 interface settings** (`net.ipv4.conf.<if>.proxy_arp`, `arp_notify`, ...) travel
//!   in an `RTM_SETLINK` just before the one that sets the link up, as
//!   `IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF
//!   { [IPV4_DEVCONF_*] = u32 } } }` ([`af_spec_attribute`]); the kernel stores them exactly
//!   as a sysctl write does.
//! - **Forwarding of a namespace** (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`)
//!   is read with `RTM_GETNETCONF` for `NETCONFA_IFINDEX_ALL` ([`forwarding`]); only a value
//!   that differs is written through `/proc/sys` (once per node, in practice).
//!
//! - **IPv6 address generation** of a link (`addr_gen_mode`, none: no link-local address)
//!   travels in the same `IFLA_AF_SPEC`, as `AF_INET6 { IFLA_INET6_ADDR_GEN_MODE }`.
//!
//! Other IPv6 interface settings (`accept_dad`, `accept_ra`) have no netlink setter and stay
//! sysctls.

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::plan::SysctlPlan;

/// `IFLA_AF_SPEC`.
const IFLA_AF_SPEC: u16 = 26;
/// `IFLA_INET_CONF` inside `IFLA_AF_SPEC { AF_INET }`.
const IFLA_INET_CONF: u16 = 1;
/// `RTM_NEWNETCONF` / `RTM_GETNETCONF`.
const RTM_NEWNETCONF: u16 = 80;
const RTM_GETNETCONF: u16 = 82;
/// `NETCONFA_IFINDEX`, `NETCONFA_FORWARDING`.
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
/// `NETCONFA_IFINDEX_ALL`: the namespace-wide (`all`) settings.
const NETCONFA_IFINDEX_ALL: i32 = -1;

/// The IPv4 interface settings that can travel in `IFLA_INET_CONF`, by sysctl name, with
/// their `IPV4_DEVCONF_*` index (linux/ip.h).
const INET_DEVCONF: &[(&str, u16)] = &[
    ("forwarding", 1),
    ("proxy_arp", 3),
    ("accept_redirects", 4),
    ("send_redirects", 6),
    ("rp_filter", 8),
    ("arp_announce", 18),
    ("arp_ignore", 19),
    ("arp_accept", 21),
    ("arp_notify", 22),
    ("route_localnet", 26),
];

/// The `IPV4_DEVCONF_*` index and value of an interface sysctl that netlink can set
/// (`net.ipv4.conf.<interface>.<name>` with a numeric value), or `None`.
pub(crate) fn inet_devconf(s: &SysctlPlan) -> Option<(u16, u32)> {
    let ifname = s.interface.as_deref()?;
    let name = s
        .key
        .strip_prefix("net.ipv4.conf.")?
        .strip_prefix(ifname)?
        .strip_prefix('.')?;
    let id = INET_DEVCONF.iter().find(|(n, _)| *n == name)?.1;
    Some((id, s.value.trim().parse().ok()?))
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

/// The value of `IFLA_AF_SPEC` that sets IPv4 interface settings `(IPV4_DEVCONF_*, value)`.
pub(crate) fn inet_conf_payload(conf: &[(u16, u32)]) -> Vec<u8> {
    let mut entries = Vec::with_capacity(conf.len() * 8);
    for (id, value) in conf {
        push_attr(&mut entries, *id, &value.to_ne_bytes());
    }
    let mut inet_conf = Vec::with_capacity(entries.len() + 4);
    push_attr(&mut inet_conf, IFLA_INET_CONF, &entries);
    let mut af_inet = Vec::with_capacity(inet_conf.len() + 4);
    push_attr(&mut af_inet, libc::AF_INET as u16, &inet_conf);
    af_inet
}

/// `IFLA_INET6_ADDR_GEN_MODE` inside `IFLA_AF_SPEC { AF_INET6 }`, and its value
/// `IN6_ADDR_GEN_MODE_NONE` (no link-local address).
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;

/// `IFLA_AF_SPEC` for an `RTM_SETLINK`: IPv4 interface settings and, with `no_link_local`,
/// IPv6 address generation off.
pub(crate) fn af_spec_attribute(
    conf: &[(u16, u32)],
    no_link_local: bool,
) -> rtnetlink::packet_route::link::LinkAttribute {
    let mut payload = if conf.is_empty() {
        Vec::new()
    } else {
        inet_conf_payload(conf)
    };
    if no_link_local {
        let mut mode = Vec::with_capacity(8);
        push_attr(
            &mut mode,
            IFLA_INET6_ADDR_GEN_MODE,
            &[IN6_ADDR_GEN_MODE_NONE],
        );
        push_attr(&mut payload, libc::AF_INET6 as u16, &mode);
    }
    rtnetlink::packet_route::link::LinkAttribute::Other(rtnetlink::packet_core::DefaultNla::new(
        IFLA_AF_SPEC,
        payload,
    ))
}

/// The `RTM_GETNETCONF` request for the `all` settings of `family`.
fn netconf_request(family: u8, seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(28);
    buf.extend_from_slice(&28u32.to_ne_bytes());
    buf.extend_from_slice(&RTM_GETNETCONF.to_ne_bytes());
    buf.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // struct netconfmsg { u8 family } padded to 4.
    buf.extend_from_slice(&[family, 0, 0, 0]);
    push_attr(
        &mut buf,
        NETCONFA_IFINDEX,
        &NETCONFA_IFINDEX_ALL.to_ne_bytes(),
    );
    buf
}

/// `NETCONFA_FORWARDING` of an `RTM_NEWNETCONF` reply answering `seq`, if that is what
/// `msg` is.
fn parse_forwarding(msg: &[u8], seq: u32) -> Option<u32> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(msg.get(at..at + 4)?.try_into().ok()?))
    };
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_ne_bytes(msg.get(at..at + 2)?.try_into().ok()?))
    };
    let len = usize::try_from(u32_at(0)?).ok()?.min(msg.len());
    if u16_at(4)? != RTM_NEWNETCONF || u32_at(8)? != seq {
        return None;
    }
    let mut at = 20;
    while at + 4 <= len {
        let alen = usize::from(u16_at(at)?);
        if alen < 4 {
            return None;
        }
        if u16_at(at + 2)? & 0x3fff == NETCONFA_FORWARDING && alen >= 8 {
            return u32_at(at + 4);
        }
        at += (alen + 3) & !3;
    }
    None
}

/// Whether forwarding is on for all interfaces of `family` (`AF_INET`/`AF_INET6`) in the
/// namespace of the (blocking, unused) `NETLINK_ROUTE` socket `fd`; `None` when the kernel
/// did not answer as expected (then read the sysctl).
pub(crate) fn forwarding(fd: BorrowedFd<'_>, family: u8) -> Option<bool> {
    let seq = 0x6e63_0000 | u32::from(family);
    let req = netconf_request(family, seq);
    // SAFETY: send(2) of an initialised buffer on an open socket.
    let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if usize::try_from(sent).ok() != Some(req.len()) {
        return None;
    }
    // rtnetlink answers inside send(2): the reply (or an error) is queued already.
    let mut buf = [0u8; 512];
    // SAFETY: recv(2) into a buffer we own, of its length.
    let got = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    let got = usize::try_from(got).ok()?;
    parse_forwarding(&buf[..got], seq).map(|v| v != 0)
}

/// The family whose `all` forwarding a node-wide sysctl is, if it is one.
pub(crate) fn forwarding_family(s: &SysctlPlan) -> Option<u8> {
    match s.key.as_str() {
        "net.ipv4.ip_forward" | "net.ipv4.conf.all.forwarding" => Some(libc::AF_INET as u8),
        "net.ipv6.conf.all.forwarding" => Some(libc::AF_INET6 as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(key: &str, value: &str, interface: Option<&str>) -> SysctlPlan {
        SysctlPlan {
            key: key.into(),
            value: value.into(),
            interface: interface.map(str::to_string),
            optional: false,
        }
    }

    #[test]
    fn ipv4_interface_settings_map_to_devconf_indexes() {
        let s = sysctl("net.ipv4.conf.cnet1.2.proxy_arp", "1", Some("cnet1.2"));
        assert_eq!(inet_devconf(&s), Some((3, 1)));
        let s = sysctl("net.ipv4.conf.eth0.arp_notify", "1", Some("eth0"));
        assert_eq!(inet_devconf(&s), Some((22, 1)));
        // IPv6, node-wide, unknown or non-numeric: not for netlink.
        for s in [
            sysctl("net.ipv6.conf.eth0.accept_dad", "0", Some("eth0")),
            sysctl("net.ipv4.ip_forward", "1", None),
            sysctl("net.ipv4.conf.eth0.tag", "1", Some("eth0")),
            sysctl("net.ipv4.conf.eth0.proxy_arp", "yes", Some("eth0")),
        ] {
            assert_eq!(inet_devconf(&s), None, "{}", s.key);
        }
    }

    #[test]
    fn inet_conf_payload_is_nested_af_inet_conf() {
        let p = inet_conf_payload(&[(3, 1), (22, 1)]);
        // AF_INET { IFLA_INET_CONF { [3] = 1, [22] = 1 } }
        let mut want = Vec::new();
        for (len, kind) in [(24u16, 2u16), (20, 1)] {
            want.extend_from_slice(&len.to_ne_bytes());
            want.extend_from_slice(&kind.to_ne_bytes());
        }
        for (id, v) in [(3u16, 1u32), (22, 1)] {
            want.extend_from_slice(&8u16.to_ne_bytes());
            want.extend_from_slice(&id.to_ne_bytes());
            want.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(p, want);
    }

    #[test]
    fn netconf_reply_parses_forwarding_of_our_sequence_only() {
        let mut reply = Vec::new();
        reply.extend_from_slice(&36u32.to_ne_bytes());
        reply.extend_from_slice(&RTM_NEWNETCONF.to_ne_bytes());
        reply.extend_from_slice(&0u16.to_ne_bytes());
        reply.extend_from_slice(&7u32.to_ne_bytes());
        reply.extend_from_slice(&0u32.to_ne_bytes());
        reply.extend_from_slice(&[2, 0, 0, 0]);
        push_attr(&mut reply, NETCONFA_IFINDEX, &(-1i32).to_ne_bytes());
        push_attr(&mut reply, NETCONFA_FORWARDING, &1u32.to_ne_bytes());
        assert_eq!(parse_forwarding(&reply, 7), Some(1));
        assert_eq!(parse_forwarding(&reply, 8), None);
        assert_eq!(parse_forwarding(&reply[..20], 7), None);
        assert_eq!(netconf_request(2, 7).len(), 28);
    }
}
