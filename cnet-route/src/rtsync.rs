//! Blocking route-netlink requests in batches, for the attach path (no async runtime).
//!
//! rtnetlink handles a request inside the `send(2)` that carries it (under RTNL, in the
//! sender's context) and queues the answer on the socket; a buffer of several requests is
//! handled in order, each acknowledged on its own (a failed one does not stop the rest).
//! [`Rt::exchange`] therefore serializes a batch of requests into one buffer, sends it with
//! one `send(2)` and reads the answers, matched to the requests by sequence number.
//!
//! Why not the async connection the rest of the crate uses: measured in the attach of a pod
//! (lab, 100 pods on the node, 12 requests), rtnetlink's connection task answered each
//! request after a channel hop, a non-blocking `recvfrom` that found nothing (`EAGAIN`) and
//! an `epoll_wait`: 29 `recvfrom` and 17 `epoll_wait` per attach, and a runtime to build.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rtnetlink::packet_core::{
    ErrorMessage, NLM_F_ACK, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

use crate::error::{Error, Side};

/// `struct nlmsghdr`'s size.
const HEADER: usize = 16;
/// Receive buffer: large enough for any single answer of the attach path (an echoed
/// `RTM_NEWLINK` is ~1.5 KiB); a datagram never spans two reads.
const RX_BUFFER: usize = 32 * 1024;

/// What the kernel answered to one request of a batch.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// Messages sent back before the acknowledgement (an echo, a lookup's result).
    pub(crate) replies: Vec<RouteNetlinkMessage>,
    /// The request's error, `None` when it was acknowledged.
    pub(crate) error: Option<rtnetlink::Error>,
    /// Acknowledged or failed (nothing more comes for it).
    done: bool,
}

impl Answer {
    /// The replies, or the request's error.
    pub(crate) fn result(self) -> Result<Vec<RouteNetlinkMessage>, rtnetlink::Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.replies),
        }
    }
}

/// A blocking NETLINK_ROUTE socket (created in the namespace it acts on).
#[derive(Debug)]
pub(crate) struct Rt {
    fd: OwnedFd,
    pub(crate) side: Side,
    seq: u32,
    rx: Vec<u8>,
}

/// The errno of an error answer, as rtnetlink's errors carry it.
fn netlink_error(code: i32) -> rtnetlink::Error {
    let mut m = ErrorMessage::default();
    m.code = std::num::NonZeroI32::new(code);
    rtnetlink::Error::NetlinkError(m)
}

impl Rt {
    /// Wrap a blocking NETLINK_ROUTE socket.
    pub(crate) fn new(fd: OwnedFd, side: Side) -> Rt {
        Rt {
            fd,
            side,
            seq: 1,
            rx: Vec::new(),
        }
    }

    /// The socket, for requests made elsewhere (see [`crate::netconf::forwarding`]).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Setup {
            side: self.side,
            source,
        }
    }

    /// One request (flags besides `NLM_F_REQUEST | NLM_F_ACK`): its replies or its error.
    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Result<Vec<RouteNetlinkMessage>, rtnetlink::Error>, Error> {
        let mut answers = self.exchange(vec![(msg, flags)])?;
        Ok(answers.pop().unwrap_or_default().result())
    }

    /// Send `reqs` (each with its flags besides `NLM_F_REQUEST | NLM_F_ACK`, which every
    /// request carries) in one buffer and return the answers in the same order. An `Err` is a
    /// socket failure (no answer can be trusted); a request's own failure is in its answer.
    pub(crate) fn exchange(
        &mut self,
        reqs: Vec<(RouteNetlinkMessage, u16)>,
    ) -> Result<Vec<Answer>, Error> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.seq;
        let count = reqs.len();
        let mut buf = Vec::with_capacity(256 * count);
        for (k, (msg, flags)) in reqs.into_iter().enumerate() {
            let mut m = NetlinkMessage::from(msg);
            m.header.flags = flags | NLM_F_REQUEST | NLM_F_ACK;
            m.header.sequence_number = first.wrapping_add(k as u32);
            m.finalize();
            let at = buf.len();
            buf.resize(at + m.buffer_len(), 0);
            m.serialize(&mut buf[at..]);
            buf.resize(buf.len().next_multiple_of(4), 0);
        }
        self.seq = first.wrapping_add(count as u32);
        // SAFETY: send(2) of an initialised buffer we own on an open socket.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if sent < 0 {
            return Err(self.io(std::io::Error::last_os_error()));
        }
        if usize::try_from(sent).ok() != Some(buf.len()) {
            return Err(self.io(std::io::Error::other("netlink request sent in part")));
        }
        let mut answers: Vec<Answer> = (0..count).map(|_| Answer::default()).collect();
        let mut open = count;
        // Not zeroed: an answer fills a page or two of the buffer; zeroing all of it is a
        // memset of 32 KiB. Only what recv(2) wrote is read (the length is set to it).
        self.rx.clear();
        self.rx.reserve(RX_BUFFER);
        let cap = self.rx.capacity();
        while open > 0 {
            self.rx.clear();
            // SAFETY: recv(2) into the spare capacity of a buffer we own, at most `cap` bytes.
            let got =
                unsafe { libc::recv(self.fd.as_raw_fd(), self.rx.as_mut_ptr().cast(), cap, 0) };
            let got = match usize::try_from(got) {
                Ok(n) => n,
                Err(_) => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(self.io(e));
                }
            };
            let got = got.min(cap);
            // SAFETY: recv(2) initialised the first `got` bytes (at most the capacity).
            unsafe { self.rx.set_len(got) };
            let mut at = 0;
            while at + HEADER <= got {
                let word = |o: usize| {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(&self.rx[at + o..at + o + 4]);
                    u32::from_ne_bytes(b)
                };
                let len = word(0) as usize;
                if len < HEADER || at + len > got {
                    return Err(self.io(std::io::Error::other("malformed netlink answer")));
                }
                let kind = u16::try_from(word(4) & 0xffff).unwrap_or(0);
                let k = word(8).wrapping_sub(first) as usize;
                let bytes = &self.rx[at..at + len];
                at += len.next_multiple_of(4);
                // Answers to other requests (none are in flight on our sockets) are skipped.
                let Some(answer) = answers.get_mut(k) else {
                    continue;
                };
                match kind {
                    NLMSG_ERROR => {
                        let code = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                            Ok(NetlinkMessage {
                                payload: NetlinkPayload::Error(e),
                                ..
                            }) => e.code.map_or(0, std::num::NonZeroI32::get),
                            // The errno is the first word after the header.
                            _ if len >= HEADER + 4 => {
                                let mut b = [0u8; 4];
                                b.copy_from_slice(&bytes[HEADER..HEADER + 4]);
                                i32::from_ne_bytes(b)
                            }
                            _ => -libc::EBADMSG,
                        };
                        if code != 0 && answer.error.is_none() {
                            answer.error = Some(netlink_error(code));
                        }
                        if !answer.done {
                            answer.done = true;
                            open -= 1;
                        }
                    }
                    NLMSG_DONE if !answer.done => {
                        answer.done = true;
                        open -= 1;
                    }
                    NLMSG_DONE => {}
                    _ => {
                        if let Ok(NetlinkMessage {
                            payload: NetlinkPayload::InnerMessage(m),
                            ..
                        }) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                        {
                            answer.replies.push(m);
                        }
                    }
                }
            }
        }
        Ok(answers)
    }
}
