//! The kernel's IOAM6 trace events: a generic netlink socket in the
//! multicast group `ioam6_events` of family `IOAM6`, decoded with
//! `clt_linux::nl::ioam6::TraceEventRepr`.
//!
//! Linux (6.9 and later) raises one `IOAM6_EVENT_TRACE` per pre-allocated
//! trace a node processes, in the network namespace of the receiving
//! device, right after the node filled its entry (`ipv6_hop_ioam` in
//! `net/ipv6/exthdrs.c`), when anyone listens. Joining the group needs
//! CAP_NET_ADMIN.

use clt_linux::nl::ioam6::{EVENTS_GROUP, FAMILY_NAME, TraceEventRepr};
use neli::consts::socket::NlFamily;
use neli::err::SocketError;
use neli::router::synchronous::NlRouter;
use neli::socket::synchronous::NlSocketHandle;
use neli::types::Buffer;
use neli::utils::Groups;

use crate::Error;

/// The event socket's receive buffer, bytes (the kernel accounts twice
/// this): with an event's ~1 KiB of buffer, some 16 000 events, 0.3 M
/// events/s at the default 50 ms batch interval.
pub const RECV_BUFFER: usize = 8 << 20;

/// What one [`EventSocket::poll`] saw besides the events it handed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Messages that were not trace events of the family, or malformed.
    pub malformed: u64,
    /// Receive-buffer overruns (ENOBUFS): events the kernel dropped.
    pub overruns: u64,
}

/// A socket subscribed to the trace events of the current thread's network
/// namespace (the namespace is fixed when the socket is opened).
pub struct EventSocket {
    sock: NlSocketHandle,
    family: u16,
}

impl std::fmt::Debug for EventSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSocket")
            .field("pid", &self.sock.pid())
            .field("family", &self.family)
            .finish()
    }
}

impl EventSocket {
    /// Resolves the family and group and joins the group. Fails, saying
    /// why, on kernels without IOAM6 or without its events, and without
    /// CAP_NET_ADMIN.
    pub fn open() -> Result<EventSocket, Error> {
        let (router, _) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| Error::Events(format!("open a generic netlink socket: {e}")))?;
        let family = router.resolve_genl_family(FAMILY_NAME).map_err(|e| {
            Error::Events(format!(
                "no {FAMILY_NAME} generic netlink family (kernel without CONFIG_IPV6_IOAM6?): {e}"
            ))
        })?;
        let group = router
            .resolve_nl_mcast_group(FAMILY_NAME, EVENTS_GROUP)
            .map_err(|e| {
                Error::Events(format!(
                    "no {EVENTS_GROUP} multicast group (Linux before 6.9?): {e}"
                ))
            })?;
        drop(router);
        let sock = NlSocketHandle::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| Error::Events(format!("open a generic netlink socket: {e}")))?;
        sock.add_mcast_membership(Groups::new_groups(&[group]))
            .map_err(|e| {
                Error::Events(format!("join {EVENTS_GROUP} (needs CAP_NET_ADMIN): {e}"))
            })?;
        // The agent drains the socket once per batch interval, and the
        // kernel drops events (ENOBUFS) when the buffer is full: ask for
        // RECV_BUFFER bytes past net.core.rmem_max (CAP_NET_ADMIN, which
        // the group needs anyway), else for what rmem_max allows.
        if super::capture::force_recv_buffer(&sock, RECV_BUFFER).is_err() {
            let _ = sock.set_recv_buffer_size(RECV_BUFFER);
        }
        Ok(EventSocket { sock, family })
    }

    /// Waits up to `timeout_ms` until events are queued; `Ok(false)` on
    /// timeout.
    pub fn wait(&self, timeout_ms: i32) -> Result<bool, Error> {
        clt_linux::poll_readable(&self.sock, timeout_ms)
            .map_err(|e| Error::Events(format!("poll: {e}")))
    }

    /// Waits up to `timeout_ms` for events, then hands every queued trace
    /// event to `f` (zero-copy: the event borrows the receive buffer).
    pub fn poll(
        &self,
        timeout_ms: i32,
        mut f: impl FnMut(TraceEventRepr<'_>),
    ) -> Result<PollStats, Error> {
        let mut stats = PollStats::default();
        let mut timeout = timeout_ms;
        loop {
            let readable = clt_linux::poll_readable(&self.sock, timeout)
                .map_err(|e| Error::Events(format!("poll: {e}")))?;
            if !readable {
                return Ok(stats);
            }
            // Readable: this receive does not block. Drain without waiting.
            timeout = 0;
            let (msgs, _) = match self.sock.recv::<u16, Buffer>() {
                Ok(m) => m,
                Err(SocketError::Io(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    stats.overruns += 1;
                    continue;
                }
                Err(e) => return Err(Error::Events(format!("receive: {e}"))),
            };
            for msg in msgs {
                let Ok(msg) = msg else {
                    stats.malformed += 1;
                    break;
                };
                if *msg.nl_type() != self.family {
                    continue;
                }
                match msg.get_payload().map(|p| TraceEventRepr::parse(p.as_ref())) {
                    Some(Ok(ev)) => f(ev),
                    _ => stats.malformed += 1,
                }
            }
        }
    }
}
