//! The agent's default source: the kernel's log of this node's IOAM packets.
//!
//! An nf_tables rule per interface (table `ip6 clt_agent_<group>_<ifindex>`,
//! hook `input`) logs every Hop-by-Hop packet delivered locally to an
//! nfnetlink_log group, and the agent reads that group. Linux fills a
//! node's IOAM entry while it parses the Hop-by-Hop header (`ip6_rcv_core`),
//! before any netfilter hook, so each logged packet already carries this
//! node's own entry: no trace events, no join. The kernel batches the log
//! (a queue threshold and a flush timeout of one batch interval), so the
//! agent wakes once per batch under load and never while idle.
//!
//! Per packet this is one rule match and one copy into the batch, instead
//! of a copy into the AF_PACKET ring, a copy of the IPv6 header (the
//! capture shares the buffer the kernel then writes its entry into) and a
//! generic netlink message of its own ([`super::capture`] and
//! [`super::events`], the fallback when nf_tables or its log are missing).
//! `docs/collector.md` has the measurements.
//!
//! The tables are owned by the agent's netlink socket: the kernel deletes
//! them when the agent exits, however it exits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clt_linux::nl::nflog::{NflogConfig, NflogSocket};
use clt_linux::nl::nft::{LogRule, LogRuleSpec};

use super::report::AgentStats;
use super::{Sink, collect_packet, deliver_all};
use crate::Error;

/// The first nfnetlink_log group the agent tries ("CL"); when another
/// listener holds it, the next ones, up to [`GROUPS_TRIED`] in all.
pub const FIRST_GROUP: u16 = 0x434c;
/// How many groups the agent tries.
pub const GROUPS_TRIED: u16 = 16;

/// Bytes of each packet the kernel copies: the IPv6 header, a Hop-by-Hop
/// header of up to 2 KiB (the largest a header length byte allows) and the
/// transport ports.
pub const SNAPLEN: u32 = 40 + 2048 + 8;

/// The open log: the rules and the socket they log to.
pub struct NflogSource {
    /// The rules' tables go when they drop; declared before `sock`, so
    /// they go first and no packet is logged to a closed socket.
    _rules: Vec<LogRule>,
    sock: NflogSocket,
    group: u16,
    /// Interface names by index, for the reports.
    names: HashMap<u32, String>,
}

impl std::fmt::Debug for NflogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NflogSource")
            .field("group", &self.group)
            .field("interfaces", &self.names)
            .finish()
    }
}

fn log_err(e: clt_linux::Error) -> Error {
    Error::Capture(format!("nf_tables log: {e}"))
}

impl NflogSource {
    /// Binds the first free group from [`FIRST_GROUP`] and logs the
    /// Hop-by-Hop packets `interfaces` deliver to it, in the calling
    /// thread's network namespace. The kernel flushes a batch after
    /// `batch` (at least 10 ms, its granularity) or 64 packets; zero:
    /// every packet at once.
    pub fn open(interfaces: &[String], batch: Duration) -> Result<NflogSource, Error> {
        let names: HashMap<u32, String> = interfaces
            .iter()
            .map(|n| Ok((super::capture::ifindex(n)?, n.clone())))
            .collect::<Result<_, Error>>()?;
        let qthreshold: u16 = if batch.is_zero() { 1 } else { 64 };
        let cfg = NflogConfig {
            copy_range: SNAPLEN,
            flush_timeout: batch.max(Duration::from_millis(10)),
            qthreshold: u32::from(qthreshold),
            ..NflogConfig::default()
        };
        let (sock, group) = Self::bind_free_group(&cfg)?;
        // The socket listens before any rule logs, so no packet is logged
        // to nobody.
        let mut rules = Vec::new();
        for &index in names.keys() {
            rules.push(
                LogRule::install(&LogRuleSpec {
                    table: format!("clt_agent_{group}_{index}"),
                    ifindex: index,
                    group,
                    snaplen: SNAPLEN,
                    qthreshold,
                })
                .map_err(log_err)?,
            );
        }
        Ok(NflogSource {
            _rules: rules,
            sock,
            group,
            names,
        })
    }

    fn bind_free_group(cfg: &NflogConfig) -> Result<(NflogSocket, u16), Error> {
        for group in (FIRST_GROUP..).take(usize::from(GROUPS_TRIED)) {
            match NflogSocket::open(group, cfg) {
                Ok(s) => return Ok((s, group)),
                Err(clt_linux::Error::Kernel { error, .. })
                    if error.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(log_err(e)),
            }
        }
        Err(Error::Capture(format!(
            "nf_tables log: groups {FIRST_GROUP} to {} are all taken",
            FIRST_GROUP + (GROUPS_TRIED - 1)
        )))
    }

    /// The nfnetlink_log group the packets go to.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Waits up to `timeout_ms` for a batch, then parses every packet that
    /// came and hands their traces to `sink` as one batch. Returns the
    /// packets read.
    pub fn poll(
        &mut self,
        timeout_ms: i32,
        reporter: &str,
        stats: &AgentStats,
        sink: &Sink,
    ) -> Result<u64, Error> {
        if !self.sock.wait(timeout_ms).map_err(log_err)? {
            return Ok(0);
        }
        let mut batch = Vec::new();
        let names = &self.names;
        let fallback = names.values().next().map_or("", String::as_str);
        let drained = self
            .sock
            .drain(|p| {
                let ifname = p
                    .indev
                    .and_then(|i| names.get(&i))
                    .map_or(fallback, String::as_str);
                let ts = p.timestamp_ns.unwrap_or_else(crate::now_ns);
                collect_packet(p.payload, ts, reporter, ifname, stats, None, &mut batch);
            })
            .map_err(log_err)?;
        stats
            .kernel_drops
            .fetch_add(drained.overruns, Ordering::Relaxed);
        stats
            .malformed
            .fetch_add(drained.malformed, Ordering::Relaxed);
        deliver_all(batch, sink);
        Ok(drained.packets)
    }
}

/// Reads the log until `stop` is set; reports whether it opened through
/// `ready` (the error, on the calling side, decides the fallback).
#[allow(clippy::too_many_arguments)]
pub(super) fn log_loop(
    interfaces: &[String],
    netns: Option<&str>,
    reporter: &str,
    stats: &AgentStats,
    sink: &Sink,
    stop: &AtomicBool,
    batch: Duration,
    ready: std::sync::mpsc::Sender<Result<(), Error>>,
) {
    let opened = (|| {
        if let Some(ns) = netns {
            super::capture::enter_netns(ns)?;
        }
        NflogSource::open(interfaces, batch)
    })();
    let mut src = match opened {
        Ok(s) => {
            tracing::info!(group = s.group(), interfaces = ?interfaces, "logging ioam packets through nf_tables: reports include this node's own entry");
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = src.poll(LOG_POLL_MS, reporter, stats, sink) {
            tracing::error!(error = %e, "the nf_tables log stopped; no more traces from this agent");
            break;
        }
    }
}

/// How long the log thread waits for a batch before it looks at `stop`.
const LOG_POLL_MS: i32 = 100;
