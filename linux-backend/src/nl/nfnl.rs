//! nfnetlink framing (`include/uapi/linux/netfilter/nfnetlink.h`), shared by
//! [`super::nft`] (nf_tables) and [`super::nflog`] (nfnetlink_log).
//!
//! ```text
//! +----------------------------+------------------------------+-----------+
//! | nlmsghdr (16 bytes, native)| nfgenmsg: family u8,         | attributes|
//! | len, type, flags, seq, pid | version u8 (0), res_id be16  |           |
//! +----------------------------+------------------------------+-----------+
//! ```
//!
//! The socket is neli's [`NlSocket`] (open, bind, send and receive raw
//! bytes); the framing is this module's, because neli's typed socket and
//! router send one message per `sendmsg` and expect one reply per request,
//! while an nf_tables change must be a batch (`NFNL_MSG_BATCH_BEGIN`, the
//! changes, `NFNL_MSG_BATCH_END`) in one `sendmsg`, and nfnetlink_log
//! multicasts batches of packets that [`super::nflog`] reads without a copy.

use super::attr::{NlaIter, NlaWriter, align};
use crate::{Error, sys};
use neli::consts::socket::{Msg as MsgFlags, NlFamily};
use neli::socket::NlSocket;
use neli::utils::Groups;
use std::io;

/// `NLMSG_NOOP`, `NLMSG_ERROR`, `NLMSG_DONE`.
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_*` request flags.
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLMSG_ERROR` flags: the echoed request is cut to its header; extended
/// ack attributes follow.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the kernel's text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NETLINK_CAP_ACK` socket option.
const NETLINK_CAP_ACK: libc::c_int = 10;

pub const NLMSG_HDRLEN: usize = 16;
/// `NFNETLINK_V0`.
pub const NFNETLINK_V0: u8 = 0;
/// `NFNL_SUBSYS_ULOG` (nfnetlink_log) and `NFNL_SUBSYS_NFTABLES`.
pub const SUBSYS_ULOG: u8 = 4;
pub const SUBSYS_NFTABLES: u8 = 10;
/// `NFNL_MSG_BATCH_BEGIN` / `_END` (`NLMSG_MIN_TYPE`, + 1).
pub const MSG_BATCH_BEGIN: u16 = 0x10;
pub const MSG_BATCH_END: u16 = 0x11;

/// The message type of `msg` in subsystem `subsys`.
pub const fn msg_type(subsys: u8, msg: u8) -> u16 {
    (subsys as u16) << 8 | msg as u16
}

/// `struct nfgenmsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NfGenMsg {
    pub family: u8,
    pub version: u8,
    /// Host order here; big-endian on the wire.
    pub res_id: u16,
}

impl NfGenMsg {
    pub const LEN: usize = 4;

    pub fn new(family: u8, res_id: u16) -> NfGenMsg {
        NfGenMsg {
            family,
            version: NFNETLINK_V0,
            res_id,
        }
    }

    /// The header and the attributes after it.
    pub fn parse(buf: &[u8]) -> Result<(NfGenMsg, &[u8]), Error> {
        match buf {
            [family, version, r0, r1, rest @ ..] => Ok((
                NfGenMsg {
                    family: *family,
                    version: *version,
                    res_id: u16::from_be_bytes([*r0, *r1]),
                },
                rest,
            )),
            _ => Err(Error::Malformed(format!(
                "nfnetlink message of {} bytes has no nfgenmsg",
                buf.len()
            ))),
        }
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.family, self.version]);
        out.extend_from_slice(&self.res_id.to_be_bytes());
    }
}

/// Appends one message (`nlmsghdr`, `nfgenmsg`, the attributes `attrs`
/// writes) to `out`.
pub fn push_message(
    out: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    header: NfGenMsg,
    attrs: impl FnOnce(&mut NlaWriter),
) {
    let mut w = NlaWriter::new(&[0; NLMSG_HDRLEN]);
    header.emit(&mut w.buf);
    attrs(&mut w);
    let mut msg = w.finish();
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&ty.to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: to the kernel.
    out.extend_from_slice(&msg);
    out.resize(align(out.len()), 0);
}

/// One netlink message of a received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
    /// What follows the `nlmsghdr`.
    pub payload: &'a [u8],
}

/// Walks the messages of a buffer; a bad length is an error and ends the
/// walk.
#[derive(Debug, Clone)]
pub struct NlMsgIter<'a> {
    rest: &'a [u8],
}

impl<'a> NlMsgIter<'a> {
    pub fn new(buf: &'a [u8]) -> NlMsgIter<'a> {
        NlMsgIter { rest: buf }
    }
}

impl<'a> Iterator for NlMsgIter<'a> {
    type Item = Result<NlMsg<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((hdr, _)) = self.rest.split_first_chunk::<NLMSG_HDRLEN>() else {
            let n = self.rest.len();
            self.rest = &[];
            return Some(Err(Error::Malformed(format!(
                "{n} trailing bytes are no netlink header"
            ))));
        };
        let word = |i: usize| u32::from_ne_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let len = word(0) as usize;
        if len < NLMSG_HDRLEN || len > self.rest.len() {
            let n = self.rest.len();
            self.rest = &[];
            return Some(Err(Error::Malformed(format!(
                "netlink message claims {len} bytes, {n} remain"
            ))));
        }
        let msg = NlMsg {
            ty: u16::from_ne_bytes([hdr[4], hdr[5]]),
            flags: u16::from_ne_bytes([hdr[6], hdr[7]]),
            seq: word(8),
            pid: word(12),
            payload: &self.rest[NLMSG_HDRLEN..len],
        };
        self.rest = self.rest.get(align(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    }
}

/// An `NLMSG_ERROR` message: `errno` (0 for an ack) and the kernel's
/// extended-ack text, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub errno: i32,
    pub detail: Option<String>,
}

impl Ack {
    pub fn parse(msg: &NlMsg<'_>) -> Result<Ack, Error> {
        let bad = || Error::Malformed(format!("NLMSG_ERROR of {} bytes", msg.payload.len()));
        let (err, echoed) = msg.payload.split_first_chunk::<4>().ok_or_else(bad)?;
        let errno = -i32::from_ne_bytes(*err);
        let mut detail = None;
        if msg.flags & NLM_F_ACK_TLVS != 0 {
            // The echoed request: its header only when capped, else whole.
            let echoed_len = if msg.flags & NLM_F_CAPPED != 0 {
                NLMSG_HDRLEN
            } else {
                let (len, _) = echoed.split_first_chunk::<4>().ok_or_else(bad)?;
                u32::from_ne_bytes(*len) as usize
            };
            let tlvs = echoed.get(align(echoed_len)..).ok_or_else(bad)?;
            for a in NlaIter::new(tlvs) {
                let a = a?;
                if a.kind == NLMSGERR_ATTR_MSG {
                    detail = Some(a.string()?).filter(|s| !s.is_empty());
                }
            }
        }
        Ok(Ack { errno, detail })
    }

    fn into_error(self, op: &str) -> Error {
        Error::Kernel {
            op: op.to_string(),
            error: io::Error::from_raw_os_error(self.errno),
            detail: self.detail,
        }
    }
}

/// An `NETLINK_NETFILTER` socket in the calling thread's network namespace,
/// with extended acks and capped acks, and a receive buffer.
pub struct Socket {
    sock: NlSocket,
    seq: u32,
    pub buf: Vec<u8>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("seq", &self.seq)
            .field("buf", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Socket {
    /// `recv_len`: the receive buffer's size (the largest datagram read).
    pub fn open(recv_len: usize) -> Result<Socket, Error> {
        let sock = NlSocket::connect(NlFamily::Netfilter, None, Groups::empty()).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) {
                Error::Unsupported("the kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK)".into())
            } else {
                Error::Netlink(format!("open netfilter netlink socket: {e}"))
            }
        })?;
        // Best effort: the kernel's reason in errors, and acks without the
        // whole request echoed.
        let _ = sock.enable_ext_ack(true);
        let _ = sys::set_int(sys::nl_fd(&sock), libc::SOL_NETLINK, NETLINK_CAP_ACK, 1);
        Ok(Socket {
            sock,
            seq: 0,
            buf: vec![0; recv_len.max(8192)],
        })
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        sys::nl_fd(&self.sock)
    }

    /// The next sequence number.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    pub fn send(&self, bytes: &[u8], op: &str) -> Result<(), Error> {
        let n = self
            .sock
            .send(bytes, MsgFlags::empty())
            .map_err(|e| Error::Netlink(format!("{op}: send: {e}")))?;
        if n != bytes.len() {
            return Err(Error::Netlink(format!(
                "{op}: sent {n} of {} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// Receives one datagram into `buf`: its length as the kernel had it
    /// (more than `buf.len()` when it was cut), or `None` when `block` is
    /// false and nothing is queued.
    pub fn recv(&mut self, block: bool) -> io::Result<Option<usize>> {
        let flags = if block {
            MsgFlags::TRUNC
        } else {
            MsgFlags::TRUNC | MsgFlags::DONTWAIT
        };
        match self.sock.recv(&mut self.buf[..], flags) {
            Ok((n, _)) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `bytes` (one or more requests, described by `op`) and waits
    /// for the acks of `acks` (sequence number, what it does): the first
    /// error is returned with its request's description, or with `op` when
    /// it answers a message that asked for no ack (the kernel refuses a
    /// whole nf_tables batch, e.g. without `CAP_NET_ADMIN`, by answering its
    /// first message). Other messages (e.g. packets multicast meanwhile)
    /// are dropped.
    pub fn transact(&mut self, bytes: &[u8], acks: &[(u32, &str)], op: &str) -> Result<(), Error> {
        self.send(bytes, op)?;
        let mut pending: Vec<(u32, &str)> = acks.to_vec();
        while !pending.is_empty() {
            let n = match self.recv(true) {
                Ok(Some(n)) => n.min(self.buf.len()),
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Netlink(format!("{op}: receive: {e}"))),
            };
            let mut failed = None;
            for msg in NlMsgIter::new(&self.buf[..n]) {
                let msg = msg?;
                if msg.ty != NLMSG_ERROR {
                    continue;
                }
                let ack = Ack::parse(&msg)?;
                let Some(i) = pending.iter().position(|p| p.0 == msg.seq) else {
                    if ack.errno != 0 && failed.is_none() {
                        failed = Some(ack.into_error(op));
                    }
                    continue;
                };
                let (_, what) = pending.swap_remove(i);
                if ack.errno != 0 && failed.is_none() {
                    failed = Some(ack.into_error(what));
                }
            }
            if let Some(e) = failed {
                self.discard();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends a dump request and hands each reply's payload to `f`, until
    /// `NLMSG_DONE`.
    pub fn dump(&mut self, bytes: &[u8], op: &str, mut f: impl FnMut(&[u8])) -> Result<(), Error> {
        self.send(bytes, op)?;
        loop {
            let n = match self.recv(true) {
                Ok(Some(n)) if n <= self.buf.len() => n,
                Ok(Some(n)) => {
                    return Err(Error::Netlink(format!(
                        "{op}: a reply of {n} bytes was cut"
                    )));
                }
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Netlink(format!("{op}: receive: {e}"))),
            };
            for msg in NlMsgIter::new(&self.buf[..n]) {
                let msg = msg?;
                match msg.ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let ack = Ack::parse(&msg)?;
                        if ack.errno != 0 {
                            return Err(ack.into_error(op));
                        }
                    }
                    _ => f(msg.payload),
                }
            }
        }
    }

    /// Drops what is queued (replies to a request that failed part way).
    fn discard(&mut self) {
        while let Ok(Some(_)) = self.recv(false) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_frame_and_walk() {
        let mut out = Vec::new();
        push_message(
            &mut out,
            0x10,
            NLM_F_REQUEST,
            7,
            NfGenMsg::new(0, 10),
            |_| {},
        );
        push_message(
            &mut out,
            0xa00,
            NLM_F_REQUEST | NLM_F_ACK,
            8,
            NfGenMsg::new(10, 0),
            |w| {
                w.string(1, b"t");
            },
        );
        // Batch begin: 16 + 4 bytes, res_id 10 big-endian.
        assert_eq!(
            &out[..20],
            &[
                20, 0, 0, 0, 0x10, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10
            ]
        );
        let msgs: Vec<_> = NlMsgIter::new(&out).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[1].ty, msgs[1].flags, msgs[1].seq), (0xa00, 5, 8));
        let (header, attrs) = NfGenMsg::parse(msgs[1].payload).unwrap();
        assert_eq!(header, NfGenMsg::new(10, 0));
        let a = NlaIter::new(attrs).next().unwrap().unwrap();
        assert_eq!(a.string().unwrap(), "t");
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut out = Vec::new();
        push_message(&mut out, 3, 0, 1, NfGenMsg::new(0, 0), |_| {});
        for n in 0..out.len() {
            let r: Result<Vec<_>, _> = NlMsgIter::new(&out[..n]).collect();
            assert_eq!(r.is_err(), n > 0, "{n} bytes");
        }
        let mut long = out.clone();
        long[0] = 200;
        assert!(NlMsgIter::new(&long).next().unwrap().is_err());
        assert!(NfGenMsg::parse(&[1, 2, 3]).is_err());
    }

    /// An `NLMSG_ERROR` as the kernel sends it to a capped, ext-ack socket:
    /// `EEXIST` for an nf_tables NEWTABLE, with the kernel's text.
    #[test]
    fn acks_carry_errno_and_text() {
        let mut payload = (-libc::EEXIST).to_ne_bytes().to_vec();
        // The echoed request header (capped): len 40, type 0xa00, seq 9.
        payload.extend_from_slice(&40u32.to_ne_bytes());
        payload.extend_from_slice(&[0, 0xa, 5, 4, 9, 0, 0, 0, 0, 0, 0, 0]);
        let mut w = NlaWriter::new(&payload);
        w.string(NLMSGERR_ATTR_MSG, b"table exists");
        let payload = w.finish();
        let msg = NlMsg {
            ty: NLMSG_ERROR,
            flags: NLM_F_CAPPED | NLM_F_ACK_TLVS,
            seq: 9,
            pid: 0,
            payload: &payload,
        };
        let ack = Ack::parse(&msg).unwrap();
        assert_eq!(ack.errno, libc::EEXIST);
        assert_eq!(ack.detail.as_deref(), Some("table exists"));
        for n in 0..payload.len() {
            let cut = NlMsg {
                payload: &payload[..n],
                ..msg
            };
            let _ = Ack::parse(&cut);
        }
        assert!(
            Ack::parse(&NlMsg {
                payload: &[1],
                ..msg
            })
            .is_err()
        );
    }
}
