//! The IOAM agent: captures IPv6 packets carrying a Hop-by-Hop IOAM trace and
//! prints them or reports them to the collector.

pub mod capture;
pub mod convert;
pub mod report;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use capture::{Capture, RingConfig};
use convert::{Parsed, parse_packet};
use report::{AgentStats, ReportSender};

/// Where traces go.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub enum Sink {
    Print(Output),
    Report(ReportSender),
}

/// Handles one captured packet: parses, counts, hands the trace on.
pub fn handle_packet(
    bytes: &[u8],
    ts_ns: u64,
    reporter: &str,
    interface: &str,
    stats: &AgentStats,
    sink: &Sink,
) {
    stats.packets.fetch_add(1, Ordering::Relaxed);
    match parse_packet(bytes, ts_ns, reporter, interface) {
        Err(e) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "malformed packet skipped");
        }
        Ok(Parsed::NoTrace) => {
            stats.without_trace.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Parsed::Trace(t)) => {
            stats.traces.fetch_add(1, Ordering::Relaxed);
            match sink {
                Sink::Report(tx) => tx.send(*t),
                Sink::Print(Output::Json) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", convert::to_json(&t));
                }
                Sink::Print(Output::Human) => {
                    let mut out = std::io::stdout().lock();
                    let _ = write!(out, "{}", convert::to_human(&t));
                }
            }
        }
    }
}

/// Captures on `interface` (in `netns` if given) until `stop` is set.
/// Runs on the calling thread (a dedicated one).
pub fn capture_loop(
    interface: &str,
    netns: Option<&str>,
    reporter: &str,
    stats: &AgentStats,
    sink: &Sink,
    stop: &AtomicBool,
    ready: Option<std::sync::mpsc::Sender<Result<(), String>>>,
) -> Result<(), crate::Error> {
    let opened = (|| {
        if let Some(ns) = netns {
            capture::enter_netns(ns)?;
        }
        Capture::open(interface, RingConfig::default())
    })();
    let mut cap = match opened {
        Ok(c) => {
            if let Some(r) = &ready {
                let _ = r.send(Ok(()));
            }
            c
        }
        Err(e) => {
            if let Some(r) = &ready {
                let _ = r.send(Err(e.to_string()));
            }
            return Err(e);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        cap.poll(100, |pkt, ts| {
            handle_packet(pkt, ts, reporter, interface, stats, sink)
        })?;
        if let Ok(k) = cap.kernel_stats() {
            stats.kernel_drops.fetch_add(k.drops, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Starts one capture thread per interface; returns once every socket is
/// open (or the first error).
pub fn spawn_captures(
    interfaces: &[String],
    netns: Option<String>,
    reporter: String,
    stats: Arc<AgentStats>,
    sink: Sink,
    stop: Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<()>>, crate::Error> {
    let mut threads = Vec::new();
    for ifname in interfaces {
        let (rtx, rrx) = std::sync::mpsc::channel();
        let (ifname, netns, reporter, stats, sink, stop) = (
            ifname.clone(),
            netns.clone(),
            reporter.clone(),
            Arc::clone(&stats),
            sink.clone(),
            Arc::clone(&stop),
        );
        threads.push(std::thread::spawn(move || {
            if let Err(e) = capture_loop(
                &ifname,
                netns.as_deref(),
                &reporter,
                &stats,
                &sink,
                &stop,
                Some(rtx),
            ) {
                tracing::error!(interface = %ifname, error = %e, "capture stopped");
            }
        }));
        match rrx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(crate::Error::Capture(e)),
            Err(_) => return Err(crate::Error::Capture("capture thread died".into())),
        }
    }
    Ok(threads)
}
