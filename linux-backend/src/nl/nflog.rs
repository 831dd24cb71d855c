//! nfnetlink_log (`include/uapi/linux/netfilter/nfnetlink_log.h`): the
//! packets an nf_tables `log group N` rule ([`super::nft::LogRule`]) hands
//! to user space, batched by the kernel.
//!
//! [`NflogSocket::open`] binds a group and configures it (copy mode and
//! range, flush timeout, queue threshold, batch buffer size), each command
//! acked. The kernel then sends a batch (an skb of several
//! `NFULNL_MSG_PACKET` messages flagged `NLM_F_MULTI`, ended by
//! `NLMSG_DONE`) when `qthreshold` packets are queued, the batch buffer is
//! full, or `flush_timeout` has passed since the first. [`NflogSocket::drain`]
//! reads the batches into one reused buffer and hands each packet, borrowed
//! from it, to a callback.
//!
//! A packet message is `nfgenmsg` then attributes; [`NflogPacket`] is the
//! typed, zero-copy form of the ones CLT uses:
//!
//! | attribute | payload |
//! |---|---|
//! | `NFULA_PACKET_HDR` (1) | `hw_protocol` be16, `hook` u8, pad u8 |
//! | `NFULA_TIMESTAMP` (3) | seconds be64, microseconds be64 |
//! | `NFULA_IFINDEX_INDEV` (4) | be32 |
//! | `NFULA_PAYLOAD` (9) | the packet from its network header |
//! | `NFULA_PREFIX` (10) | NUL-terminated string |

use super::attr::{NlaIter, NlaWriter};
use super::nfnl::{self, NLM_F_ACK, NLM_F_REQUEST, NfGenMsg, NlMsgIter, SUBSYS_ULOG};
use crate::{Error, sys};
use std::io;
use std::time::Duration;

/// `NFULNL_MSG_PACKET`, `NFULNL_MSG_CONFIG`.
const MSG_PACKET: u8 = 0;
const MSG_CONFIG: u8 = 1;
/// `NFULA_*` packet attributes.
const PACKET_HDR: u16 = 1;
const TIMESTAMP: u16 = 3;
const IFINDEX_INDEV: u16 = 4;
const PAYLOAD: u16 = 9;
const PREFIX: u16 = 10;
/// `NFULA_CFG_*` config attributes.
const CFG_CMD: u16 = 1;
const CFG_MODE: u16 = 2;
const CFG_NLBUFSIZ: u16 = 3;
const CFG_TIMEOUT: u16 = 4;
const CFG_QTHRESH: u16 = 5;
/// `NFULNL_CFG_CMD_BIND`, `_UNBIND`, `NFULNL_COPY_PACKET`.
const CMD_BIND: u8 = 1;
const CMD_UNBIND: u8 = 2;
const COPY_PACKET: u8 = 2;
/// Receives per [`NflogSocket::drain`] call, so that a flood cannot keep
/// one call going forever.
const MAX_RECEIVES_PER_DRAIN: usize = 256;

/// How the kernel batches a group's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NflogConfig {
    /// Bytes of each packet copied (the rule's snaplen, if smaller, wins).
    pub copy_range: u32,
    /// Longest a packet waits in the kernel for its batch (sent in 1/100 s,
    /// at least 1).
    pub flush_timeout: Duration,
    /// Packets per batch (the rule's queue-threshold, if set, wins).
    pub qthreshold: u32,
    /// The kernel's batch buffer (4 KiB to 128 KiB).
    pub nlbufsiz: u32,
    /// The socket's receive buffer, forced past `net.core.rmem_max` with
    /// `SO_RCVBUFFORCE` when allowed.
    pub recv_buffer: usize,
}

impl Default for NflogConfig {
    fn default() -> NflogConfig {
        NflogConfig {
            copy_range: 1024,
            flush_timeout: Duration::from_millis(50),
            qthreshold: 64,
            nlbufsiz: 128 * 1024,
            recv_buffer: 8 << 20,
        }
    }
}

impl NflogConfig {
    fn timeout_centis(&self) -> u32 {
        u32::try_from(self.flush_timeout.as_millis() / 10)
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

/// What one [`NflogSocket::drain`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NflogStats {
    /// Packets handed to the callback.
    pub packets: u64,
    /// Messages that did not parse, and datagrams cut by the buffer.
    pub malformed: u64,
    /// Times the socket's receive buffer overran (`ENOBUFS`): packets lost.
    pub overruns: u64,
}

/// One logged packet, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NflogPacket<'a> {
    /// The link layer protocol (`ETH_P_IPV6` = 0x86dd).
    pub hw_protocol: u16,
    /// The netfilter hook (`NF_INET_LOCAL_IN` = 1).
    pub hook: u8,
    pub indev: Option<u32>,
    /// Unix time in nanoseconds (microsecond resolution) when the packet
    /// was received.
    pub timestamp_ns: Option<u64>,
    /// The rule's log prefix, without its terminator.
    pub prefix: Option<&'a [u8]>,
    /// The packet from its IPv6 header, at most the copy range.
    pub payload: &'a [u8],
}

fn malformed(what: &str) -> Error {
    Error::Malformed(format!("nflog packet: {what}"))
}

impl<'a> NflogPacket<'a> {
    /// Parses the attributes after the `nfgenmsg` of one
    /// `NFULNL_MSG_PACKET`; unknown attributes are skipped, a missing
    /// packet header or payload is an error.
    pub fn parse(attrs: &'a [u8]) -> Result<NflogPacket<'a>, Error> {
        let mut hdr = None;
        let mut indev = None;
        let mut timestamp_ns = None;
        let mut prefix = None;
        let mut payload = None;
        for a in NlaIter::new(attrs) {
            let a = a?;
            match a.kind {
                PACKET_HDR => match a.payload {
                    [p0, p1, hook, _pad] => hdr = Some((u16::from_be_bytes([*p0, *p1]), *hook)),
                    _ => return Err(malformed("packet header is not 4 bytes")),
                },
                TIMESTAMP => {
                    let (sec, usec) = a
                        .payload
                        .split_first_chunk::<8>()
                        .and_then(|(s, rest)| Some((*s, *<&[u8; 8]>::try_from(rest).ok()?)))
                        .ok_or_else(|| malformed("timestamp is not 16 bytes"))?;
                    let ns = u64::from_be_bytes(sec)
                        .checked_mul(1_000_000_000)
                        .zip(u64::from_be_bytes(usec).checked_mul(1000))
                        .and_then(|(s, u)| s.checked_add(u))
                        .ok_or_else(|| malformed("timestamp out of range"))?;
                    timestamp_ns = Some(ns);
                }
                IFINDEX_INDEV => indev = Some(a.be(u32::from_be_bytes)?),
                PREFIX => {
                    let end = a.payload.iter().position(|b| *b == 0);
                    prefix = Some(&a.payload[..end.unwrap_or(a.payload.len())]);
                }
                PAYLOAD => payload = Some(a.payload),
                _ => {}
            }
        }
        let (hw_protocol, hook) = hdr.ok_or_else(|| malformed("no packet header"))?;
        Ok(NflogPacket {
            hw_protocol,
            hook,
            indev,
            timestamp_ns,
            prefix,
            payload: payload.ok_or_else(|| malformed("no payload"))?,
        })
    }

    /// Emits the same attributes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = NlaWriter {
            buf: std::mem::take(out),
        };
        let [p0, p1] = self.hw_protocol.to_be_bytes();
        w.put(PACKET_HDR, &[p0, p1, self.hook, 0]);
        if let Some(ns) = self.timestamp_ns {
            let mut ts = [0; 16];
            ts[..8].copy_from_slice(&(ns / 1_000_000_000).to_be_bytes());
            ts[8..].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_be_bytes());
            w.put(TIMESTAMP, &ts);
        }
        if let Some(i) = self.indev {
            w.put(IFINDEX_INDEV, &i.to_be_bytes());
        }
        if let Some(p) = self.prefix {
            w.string(PREFIX, p);
        }
        w.put(PAYLOAD, self.payload);
        *out = w.finish();
    }
}

/// The kernel answers `EPERM` both without `CAP_NET_ADMIN` and when another
/// socket has bound the group; `net_admin` (the thread's effective set) tells
/// which. A taken group is reported as `EBUSY`, the kernel's own errno for
/// binding a group twice.
fn refused(op: String, group: u16, net_admin: Option<bool>) -> Error {
    let (errno, why) = match net_admin {
        Some(true) => (
            libc::EBUSY,
            format!("group {group} is bound by another socket (the kernel answered EPERM)"),
        ),
        Some(false) => (libc::EPERM, "CAP_NET_ADMIN is needed".to_string()),
        None => (
            libc::EPERM,
            format!("CAP_NET_ADMIN is needed, or group {group} is bound by another socket"),
        ),
    };
    Error::Kernel {
        op,
        error: io::Error::from_raw_os_error(errno),
        detail: Some(why),
    }
}

/// Whether the calling thread has `CAP_NET_ADMIN` (12) in its effective set
/// (`CapEff` of `/proc/thread-self/status`); `None` when that cannot be read.
fn has_net_admin() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    let eff = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(eff & (1 << 12) != 0)
}

/// A config command: what it does (for errors), what writes its attributes.
type Command<'a> = (&'a str, &'a dyn Fn(&mut NlaWriter));

/// A socket bound to one nfnetlink_log group.
#[derive(Debug)]
pub struct NflogSocket {
    sock: nfnl::Socket,
    group: u16,
}

fn config_type() -> u16 {
    nfnl::msg_type(SUBSYS_ULOG, MSG_CONFIG)
}

impl NflogSocket {
    /// Binds to group `group` in the calling thread's network namespace and
    /// configures it. A group another socket has bound gives
    /// [`Error::Kernel`] with `EBUSY`; a missing `CAP_NET_ADMIN`, `EPERM`.
    /// Also enables kernel receive timestamps
    /// (`SO_TIMESTAMPNS`), without which the kernel may send packets with
    /// no `NFULA_TIMESTAMP`. Unbinds on drop (closing the socket does too).
    pub fn open(group: u16, cfg: &NflogConfig) -> Result<NflogSocket, Error> {
        // A batch can fill its skb's tailroom, which the allocator rounds
        // up to twice the requested size.
        let len = 2 * cfg.nlbufsiz as usize + cfg.copy_range as usize + 4096;
        let mut sock = nfnl::Socket::open(len)?;
        let fd = sock.fd();
        sys::set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).map_err(|error| {
            Error::Socket {
                op: "SO_TIMESTAMPNS",
                error,
            }
        })?;

        let mut mode = cfg.copy_range.to_be_bytes().to_vec();
        mode.extend_from_slice(&[COPY_PACKET, 0]);
        let bind_op = format!("bind nflog group {group}");
        let mode_op = format!("set nflog group {group} copy range {}", cfg.copy_range);
        let timeout_op = format!(
            "set nflog group {group} flush timeout {:?}",
            cfg.flush_timeout
        );
        let qthresh_op = format!("set nflog group {group} queue threshold {}", cfg.qthreshold);
        let bufsiz_op = format!("set nflog group {group} buffer size {}", cfg.nlbufsiz);
        let commands: [Command<'_>; 5] = [
            (&bind_op, &|w| {
                w.put(CFG_CMD, &[CMD_BIND]);
            }),
            (&mode_op, &|w| {
                w.put(CFG_MODE, &mode);
            }),
            (&timeout_op, &|w| {
                w.put(CFG_TIMEOUT, &cfg.timeout_centis().to_be_bytes());
            }),
            (&qthresh_op, &|w| {
                w.put(CFG_QTHRESH, &cfg.qthreshold.to_be_bytes());
            }),
            (&bufsiz_op, &|w| {
                w.put(CFG_NLBUFSIZ, &cfg.nlbufsiz.to_be_bytes());
            }),
        ];
        let mut bytes = Vec::new();
        let mut acks = Vec::new();
        for (what, attrs) in commands {
            let seq = sock.next_seq();
            let header = NfGenMsg::new(libc::AF_UNSPEC as u8, group);
            nfnl::push_message(
                &mut bytes,
                config_type(),
                NLM_F_REQUEST | NLM_F_ACK,
                seq,
                header,
                attrs,
            );
            acks.push((seq, what));
        }
        sock.transact(&bytes, &acks, &bind_op).map_err(|e| match e {
            Error::Kernel { op, error, .. }
                if op == bind_op
                    && matches!(error.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) =>
            {
                Error::Unsupported(format!(
                    "{op}: the kernel has no nfnetlink_log (CONFIG_NETFILTER_NETLINK_LOG): {error}"
                ))
            }
            Error::Kernel { op, error, .. } if error.raw_os_error() == Some(libc::EPERM) => {
                refused(op, group, has_net_admin())
            }
            e => e,
        })?;
        // After the acks, so that a small buffer cannot lose them.
        let fd = sock.fd();
        let size = i32::try_from(cfg.recv_buffer).unwrap_or(i32::MAX);
        if sys::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            sys::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size).map_err(|error| {
                Error::Socket {
                    op: "SO_RCVBUF",
                    error,
                }
            })?;
        }
        Ok(NflogSocket { sock, group })
    }

    /// The bound group.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The socket, e.g. for an event loop; read it only through
    /// [`NflogSocket::drain`].
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.fd()
    }

    /// Waits up to `timeout_ms` (negative: forever) for data; `Ok(false)`
    /// on timeout or `EINTR`.
    pub fn wait(&self, timeout_ms: i32) -> Result<bool, Error> {
        sys::poll_readable(&self.sock.fd(), timeout_ms).map_err(|error| Error::Socket {
            op: "poll nflog socket",
            error,
        })
    }

    /// Without blocking, hands every queued packet to `f`, borrowed from
    /// the socket's receive buffer (reused across calls). Stops after
    /// [`MAX_RECEIVES_PER_DRAIN`] batches, so that a flood cannot hold the
    /// caller; [`NflogSocket::wait`] then returns at once.
    pub fn drain(&mut self, mut f: impl FnMut(&NflogPacket<'_>)) -> Result<NflogStats, Error> {
        let mut stats = NflogStats::default();
        for _ in 0..MAX_RECEIVES_PER_DRAIN {
            let n = match self.sock.recv(false) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    stats.overruns += 1;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(Error::Socket {
                        op: "receive from nflog socket",
                        error,
                    });
                }
            };
            let buf = &self.sock.buf;
            // A datagram longer than the buffer was cut: its whole messages
            // are read, the cut one counts once.
            let cut = n > buf.len();
            stats.malformed += u64::from(cut);
            for msg in NlMsgIter::new(&buf[..n.min(buf.len())]) {
                let Ok(msg) = msg else {
                    stats.malformed += u64::from(!cut);
                    break;
                };
                if msg.ty != nfnl::msg_type(SUBSYS_ULOG, MSG_PACKET) {
                    // NLMSG_DONE ends a batch; stray acks are of no use.
                    continue;
                }
                match NfGenMsg::parse(msg.payload).and_then(|(_, a)| NflogPacket::parse(a)) {
                    Ok(p) => {
                        stats.packets += 1;
                        f(&p);
                    }
                    Err(_) => stats.malformed += 1,
                }
            }
        }
        Ok(stats)
    }
}

impl Drop for NflogSocket {
    fn drop(&mut self) {
        // Best effort and unacked: closing the socket unbinds it anyway.
        let mut bytes = Vec::new();
        let seq = self.sock.next_seq();
        let header = NfGenMsg::new(libc::AF_UNSPEC as u8, self.group);
        nfnl::push_message(&mut bytes, config_type(), NLM_F_REQUEST, seq, header, |w| {
            w.put(CFG_CMD, &[CMD_UNBIND]);
        });
        let _ = self.sock.send(&bytes, "unbind nflog group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv6 header with a Hop-by-Hop header (next header 0), cut short.
    const IPV6_HBH: [u8; 8] = [0x60, 0, 0, 0, 0, 16, 0, 64];

    fn packet() -> NflogPacket<'static> {
        NflogPacket {
            hw_protocol: 0x86dd,
            hook: 1,
            indev: Some(3),
            timestamp_ns: Some(1_700_000_000_123_456_000),
            prefix: Some(b""),
            payload: &IPV6_HBH,
        }
    }

    /// The bytes nfnetlink_log sends for `packet()` (the kernel's order:
    /// header, timestamp, indev, prefix, payload).
    fn kernel_bytes() -> Vec<u8> {
        let mut b = vec![8, 0, 1, 0, 0x86, 0xdd, 1, 0];
        b.extend_from_slice(&[20, 0, 3, 0]);
        b.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        b.extend_from_slice(&123_456u64.to_be_bytes());
        b.extend_from_slice(&[8, 0, 4, 0, 0, 0, 0, 3]);
        b.extend_from_slice(&[5, 0, 10, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[12, 0, 9, 0]);
        b.extend_from_slice(&IPV6_HBH);
        b
    }

    #[test]
    fn parses_and_emits_the_kernels_bytes() {
        let raw = kernel_bytes();
        assert_eq!(NflogPacket::parse(&raw).unwrap(), packet());
        let mut out = Vec::new();
        packet().emit(&mut out);
        assert_eq!(out, raw);
    }

    #[test]
    fn optional_attributes_round_trip_and_unknown_ones_are_skipped() {
        let p = NflogPacket {
            indev: None,
            timestamp_ns: None,
            prefix: Some(b"clt"),
            ..packet()
        };
        let mut out = Vec::new();
        p.emit(&mut out);
        // An NFULA_MARK (2) the parser does not use.
        out.extend_from_slice(&[8, 0, 2, 0, 0, 0, 0, 9]);
        assert_eq!(NflogPacket::parse(&out).unwrap(), p);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let raw = kernel_bytes();
        // Every cut: an error, or (cut on an attribute boundary after the
        // payload cannot happen: it is last) never a panic.
        for n in 0..raw.len() {
            assert!(NflogPacket::parse(&raw[..n]).is_err(), "{n} bytes");
        }
        // A timestamp of 12 bytes, a 5-byte indev, a packet header of 2.
        let mut bad_ts = raw.clone();
        bad_ts[8] = 16;
        assert!(NflogPacket::parse(&bad_ts).is_err());
        let mut bad_indev = raw.clone();
        bad_indev[28] = 9;
        assert!(NflogPacket::parse(&bad_indev).is_err());
        let mut short_hdr = vec![6, 0, 1, 0, 0x86, 0xdd, 0, 0];
        short_hdr.extend_from_slice(&raw[8..]);
        assert!(NflogPacket::parse(&short_hdr).is_err());
        // A timestamp past u64 nanoseconds.
        let mut far = raw.clone();
        far[12..20].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(NflogPacket::parse(&far), Err(Error::Malformed(_))));
        // No payload.
        assert!(NflogPacket::parse(&raw[..raw.len() - 12]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_parse_or_fail_and_what_parses_round_trips(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)
        ) {
            if let Ok(p) = NflogPacket::parse(&data) {
                let mut out = Vec::new();
                p.emit(&mut out);
                proptest::prop_assert_eq!(NflogPacket::parse(&out).unwrap(), p);
            }
        }

        #[test]
        fn packets_round_trip(
            hw: u16, hook: u8, indev: Option<u32>, micros in proptest::option::of(0u64..u64::MAX / 1000),
            prefix in proptest::option::of("[a-z]{0,20}"),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
        ) {
            let p = NflogPacket {
                hw_protocol: hw,
                hook,
                indev,
                timestamp_ns: micros.map(|m| m * 1000),
                prefix: prefix.as_deref().map(str::as_bytes),
                payload: &payload,
            };
            let mut out = Vec::new();
            p.emit(&mut out);
            proptest::prop_assert_eq!(NflogPacket::parse(&out).unwrap(), p);
        }
    }

    #[test]
    fn eperm_is_told_apart_by_the_threads_capabilities() {
        let errno = |e: Error| match e {
            Error::Kernel { error, detail, .. } => {
                (error.raw_os_error(), detail.unwrap_or_default())
            }
            other => panic!("{other:?}"),
        };
        let (busy, why) = errno(refused("bind".into(), 3, Some(true)));
        assert_eq!(busy, Some(libc::EBUSY));
        assert!(why.contains("group 3 is bound by another socket"), "{why}");
        assert_eq!(
            errno(refused("bind".into(), 3, Some(false))).0,
            Some(libc::EPERM)
        );
        let (perm, why) = errno(refused("bind".into(), 3, None));
        assert!(
            perm == Some(libc::EPERM) && why.contains("CAP_NET_ADMIN"),
            "{why}"
        );
        // This thread can read its own capabilities.
        assert!(has_net_admin().is_some());
    }

    #[test]
    fn flush_timeout_is_sent_in_hundredths_of_a_second() {
        let t = |ms| {
            NflogConfig {
                flush_timeout: Duration::from_millis(ms),
                ..NflogConfig::default()
            }
            .timeout_centis()
        };
        assert_eq!((t(0), t(9), t(50), t(1000)), (1, 1, 5, 100));
    }
}
