//! The netfilter netlink socket: open with enlarged buffers, one-`sendmsg` batches, raw
//! receives, and safe parsing of reply headers. The `unsafe` calls of the socket layer live
//! here, next to the libnftnl ones.

use std::io;
use std::os::fd::RawFd;

/// A netfilter netlink socket, bound to the network namespace of the thread that opened it.
pub struct NlSocket(mnl::Socket);

// SAFETY: an mnl_socket is a file descriptor plus its bound address; nothing in it is tied to
// the creating thread. Users hold it behind `&mut`, so two threads never use it at once.
unsafe impl Send for NlSocket {}

impl std::fmt::Debug for NlSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NlSocket(portid {})", self.0.portid())
    }
}

fn setsockopt<T>(fd: RawFd, level: i32, opt: i32, v: &T) -> io::Result<()> {
    // SAFETY: fd is an open socket; `v` is a live value whose size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (v as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receive buffer aligned for netlink headers. Its memory is left uninitialised: a reply
/// fills a few pages of a 64–128 KiB buffer, and zeroing all of it for every request is a
/// memset of the whole buffer. Only the bytes of the last datagram ([`RecvBuf::received`])
/// are ever read.
pub struct RecvBuf {
    /// Capacity only: the length stays 0, the kernel writes into the spare capacity.
    words: Vec<u64>,
    /// Bytes of the last datagram, written by the kernel.
    filled: usize,
}

impl RecvBuf {
    /// A buffer of at least `bytes` bytes.
    pub fn new(bytes: usize) -> RecvBuf {
        RecvBuf {
            words: Vec::with_capacity(bytes.div_ceil(8)),
            filled: 0,
        }
    }

    /// The last datagram received into this buffer (empty before the first).
    pub fn received(&self) -> &[u8] {
        // SAFETY: the first `filled` bytes (at most the capacity) were written by `recv(2)`,
        // so they are initialised; u8 has no alignment requirement.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.filled) }
    }
}

/// A zeroed, aligned buffer for building one request message (4 KiB, what the builders
/// require).
pub struct ReqBuf(Vec<u64>);

impl ReqBuf {
    /// A zeroed 4 KiB buffer.
    pub fn new() -> ReqBuf {
        ReqBuf(vec![0u64; 512])
    }

    /// The buffer as bytes.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.0.len() * 8;
        // SAFETY: the same (initialised) allocation viewed as bytes (length in bytes); any
        // bit pattern is a valid u8, and u8 has no alignment requirement.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

impl Default for ReqBuf {
    fn default() -> ReqBuf {
        ReqBuf::new()
    }
}

/// One netlink message of a received datagram, header decoded.
#[derive(Debug, Clone, Copy)]
pub struct NlMsgView<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// For NLMSG_ERROR: the errno (0 = ACK).
    pub errno: Option<i32>,
    /// The whole message.
    pub raw: &'a [u8],
}

const HDR: usize = 16;

/// Split a datagram into messages (netlink 4-byte alignment), decoding headers safely.
pub fn messages(buf: &[u8]) -> io::Result<Vec<NlMsgView<'_>>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= HDR {
        let u32_at = |b: &[u8], o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let len = u32_at(rest, 0) as usize;
        if len < HDR || len > rest.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad netlink message length {len} (have {})", rest.len()),
            ));
        }
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        let seq = u32_at(rest, 8);
        let errno = (i32::from(ty) == libc::NLMSG_ERROR).then(|| {
            if len >= HDR + 4 {
                -(u32_at(rest, HDR) as i32)
            } else {
                libc::EPROTO
            }
        });
        out.push(NlMsgView {
            ty,
            seq,
            errno,
            raw: &rest[..len],
        });
        let step = len.next_multiple_of(4).min(rest.len());
        rest = &rest[step..];
    }
    Ok(out)
}

impl NlSocket {
    /// Open and bind a NETLINK_NETFILTER socket in the calling thread's namespace: error
    /// replies carry only headers (NETLINK_CAP_ACK), 1 MiB receive buffer, 5 s receive timeout
    /// (a reply that never comes must not hang the caller).
    pub fn open() -> Result<NlSocket, (&'static str, io::Error)> {
        let s = NlSocket(mnl::Socket::new(mnl::Bus::Netfilter).map_err(|e| ("open", e))?);
        let fd = s.fd();
        setsockopt(fd, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, &1i32)
            .map_err(|e| ("setsockopt NETLINK_CAP_ACK", e))?;
        s.grow(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 1 << 20)
            .map_err(|e| ("setsockopt SO_RCVBUF", e))?;
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
            .map_err(|e| ("setsockopt SO_RCVTIMEO", e))?;
        Ok(s)
    }

    fn fd(&self) -> RawFd {
        // SAFETY: the mnl socket is valid for the lifetime of self.
        unsafe { mnl::mnl_sys::mnl_socket_get_fd(self.0.as_raw_socket()) }
    }

    /// The cookie of the network namespace the socket belongs to: unique among the namespaces
    /// of one boot (a 64-bit counter; `SO_NETNS_COOKIE`, Linux 5.14+).
    pub fn netns_cookie(&self) -> io::Result<u64> {
        /// `SO_NETNS_COOKIE` (asm-generic/socket.h).
        const SO_NETNS_COOKIE: libc::c_int = 71;
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: fd is an open socket; `cookie` and `len` are live and `len` is its size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(cookie)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The netlink port id.
    pub fn portid(&self) -> u32 {
        self.0.portid()
    }

    /// Grow a socket buffer: SO_*BUFFORCE (needs CAP_NET_ADMIN, as programming nftables
    /// does), falling back to the capped SO_*BUF.
    fn grow(&self, force: i32, plain: i32, bytes: usize) -> io::Result<()> {
        let v = i32::try_from(bytes).unwrap_or(i32::MAX);
        setsockopt(self.fd(), libc::SOL_SOCKET, force, &v)
            .or_else(|_| setsockopt(self.fd(), libc::SOL_SOCKET, plain, &v))
    }

    /// Make room for a batch of `send` bytes and `acks` replies.
    pub fn size_for_batch(
        &self,
        send: usize,
        acks: usize,
    ) -> Result<(), (&'static str, io::Error)> {
        self.grow(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, send + (1 << 16))
            .map_err(|e| ("setsockopt SO_SNDBUF", e))?;
        // Each ACK is its own skb: budget ~2 KiB of receive buffer per reply.
        self.grow(
            libc::SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            (1 << 20).max(acks * 2048),
        )
        .map_err(|e| ("setsockopt SO_RCVBUF", e))
    }

    /// Send one message.
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        self.0.send(data)
    }

    /// Send all `pages` in ONE `sendmsg` to the kernel; returns the bytes sent.
    pub fn send_pages(&self, pages: &[&[u8]]) -> io::Result<usize> {
        let mut iov: Vec<libc::iovec> = pages
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: all-zero sockaddr_nl (the kernel: pid 0, no groups) and msghdr are valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: as above.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast::<libc::c_void>();
        mh.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        mh.msg_iov = iov.as_mut_ptr();
        // size_t on glibc, int on musl.
        mh.msg_iovlen = iov
            .len()
            .try_into()
            .map_err(|_| io::Error::from_raw_os_error(libc::EMSGSIZE))?;
        // SAFETY: mh points at live iovecs over `pages` (borrowed for this call; the kernel
        // only reads them) and at a live address.
        let n = unsafe { libc::sendmsg(self.fd(), &mh, 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Receive one datagram into `buf`; `Ok(None)` when nothing is queued (non-blocking) or
    /// the receive timeout expired (blocking).
    pub fn recv(&self, buf: &mut RecvBuf, nonblock: bool) -> io::Result<Option<usize>> {
        buf.filled = 0;
        let cap = buf.words.capacity() * 8;
        let flags = if nonblock { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: the spare capacity of `buf` is a live, writable allocation of `cap` bytes;
        // recv(2) writes at most that many.
        let n = unsafe {
            libc::recv(
                self.fd(),
                buf.words.as_mut_ptr().cast::<libc::c_void>(),
                cap,
                flags,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e);
        }
        buf.filled = (n as usize).min(cap);
        Ok(Some(buf.filled))
    }

    /// Wait up to `ms` milliseconds for a datagram.
    pub fn wait_readable(&self, ms: i32) -> io::Result<()> {
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_decode_and_errors_are_positive_errnos() {
        let mut b = Vec::new();
        // An ACK (NLMSG_ERROR, error 0) for seq 7 and an error -17 for seq 8.
        for (seq, err) in [(7u32, 0i32), (8, -17)] {
            b.extend(36u32.to_ne_bytes());
            b.extend((libc::NLMSG_ERROR as u16).to_ne_bytes());
            b.extend(0u16.to_ne_bytes());
            b.extend(seq.to_ne_bytes());
            b.extend(0u32.to_ne_bytes());
            b.extend(err.to_ne_bytes());
            b.extend([0u8; 16]);
        }
        let m = messages(&b).unwrap_or_default();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].seq, m[0].errno), (7, Some(0)));
        assert_eq!((m[1].seq, m[1].errno), (8, Some(17)));
        let mut bad = b.clone();
        bad[0] = 200;
        assert!(messages(&bad).is_err());
    }
}
