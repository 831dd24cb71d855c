//! The IOAM agent: captures IPv6 packets carrying a Hop-by-Hop IOAM trace and
//! prints them or reports them to the collector.

pub mod capture;
pub mod convert;
pub mod events;
pub mod report;
pub mod sink;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capture::{Capture, RingConfig};
use clt_proto::clt_api::CltTrace;
use convert::Parsed;
use events::EventSocket;
use report::{AgentStats, ReportSender};
use sink::{Event, Key, SinkJoin};

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

/// Hands one trace to the sink.
pub fn deliver(t: CltTrace, sink: &Sink) {
    match sink {
        Sink::Report(tx) => tx.send(t),
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

/// Handles one captured packet: parses, counts, hands the trace on.
pub fn handle_packet(
    bytes: &[u8],
    ts_ns: u64,
    reporter: &str,
    interface: &str,
    stats: &AgentStats,
    sink: &Sink,
) {
    handle_packet_joined(bytes, ts_ns, reporter, interface, stats, sink, None);
}

/// The agent's options beyond where to capture and where traces go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentOptions {
    /// How long a captured trace waits for this node's trace event (see
    /// [`sink`]); zero: do not listen, report traces as captured (without
    /// this node's entry).
    pub own_hop_window: Duration,
    /// At most this many traces (and as many events) wait.
    pub own_hop_max_waiting: usize,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            own_hop_window: Duration::from_millis(250),
            own_hop_max_waiting: 32_768,
        }
    }
}

/// The shared state of the capturing threads and the event thread when the
/// node's own hop is joined in.
#[derive(Debug)]
pub struct OwnHop {
    join: Mutex<SinkJoin>,
    epoch: Instant,
}

impl OwnHop {
    fn new(opts: &AgentOptions) -> OwnHop {
        let window = u64::try_from(opts.own_hop_window.as_nanos()).unwrap_or(u64::MAX);
        OwnHop {
            join: Mutex::new(SinkJoin::new(window, opts.own_hop_max_waiting)),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkJoin> {
        // A panic while holding the lock leaves consistent queues.
        self.join.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn publish(stats: &AgentStats, s: &sink::SinkStats) {
    stats.own_hop_joined.store(s.joined, Ordering::Relaxed);
    stats.own_hop_no_room.store(s.no_room, Ordering::Relaxed);
    stats
        .own_hop_unmatched
        .store(s.unmatched, Ordering::Relaxed);
    stats.own_hop_events.store(s.events, Ordering::Relaxed);
    stats
        .own_hop_events_unmatched
        .store(s.events_unmatched, Ordering::Relaxed);
}

/// [`handle_packet`], joining the node's own hop in when `own` is given.
pub fn handle_packet_joined(
    bytes: &[u8],
    ts_ns: u64,
    reporter: &str,
    interface: &str,
    stats: &AgentStats,
    sink: &Sink,
    own: Option<&OwnHop>,
) {
    stats.packets.fetch_add(1, Ordering::Relaxed);
    let mut key = own.map(|_| Key::default());
    match convert::parse_packet_keyed(bytes, ts_ns, reporter, interface, key.as_mut()) {
        Err(e) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "malformed packet skipped");
        }
        Ok(Parsed::NoTrace) => {
            stats.without_trace.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Parsed::Trace(t)) => {
            stats.traces.fetch_add(1, Ordering::Relaxed);
            match (own, key) {
                (Some(o), Some(key)) => {
                    let mut join = o.lock();
                    join.trace(o.now(), t, key, &mut |t| deliver(*t, sink));
                    publish(stats, &join.stats());
                }
                _ => deliver(*t, sink),
            }
        }
    }
}

/// Captures on `interface` (in `netns` if given) until `stop` is set.
/// Runs on the calling thread (a dedicated one).
#[allow(clippy::too_many_arguments)]
pub fn capture_loop(
    interface: &str,
    netns: Option<&str>,
    reporter: &str,
    stats: &AgentStats,
    sink: &Sink,
    stop: &AtomicBool,
    ready: Option<std::sync::mpsc::Sender<Result<(), String>>>,
    own: Option<&OwnHop>,
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
            handle_packet_joined(pkt, ts, reporter, interface, stats, sink, own)
        })?;
        if let Ok(k) = cap.kernel_stats() {
            stats.kernel_drops.fetch_add(k.drops, Ordering::Relaxed);
        }
    }
    if let Some(o) = own {
        let mut g = o.lock();
        g.flush(&mut |t| deliver(*t, sink));
        publish(stats, &g.stats());
    }
    Ok(())
}

/// Listens to the trace events of `netns` (or the current namespace) and
/// joins them with the captured traces until `stop` is set. Reports
/// whether the socket opened through `ready`.
fn event_loop(
    netns: Option<&str>,
    own: &OwnHop,
    stats: &AgentStats,
    sink: &Sink,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let opened = (|| {
        if let Some(ns) = netns {
            capture::enter_netns(ns)?;
        }
        EventSocket::open()
    })();
    let sock = match opened {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut events = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let polled = sock.poll(20, |ev| {
            events.push(Event::from_kernel(ev.namespace, ev.trace_type, ev.data));
        });
        match polled {
            Ok(p) => {
                stats
                    .own_hop_events_lost
                    .fetch_add(p.overruns, Ordering::Relaxed);
                stats
                    .own_hop_events_malformed
                    .fetch_add(p.malformed, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "ioam6 trace events stopped; reports lack this node's own entry from now on");
                stats.own_hop_unavailable.store(1, Ordering::Relaxed);
                break;
            }
        }
        let mut g = own.lock();
        let now = own.now();
        for e in events.drain(..) {
            g.event(now, e, &mut |t| deliver(*t, sink));
        }
        g.expire(now, &mut |t| deliver(*t, sink));
        publish(stats, &g.stats());
    }
    let mut g = own.lock();
    g.flush(&mut |t| deliver(*t, sink));
    publish(stats, &g.stats());
}

/// Starts one capture thread per interface, with the default
/// [`AgentOptions`]; returns once every socket is open (or the first
/// error).
pub fn spawn_captures(
    interfaces: &[String],
    netns: Option<String>,
    reporter: String,
    stats: Arc<AgentStats>,
    sink: Sink,
    stop: Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<()>>, crate::Error> {
    spawn_agent(
        interfaces,
        netns,
        reporter,
        stats,
        sink,
        stop,
        AgentOptions::default(),
    )
}

/// Starts the agent: a thread listening to the node's trace events (unless
/// `opts` says not to, or they are unavailable: then it says so in a log
/// line and `own_hop_unavailable`, and reports traces as captured) and one
/// capture thread per interface. Returns once every socket is open (or the
/// first capture error).
pub fn spawn_agent(
    interfaces: &[String],
    netns: Option<String>,
    reporter: String,
    stats: Arc<AgentStats>,
    sink: Sink,
    stop: Arc<AtomicBool>,
    opts: AgentOptions,
) -> Result<Vec<std::thread::JoinHandle<()>>, crate::Error> {
    let mut threads = Vec::new();
    let mut own = None;
    if opts.own_hop_window.is_zero() {
        tracing::info!("not listening to ioam6 trace events: reports lack this node's own entry");
    } else {
        let state = Arc::new(OwnHop::new(&opts));
        let (rtx, rrx) = std::sync::mpsc::channel();
        let (netns, ev_stats, sink, stop, st) = (
            netns.clone(),
            Arc::clone(&stats),
            sink.clone(),
            Arc::clone(&stop),
            Arc::clone(&state),
        );
        let handle = std::thread::spawn(move || {
            event_loop(netns.as_deref(), &st, &ev_stats, &sink, &stop, rtx)
        });
        match rrx.recv() {
            Ok(Ok(())) => {
                tracing::info!(
                    window_ms = opts.own_hop_window.as_millis() as u64,
                    "listening to ioam6 trace events: reports include this node's own entry"
                );
                stats.own_hop_unavailable.store(0, Ordering::Relaxed);
                threads.push(handle);
                own = Some(state);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "ioam6 trace events unavailable: reporting traces as captured, without this node's own entry");
                stats.own_hop_unavailable.store(1, Ordering::Relaxed);
                let _ = handle.join();
            }
            Err(_) => return Err(crate::Error::Events("event thread died".into())),
        }
    }
    for ifname in interfaces {
        let (rtx, rrx) = std::sync::mpsc::channel();
        let (ifname, netns, reporter, stats, sink, stop, own) = (
            ifname.clone(),
            netns.clone(),
            reporter.clone(),
            Arc::clone(&stats),
            sink.clone(),
            Arc::clone(&stop),
            own.clone(),
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
                own.as_deref(),
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
