//! The IOAM agent: captures IPv6 packets carrying a Hop-by-Hop IOAM trace and
//! prints them or reports them to the collector.

pub mod capture;
pub mod convert;
pub mod events;
pub mod nflog;
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
    deliver_all(vec![t], sink);
}

/// Hands a batch of traces to the sink at once: one wakeup of the
/// reporting task, one lock of stdout.
pub fn deliver_all(ts: Vec<CltTrace>, sink: &Sink) {
    if ts.is_empty() {
        return;
    }
    match sink {
        Sink::Report(tx) => tx.send_batch(ts),
        Sink::Print(o) => {
            let mut out = std::io::stdout().lock();
            for t in &ts {
                let _ = match o {
                    Output::Json => writeln!(out, "{}", convert::to_json(t)),
                    Output::Human => write!(out, "{}", convert::to_human(t)),
                };
            }
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
    let mut out = Vec::new();
    collect_packet(bytes, ts_ns, reporter, interface, stats, None, &mut out);
    deliver_all(out, sink);
}

/// Where the agent takes this node's IOAM packets from.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Source {
    /// The nf_tables log when the kernel has it, else the capture.
    #[default]
    Auto,
    /// An nf_tables rule logs each packet, this node's entry filled in
    /// ([`nflog`]); fails where nf_tables or its log is missing.
    Nflog,
    /// AF_PACKET capture ([`capture`]), and this node's entry joined in
    /// from its ioam6 trace events ([`events`]) unless the own-hop window
    /// is zero.
    Capture,
}

/// The agent's options beyond where to capture and where traces go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentOptions {
    /// Where the packets come from.
    pub source: Source,
    /// How long a captured trace waits for this node's trace event (see
    /// [`sink`]); zero: do not listen, report traces as captured (without
    /// this node's entry).
    pub own_hop_window: Duration,
    /// At most this many traces (and as many events) wait.
    pub own_hop_max_waiting: usize,
    /// How often the agent's threads wake up to take what arrived: the
    /// capture ring hands a block of packets to user space at the latest
    /// after this long, and the event thread, woken by an event, waits
    /// this long for more before it drains them all. Traffic then costs
    /// at most one wakeup per interval and thread, whatever its rate, and
    /// a trace reaches the collector at most about this plus 100 ms late
    /// (the capture thread's poll timeout). Zero:
    /// every event as it comes (and 1 ms capture blocks).
    pub batch_interval: Duration,
}

/// The default [`AgentOptions::batch_interval`].
pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_millis(50);

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            source: Source::Auto,
            own_hop_window: Duration::from_millis(250),
            own_hop_max_waiting: 32_768,
            batch_interval: DEFAULT_BATCH_INTERVAL,
        }
    }
}

impl AgentOptions {
    /// The capture ring for these options: blocks retire after the batch
    /// interval.
    pub fn ring(&self) -> RingConfig {
        let ms = u32::try_from(self.batch_interval.as_millis()).unwrap_or(u32::MAX);
        RingConfig {
            block_timeout_ms: ms.max(1),
            ..RingConfig::default()
        }
    }
}

/// The shared state of the capturing threads and the event thread when the
/// node's own hop is joined in.
#[derive(Debug)]
pub struct OwnHop {
    join: Mutex<SinkJoin>,
    /// Traces the event thread completed or expired, for the next capture
    /// batch: the capture threads alone wake the reporting task.
    outbox: Mutex<Vec<CltTrace>>,
    epoch: Instant,
}

impl OwnHop {
    fn new(opts: &AgentOptions) -> OwnHop {
        let window = u64::try_from(opts.own_hop_window.as_nanos()).unwrap_or(u64::MAX);
        OwnHop {
            join: Mutex::new(SinkJoin::new(window, opts.own_hop_max_waiting)),
            outbox: Mutex::new(Vec::new()),
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

    /// Moves the event thread's traces to `to`.
    fn take_outbox(&self, to: &mut Vec<CltTrace>) {
        to.append(&mut self.outbox.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn post(&self, from: &mut Vec<CltTrace>) {
        if !from.is_empty() {
            (self.outbox.lock().unwrap_or_else(|p| p.into_inner())).append(from);
        }
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

/// Parses and counts one captured packet, joining the node's own hop in
/// when `own` is given, and adds the traces ready to go to `out`.
fn collect_packet(
    bytes: &[u8],
    ts_ns: u64,
    reporter: &str,
    interface: &str,
    stats: &AgentStats,
    own: Option<&OwnHop>,
    out: &mut Vec<CltTrace>,
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
                    join.trace(o.now(), t, key, &mut |t| out.push(*t));
                    publish(stats, &join.stats());
                }
                _ => out.push(*t),
            }
        }
    }
}

/// Captures on `interface` (in `netns` if given) until `stop` is set,
/// with the ring `ring`. Runs on the calling thread (a dedicated one); the
/// traces of each filled block go to the sink as one batch.
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
    ring: RingConfig,
) -> Result<(), crate::Error> {
    let opened = (|| {
        if let Some(ns) = netns {
            capture::enter_netns(ns)?;
        }
        Capture::open(interface, ring)
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
    let mut batch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        cap.poll(100, |pkt, ts| {
            collect_packet(pkt, ts, reporter, interface, stats, own, &mut batch)
        })?;
        if let Some(o) = own {
            // Completed while this block was read: older packets, some of
            // them. The collector keeps the order it receives (a hop's
            // `last` value), so the batch goes in capture order.
            o.take_outbox(&mut batch);
            batch.sort_by_key(|t| t.capture_time_unix_nano);
        }
        deliver_all(std::mem::take(&mut batch), sink);
        if let Ok(k) = cap.kernel_stats() {
            stats.kernel_drops.fetch_add(k.drops, Ordering::Relaxed);
        }
    }
    if let Some(o) = own {
        {
            let mut g = o.lock();
            g.flush(&mut |t| batch.push(*t));
            publish(stats, &g.stats());
        }
        o.take_outbox(&mut batch);
        batch.sort_by_key(|t| t.capture_time_unix_nano);
        deliver_all(batch, sink);
    }
    Ok(())
}

/// How long the event thread waits for an event before it looks at the
/// waiting traces' windows and at `stop` again.
const EVENT_IDLE_POLL_MS: i32 = 100;

/// Sleeps `d`, in slices short enough to notice `stop`.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= end || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

/// Listens to the trace events of `netns` (or the current namespace) and
/// joins them with the captured traces until `stop` is set; the traces it
/// completes go out with the next capture batch (at most a poll timeout
/// later). Reports whether the socket opened through `ready`. Woken by an
/// event, it waits
/// `batch` for more, then takes them all: one wakeup per `batch` under
/// load, none while idle but a look at the waiting traces every
/// [`EVENT_IDLE_POLL_MS`].
fn event_loop(
    netns: Option<&str>,
    own: &OwnHop,
    stats: &AgentStats,
    sink: &Sink,
    stop: &AtomicBool,
    batch: Duration,
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
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let polled = sock.wait(EVENT_IDLE_POLL_MS).and_then(|readable| {
            if readable && !batch.is_zero() {
                sleep_unless_stopped(batch, stop);
            }
            sock.poll(0, |ev| {
                events.push(Event::from_kernel(ev.namespace, ev.trace_type, ev.data));
            })
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
        {
            let mut g = own.lock();
            let now = own.now();
            for e in events.drain(..) {
                g.event(now, e, &mut |t| out.push(*t));
            }
            g.expire(now, &mut |t| out.push(*t));
            publish(stats, &g.stats());
            // Under the join's lock: a capture thread that matched a later
            // packet's event finds these in the outbox.
            own.post(&mut out);
        }
    }
    {
        let mut g = own.lock();
        g.flush(&mut |t| out.push(*t));
        publish(stats, &g.stats());
    }
    own.take_outbox(&mut out);
    deliver_all(out, sink);
}

/// Spawns the thread `name` running `f`, which says through the sender it
/// is given whether its sockets opened, and waits for that word: the
/// thread, and what it said (when it is an error, the thread is ending).
fn spawn_opened<E: Send + 'static>(
    name: String,
    f: impl FnOnce(std::sync::mpsc::Sender<Result<(), E>>) + Send + 'static,
) -> Result<(std::thread::JoinHandle<()>, Result<(), E>), crate::Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || f(tx))
        .map_err(|e| crate::Error::Io(format!("spawn thread {name}: {e}")))?;
    let opened = rx.recv().map_err(|_| {
        crate::Error::Io(format!("thread {name} ended before it opened its sockets"))
    })?;
    Ok((handle, opened))
}

/// Starts the agent. With [`Source::Auto`] or [`Source::Nflog`], one
/// thread reading the nf_tables log of every interface ([`nflog`]); when
/// that fails, [`Source::Auto`] says why in a log line and falls back to
/// [`Source::Capture`]: a thread listening to the node's trace events
/// (unless `opts` says not to, or they are unavailable: then it says so in
/// a log line and `own_hop_unavailable`, and reports traces as captured)
/// and one capture thread per interface. Returns once every socket is open
/// (or the first error).
pub fn spawn_agent(
    interfaces: &[String],
    netns: Option<String>,
    reporter: String,
    stats: Arc<AgentStats>,
    sink: Sink,
    stop: Arc<AtomicBool>,
    opts: AgentOptions,
) -> Result<Vec<std::thread::JoinHandle<()>>, crate::Error> {
    if opts.source != Source::Capture {
        let (ifs, ns, rep, st, sk, sp) = (
            interfaces.to_vec(),
            netns.clone(),
            reporter.clone(),
            Arc::clone(&stats),
            sink.clone(),
            Arc::clone(&stop),
        );
        let (handle, opened) = spawn_opened("clt-agent-log".into(), move |ready| {
            nflog::log_loop(
                &ifs,
                ns.as_deref(),
                &rep,
                &st,
                &sk,
                &sp,
                opts.batch_interval,
                ready,
            )
        })?;
        match opened {
            Ok(()) => {
                stats.source_nflog.store(1, Ordering::Relaxed);
                stats.own_hop_unavailable.store(0, Ordering::Relaxed);
                return Ok(vec![handle]);
            }
            Err(e) if opts.source == Source::Auto => {
                tracing::warn!(error = %e, "nf_tables log unavailable: capturing with AF_PACKET instead");
                let _ = handle.join();
            }
            Err(e) => return Err(e),
        }
    }
    spawn_capture_agent(interfaces, netns, reporter, stats, sink, stop, opts)
}

/// [`Source::Capture`]: the event thread (unless the own-hop window is
/// zero) and one capture thread per interface.
fn spawn_capture_agent(
    interfaces: &[String],
    netns: Option<String>,
    reporter: String,
    stats: Arc<AgentStats>,
    sink: Sink,
    stop: Arc<AtomicBool>,
    opts: AgentOptions,
) -> Result<Vec<std::thread::JoinHandle<()>>, crate::Error> {
    stats.source_nflog.store(0, Ordering::Relaxed);
    let mut threads = Vec::new();
    let mut own = None;
    if !opts.own_hop_window.is_zero() && opts.own_hop_window < 2 * opts.batch_interval {
        tracing::warn!(
            window_ms = opts.own_hop_window.as_millis() as u64,
            batch_ms = opts.batch_interval.as_millis() as u64,
            "the own-hop window is shorter than two batch intervals: traces may go without this node's entry"
        );
    }
    if opts.own_hop_window.is_zero() {
        tracing::info!("not listening to ioam6 trace events: reports lack this node's own entry");
    } else {
        let state = Arc::new(OwnHop::new(&opts));
        let (netns, ev_stats, sink, stop, st) = (
            netns.clone(),
            Arc::clone(&stats),
            sink.clone(),
            Arc::clone(&stop),
            Arc::clone(&state),
        );
        let (handle, opened) = spawn_opened("clt-agent-ev".into(), move |ready| {
            event_loop(
                netns.as_deref(),
                &st,
                &ev_stats,
                &sink,
                &stop,
                opts.batch_interval,
                ready,
            )
        })?;
        match opened {
            Ok(()) => {
                tracing::info!(
                    window_ms = opts.own_hop_window.as_millis() as u64,
                    "listening to ioam6 trace events: reports include this node's own entry"
                );
                stats.own_hop_unavailable.store(0, Ordering::Relaxed);
                threads.push(handle);
                own = Some(state);
            }
            Err(e) => {
                tracing::warn!(error = %e, "ioam6 trace events unavailable: reporting traces as captured, without this node's own entry");
                stats.own_hop_unavailable.store(1, Ordering::Relaxed);
                let _ = handle.join();
            }
        }
    }
    for ifname in interfaces {
        let (ifname, netns, reporter, stats, sink, stop, own) = (
            ifname.clone(),
            netns.clone(),
            reporter.clone(),
            Arc::clone(&stats),
            sink.clone(),
            Arc::clone(&stop),
            own.clone(),
        );
        let (handle, opened) = spawn_opened(format!("clt-agent-{ifname}"), move |ready| {
            if let Err(e) = capture_loop(
                &ifname,
                netns.as_deref(),
                &reporter,
                &stats,
                &sink,
                &stop,
                Some(ready),
                own.as_deref(),
                opts.ring(),
            ) {
                tracing::error!(interface = %ifname, error = %e, "capture stopped");
            }
        })?;
        threads.push(handle);
        opened.map_err(crate::Error::Capture)?;
    }
    Ok(threads)
}
