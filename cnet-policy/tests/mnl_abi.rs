//! The libmnl API as libnftnl and the `mnl` crate use it, checked against libmnl's documented
//! behaviour: in this workspace's static builds it is cnet's own (`mnl/mnl.c`), in a dynamic
//! build the system's libmnl, and the same assertions hold for both.
#![allow(clippy::unwrap_used, unsafe_code)]

use mnl::mnl_sys as m;
use std::ffi::{CStr, c_int, c_void};

const HDR: usize = 16; // MNL_NLMSG_HDRLEN

/// A zeroed, 4-byte-aligned message buffer.
fn buffer() -> Vec<u32> {
    vec![0u32; 1024]
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(v: i32) {
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() = v };
}

/// (type, payload length) of every attribute the parser visits.
unsafe extern "C" fn collect(attr: *const libc::nlattr, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the Vec the test passed; `attr` a valid attribute.
    let (seen, t, len) = unsafe {
        (
            &mut *data.cast::<Vec<(u16, u16)>>(),
            m::mnl_attr_get_type(attr),
            m::mnl_attr_get_payload_len(attr),
        )
    };
    seen.push((t, len));
    if t == 99 {
        m::MNL_CB_STOP
    } else {
        m::MNL_CB_OK
    }
}

#[test]
fn attributes_are_padded_nested_and_parsed() {
    let mut buf = buffer();
    // SAFETY: every pointer is into `buf`, which is large enough for what is put.
    unsafe {
        let nlh = m::mnl_nlmsg_put_header(buf.as_mut_ptr().cast());
        assert_eq!((*nlh).nlmsg_len as usize, HDR);
        let extra = m::mnl_nlmsg_put_extra_header(nlh, 5);
        assert_eq!(extra.cast::<u8>(), nlh.cast::<u8>().add(HDR));
        assert_eq!(
            (*nlh).nlmsg_len as usize,
            HDR + 8,
            "extra header padded to 4"
        );
        m::mnl_attr_put_u8(nlh, 1, 0xab);
        m::mnl_attr_put_u16(nlh, 2, 0xbeef);
        m::mnl_attr_put_u32(nlh, 3, 0xdead_beef);
        m::mnl_attr_put_u64(nlh, 4, 0x0102_0304_0506_0708);
        m::mnl_attr_put_str(nlh, 5, c"abc".as_ptr());
        m::mnl_attr_put_strz(nlh, 6, c"abc".as_ptr());
        let nest = m::mnl_attr_nest_start(nlh, 7);
        m::mnl_attr_put_u32(nlh, 1, 7);
        m::mnl_attr_put_u32(nlh, 2, 8);
        m::mnl_attr_nest_end(nlh, nest);
        // u8: 4+1 -> 8; u16: 8; u32: 8; u64: 12; str "abc": 4+3 -> 8; strz: 4+4 = 8; nest: 4+8+8.
        assert_eq!(
            (*nlh).nlmsg_len as usize,
            HDR + 8 + 8 + 8 + 8 + 12 + 8 + 8 + 20
        );
        assert_eq!((*nest).nla_len, 20);
        assert_eq!((*nest).nla_type, 7 | libc::NLA_F_NESTED as u16);
        assert_eq!(m::mnl_attr_get_type(nest), 7, "the nested flag is masked");
        assert_eq!(
            m::mnl_nlmsg_get_payload_tail(nlh).cast::<u8>(),
            nlh.cast::<u8>().add((*nlh).nlmsg_len as usize)
        );

        let mut seen: Vec<(u16, u16)> = Vec::new();
        let data = (&raw mut seen).cast::<c_void>();
        assert_eq!(m::mnl_attr_parse(nlh, 5, Some(collect), data), m::MNL_CB_OK);
        assert_eq!(
            seen,
            [(1, 1), (2, 2), (3, 4), (4, 8), (5, 3), (6, 4), (7, 16)]
        );

        // The values, through the same walk the header's macros use.
        let first = m::mnl_nlmsg_get_payload_offset(nlh, 5).cast::<libc::nlattr>();
        assert_eq!(m::mnl_attr_get_u8(first), 0xab);
        let a2 = m::mnl_attr_next(first);
        assert_eq!(m::mnl_attr_get_u16(a2), 0xbeef);
        let a3 = m::mnl_attr_next(a2);
        assert_eq!(m::mnl_attr_get_u32(a3), 0xdead_beef);
        let a4 = m::mnl_attr_next(a3);
        assert_eq!(m::mnl_attr_get_u64(a4), 0x0102_0304_0506_0708);
        let a6 = m::mnl_attr_next(m::mnl_attr_next(a4));
        assert_eq!(CStr::from_ptr(m::mnl_attr_get_str(a6)), c"abc");
        assert_eq!(m::mnl_attr_get_len(a6), 8);

        seen.clear();
        assert_eq!(
            m::mnl_attr_parse_nested(nest, Some(collect), data),
            m::MNL_CB_OK
        );
        assert_eq!(seen, [(1, 4), (2, 4)]);

        // A callback's STOP ends the walk and is returned.
        m::mnl_attr_put_u32(nlh, 99, 0);
        m::mnl_attr_put_u32(nlh, 100, 0);
        seen.clear();
        assert_eq!(
            m::mnl_attr_parse(nlh, 5, Some(collect), data),
            m::MNL_CB_STOP
        );
        assert_eq!(seen.last(), Some(&(99, 4)));
        assert_eq!(seen.len(), 8);

        // Cancelling a nest takes back everything put in it.
        let len = (*nlh).nlmsg_len;
        let n = m::mnl_attr_nest_start(nlh, 8);
        m::mnl_attr_put_u64(nlh, 1, 1);
        m::mnl_attr_nest_cancel(nlh, n);
        assert_eq!((*nlh).nlmsg_len, len);
    }
}

#[test]
fn checked_puts_refuse_to_overflow_the_buffer() {
    let mut buf = buffer();
    // SAFETY: as above; the checked puts are given a smaller buffer length than `buf` has.
    unsafe {
        let nlh = m::mnl_nlmsg_put_header(buf.as_mut_ptr().cast());
        assert!(m::mnl_attr_put_u32_check(nlh, HDR + 8, 1, 1));
        assert!(!m::mnl_attr_put_u8_check(nlh, HDR + 8 + 7, 2, 1));
        assert_eq!(
            (*nlh).nlmsg_len as usize,
            HDR + 8,
            "a refused put changes nothing"
        );
        assert!(m::mnl_attr_put_strz_check(
            nlh,
            HDR + 16,
            2,
            c"abc".as_ptr()
        ));
        assert!(!m::mnl_attr_put_str_check(
            nlh,
            HDR + 16 + 4,
            3,
            c"a".as_ptr()
        ));
        assert!(m::mnl_attr_nest_start_check(nlh, HDR + 16 + 3, 4).is_null());
        assert!(!m::mnl_attr_nest_start_check(nlh, HDR + 16 + 4, 4).is_null());
        let data = [1u8, 2, 3];
        assert!(!m::mnl_attr_put_check(
            nlh,
            HDR + 20 + 7,
            5,
            3,
            data.as_ptr().cast()
        ));
        assert!(m::mnl_attr_put_check(
            nlh,
            HDR + 20 + 8,
            5,
            3,
            data.as_ptr().cast()
        ));
        assert!(!m::mnl_attr_put_u16_check(nlh, HDR + 28, 6, 1));
        assert!(!m::mnl_attr_put_u64_check(nlh, HDR + 28 + 11, 6, 1));
        assert!(m::mnl_attr_put_u64_check(nlh, HDR + 28 + 12, 6, 1));
    }
}

#[test]
fn validation_checks_lengths_strings_and_types() {
    let mut buf = buffer();
    // SAFETY: as above.
    unsafe {
        let nlh = m::mnl_nlmsg_put_header(buf.as_mut_ptr().cast());
        let at =
            |nlh: *mut libc::nlmsghdr| m::mnl_nlmsg_get_payload_tail(nlh).cast::<libc::nlattr>();
        let u16a = at(nlh);
        m::mnl_attr_put_u16(nlh, 1, 5);
        let z = at(nlh);
        m::mnl_attr_put_strz(nlh, 2, c"x".as_ptr());
        let s = at(nlh);
        m::mnl_attr_put_str(nlh, 3, c"x".as_ptr());
        let empty = at(nlh);
        m::mnl_attr_put(nlh, 4, 0, std::ptr::null());
        let nest = m::mnl_attr_nest_start(nlh, 5);
        m::mnl_attr_nest_end(nlh, nest);
        let odd = at(nlh);
        m::mnl_attr_put(nlh, 6, 2, [0u8, 0].as_ptr().cast());

        assert_eq!(m::mnl_attr_validate(u16a, m::MNL_TYPE_U16), 0);
        for (a, t, e) in [
            (u16a, m::MNL_TYPE_U32, libc::ERANGE),
            (u16a, m::MNL_TYPE_U8, libc::ERANGE),
            (s, m::MNL_TYPE_NUL_STRING, libc::EINVAL),
            (empty, m::MNL_TYPE_STRING, libc::ERANGE),
            (empty, m::MNL_TYPE_NUL_STRING, libc::ERANGE),
            (u16a, m::MNL_TYPE_FLAG, libc::ERANGE),
            (odd, m::MNL_TYPE_NESTED, libc::ERANGE),
        ] {
            set_errno(0);
            assert_eq!(m::mnl_attr_validate(a, t), -1, "type {t}");
            assert_eq!(errno(), e, "type {t}");
        }
        for (a, t) in [
            (z, m::MNL_TYPE_NUL_STRING),
            (s, m::MNL_TYPE_STRING),
            (empty, m::MNL_TYPE_FLAG),
            (nest, m::MNL_TYPE_NESTED),
            (odd, m::MNL_TYPE_BINARY),
        ] {
            assert_eq!(m::mnl_attr_validate(a, t), 0, "type {t}");
        }
        assert_eq!(m::mnl_attr_validate2(odd, m::MNL_TYPE_BINARY, 2), 0);
        set_errno(0);
        assert_eq!(m::mnl_attr_validate2(odd, m::MNL_TYPE_BINARY, 3), -1);
        assert_eq!(errno(), libc::ERANGE);
        assert_eq!(m::mnl_attr_type_valid(odd, 6), 1);
        set_errno(0);
        assert_eq!(m::mnl_attr_type_valid(odd, 5), -1);
        assert_eq!(errno(), libc::EOPNOTSUPP);
    }
}

#[test]
fn batches_take_messages_until_full_and_carry_the_last_over() {
    let mut buf = buffer();
    let limit = 3 * (HDR + 8) - 1;
    // SAFETY: the batch's messages are put inside `buf` (4 KiB), within `limit` plus one
    // message of slack, as libnftnl's batches use it.
    unsafe {
        let head = buf.as_mut_ptr().cast::<c_void>();
        let b = m::mnl_nlmsg_batch_start(head, limit);
        assert!(m::mnl_nlmsg_batch_is_empty(b));
        assert_eq!(m::mnl_nlmsg_batch_head(b), head);
        let put = |seq: u32| {
            let nlh = m::mnl_nlmsg_put_header(m::mnl_nlmsg_batch_current(b));
            (*nlh).nlmsg_seq = seq;
            m::mnl_attr_put_u32(nlh, 1, seq);
            m::mnl_nlmsg_batch_next(b)
        };
        assert!(put(1));
        assert!(put(2));
        assert_eq!(m::mnl_nlmsg_batch_size(b), 2 * (HDR + 8));
        assert!(!put(3), "the third message does not fit");
        assert_eq!(m::mnl_nlmsg_batch_size(b), 2 * (HDR + 8));
        m::mnl_nlmsg_batch_reset(b);
        // The message that did not fit starts the next batch.
        assert_eq!(m::mnl_nlmsg_batch_size(b), HDR + 8);
        assert_eq!((*head.cast::<libc::nlmsghdr>()).nlmsg_seq, 3);
        m::mnl_nlmsg_batch_reset(b);
        assert!(m::mnl_nlmsg_batch_is_empty(b));
        assert_eq!(m::mnl_nlmsg_batch_current(b), head);
        m::mnl_nlmsg_batch_stop(b);
    }
}

/// Count data messages; stop at sequence number 7.
unsafe extern "C" fn count(nlh: *const libc::nlmsghdr, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the counter the test passed.
    unsafe {
        *data.cast::<u32>() += 1;
        if (*nlh).nlmsg_seq == 7 {
            return m::MNL_CB_STOP;
        }
    }
    m::MNL_CB_OK
}

/// Put a message of `kind` with `seq` and `portid` after `at`; for NLMSG_ERROR, with `error`.
fn put_msg(buf: &mut [u32], at: usize, kind: u16, seq: u32, portid: u32, error: i32) -> usize {
    // SAFETY: `at` is 4-aligned and the caller's buffer has room.
    unsafe {
        let nlh = m::mnl_nlmsg_put_header(buf.as_mut_ptr().cast::<u8>().add(at).cast());
        (*nlh).nlmsg_type = kind;
        (*nlh).nlmsg_seq = seq;
        (*nlh).nlmsg_pid = portid;
        if kind == libc::NLMSG_ERROR as u16 {
            let e = m::mnl_nlmsg_put_extra_header(nlh, std::mem::size_of::<libc::nlmsgerr>());
            (*e.cast::<libc::nlmsgerr>()).error = error;
        } else {
            m::mnl_attr_put_u32(nlh, 1, seq);
        }
        at + (*nlh).nlmsg_len as usize
    }
}

#[test]
fn callbacks_run_over_data_acks_errors_and_done() {
    let run = |buf: &[u32], len: usize, seq: u32, portid: u32, counted: &mut u32| {
        // SAFETY: `buf` holds `len` bytes of messages.
        unsafe {
            m::mnl_cb_run(
                buf.as_ptr().cast(),
                len,
                seq,
                portid,
                Some(count),
                (&raw mut *counted).cast(),
            )
        }
    };
    let mut buf = buffer();
    // Two data messages, then an ack (error 0): STOP after two callbacks.
    let mut n = put_msg(&mut buf, 0, 16, 5, 9, 0);
    n = put_msg(&mut buf, n, 16, 5, 9, 0);
    let ack_at = n;
    n = put_msg(&mut buf, n, libc::NLMSG_ERROR as u16, 5, 9, 0);
    let mut c = 0;
    assert_eq!(run(&buf, n, 5, 9, &mut c), m::MNL_CB_STOP);
    assert_eq!(c, 2);
    // Without the ack: OK, the caller reads on.
    c = 0;
    assert_eq!(run(&buf, ack_at, 5, 9, &mut c), m::MNL_CB_OK);
    // An error: ERROR with errno set from it.
    let mut e = buffer();
    let n = put_msg(&mut e, 0, libc::NLMSG_ERROR as u16, 5, 9, -libc::EPERM);
    set_errno(0);
    assert_eq!(run(&e, n, 5, 9, &mut c), m::MNL_CB_ERROR);
    assert_eq!(errno(), libc::EPERM);
    // Another request's sequence number or another port: refused.
    set_errno(0);
    assert_eq!(run(&buf, ack_at, 6, 9, &mut c), -1);
    assert_eq!(errno(), libc::EPROTO);
    set_errno(0);
    assert_eq!(run(&buf, ack_at, 5, 8, &mut c), -1);
    assert_eq!(errno(), libc::ESRCH);
    // Zero sequence / port on either side is not checked.
    c = 0;
    assert_eq!(run(&buf, ack_at, 0, 0, &mut c), m::MNL_CB_OK);
    assert_eq!(c, 2);
    // DONE ends a dump; a data callback's STOP ends the run at once.
    let mut d = buffer();
    let mut n = put_msg(&mut d, 0, 16, 7, 0, 0);
    n = put_msg(&mut d, n, 16, 7, 0, 0);
    c = 0;
    assert_eq!(run(&d, n, 7, 0, &mut c), m::MNL_CB_STOP);
    assert_eq!(c, 1);
    let mut d = buffer();
    let n = put_msg(&mut d, 0, libc::NLMSG_DONE as u16, 1, 0, 0);
    c = 0;
    assert_eq!(run(&d, n, 1, 0, &mut c), m::MNL_CB_STOP);
    assert_eq!(c, 0);
    // A dump the kernel interrupted: EINTR.
    let mut d = buffer();
    let n = put_msg(&mut d, 0, 16, 1, 0, 0);
    // SAFETY: the message just put starts at 0.
    unsafe {
        (*d.as_mut_ptr().cast::<libc::nlmsghdr>()).nlmsg_flags |= libc::NLM_F_DUMP_INTR as u16
    };
    set_errno(0);
    assert_eq!(run(&d, n, 1, 0, &mut c), -1);
    assert_eq!(errno(), libc::EINTR);
    // A truncated message is not run.
    c = 0;
    assert_eq!(run(&buf, HDR + 4, 5, 9, &mut c), m::MNL_CB_OK);
    assert_eq!(c, 0);
}

#[test]
fn the_socket_talks_to_the_kernel() {
    cnet_testsupport::require_priv!();
    let ns = cnet_testsupport::NetNs::new("mnl");
    ns.in_netns(|| {
        // SAFETY: the socket is used only through libmnl and closed at the end; the request
        // is built in `buf`.
        unsafe {
            let nl = m::mnl_socket_open(libc::NETLINK_ROUTE);
            assert!(!nl.is_null());
            assert!(m::mnl_socket_get_fd(nl) >= 0);
            assert_eq!(
                m::mnl_socket_bind(nl, 0, m::MNL_SOCKET_AUTOPID as libc::pid_t),
                0
            );
            let portid = m::mnl_socket_get_portid(nl);
            assert_ne!(portid, 0, "bound to a port the kernel chose");
            // RTM_GETLINK for ifindex 1 (lo of this new namespace).
            let mut buf = buffer();
            let nlh = m::mnl_nlmsg_put_header(buf.as_mut_ptr().cast());
            (*nlh).nlmsg_type = libc::RTM_GETLINK;
            (*nlh).nlmsg_flags = libc::NLM_F_REQUEST as u16;
            (*nlh).nlmsg_seq = 42;
            let ifi = m::mnl_nlmsg_put_extra_header(nlh, std::mem::size_of::<libc::ifinfomsg>())
                .cast::<libc::ifinfomsg>();
            (*ifi).ifi_index = 1;
            let len = (*nlh).nlmsg_len as usize;
            assert_eq!(m::mnl_socket_sendto(nl, nlh.cast(), len), len as isize);
            let mut rx = vec![0u32; 8192];
            let n = m::mnl_socket_recvfrom(nl, rx.as_mut_ptr().cast(), rx.len() * 4);
            assert!(n > 0, "recvfrom: {}", std::io::Error::last_os_error());
            let mut c = 0u32;
            let r = m::mnl_cb_run(
                rx.as_ptr().cast(),
                n as usize,
                42,
                portid,
                Some(count),
                (&raw mut c).cast(),
            );
            assert_eq!((r, c), (m::MNL_CB_OK, 1), "one RTM_NEWLINK answer");
            // Too small a buffer: ENOSPC, not a silently cut message.
            assert_eq!(m::mnl_socket_sendto(nl, nlh.cast(), len), len as isize);
            let mut small = [0u32; 4];
            set_errno(0);
            assert_eq!(
                m::mnl_socket_recvfrom(nl, small.as_mut_ptr().cast(), 16),
                -1
            );
            assert_eq!(errno(), libc::ENOSPC);
            assert_eq!(m::mnl_socket_close(nl), 0);
        }
    });
}
