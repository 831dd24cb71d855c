//! `clt-login-demo`: the seed paper's login use case, end to end on one
//! machine.
//!
//! An entry point sends login requests over one kept-open HTTPS connection
//! through a router to an authentication server, each request in an
//! OpenTelemetry span. The router gets congested; with CLT on, the login
//! span gets a network child span showing the router's queue depth. The
//! hosts are network namespaces configured only by `cltc` plans applied with
//! `clt-linux`; the agent and the collector are `clt-collector`'s. See
//! `docs/login-demo.md`.
//!
//! [`main`] parses the command line and calls [`run`]; the pieces are
//! [`topology`] (namespaces, links, plans), [`https`] (server and client),
//! [`load`] (the phases and the CLT socket API), [`stats`], [`report`] and
//! [`plot`].
#![forbid(unsafe_code)]

pub mod cost;
pub mod https;
pub mod load;
pub mod plot;
pub mod report;
pub mod stats;
pub mod topology;

use anyhow::{Context, Result, bail};
use clap::Parser;
use clt_collector::agent::{self, Sink, report::AgentStats};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use load::{EntryConfig, INTERRUPTED, Sample};
use topology::{Congestion, RouterKind, Topology};

/// `--router`: which router to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouterChoice {
    /// bmv2 when simple_switch_grpc, p4c-bm2-ss and ethtool are on PATH,
    /// else Linux
    Auto,
    /// The Linux kernel
    Linux,
    /// simple_switch_grpc (fails when a tool is missing)
    Bmv2,
}

/// The login use case end to end (needs root).
#[derive(Debug, Clone, Parser)]
#[command(name = "clt-login-demo", version)]
pub struct Args {
    /// Seconds per phase
    #[arg(long, default_value_t = 60)]
    pub phase_secs: u64,
    /// Short phases (5 s), for tests and a quick look
    #[arg(long)]
    pub short: bool,
    /// Login requests per second (at most: one connection, one request at a time)
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Where the CSV, plots, summary and span go
    #[arg(long, default_value = "out/login-demo")]
    pub out: PathBuf,
    /// The router: bmv2 (simple_switch_grpc) or the Linux kernel
    #[arg(long, value_enum, default_value_t = RouterChoice::Auto)]
    pub router: RouterChoice,
    /// The policy (default: the built-in examples/login/login.clt, or
    /// login-bmv2.clt for the bmv2 router)
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Token-bucket rate of the congested link, kbit/s
    #[arg(long, default_value_t = Congestion::default().rate_kbit)]
    pub tbf_rate_kbit: u32,
    /// Token-bucket queue limit, bytes (queueing delay ~ limit / rate)
    #[arg(long, default_value_t = Congestion::default().limit_bytes)]
    pub tbf_limit_bytes: u32,
    /// Bulk TCP flows that fill the shaped queue while congested (default:
    /// 12 with the linux router, 48 with bmv2)
    #[arg(long)]
    pub bulk_flows: Option<u32>,
    /// Nice value of the telemetry threads (the agent's and the
    /// collector's), so that they yield the CPU to the requests they
    /// measure; 0 runs them at the application's priority
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub telemetry_nice: i32,
    /// Skip the second run (off, on, off without congestion)
    #[arg(long)]
    pub no_overhead_run: bool,
    /// CLT-on phases of the second run, each between two CLT-off phases
    /// (1: off, on, off as in the paper; the test uses more, to compare
    /// CLT's effect with the noise of several pairs of CLT-off phases)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub overhead_cycles: u16,
    /// The agent on the server host: `full` (its default source: the
    /// nf_tables log when the kernel has it, else AF_PACKET capture and
    /// trace events); `capture` (AF_PACKET capture and the node's ioam6
    /// trace events, the fallback); `no-events` (capture only: reports lack
    /// the server's own hop); `off` (no agent: the CLT phases get no
    /// network spans). For measuring where CLT's cost goes
    #[arg(long, value_enum, default_value_t = AgentMode::Full)]
    pub agent: AgentMode,
    /// The agent's batch interval, ms (clt-agent's `--batch-ms`)
    #[arg(long, default_value_t = agent::DEFAULT_BATCH_INTERVAL.as_millis() as u64)]
    pub agent_batch_ms: u64,
}

/// `--agent`: what runs on the server host to report its traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentMode {
    /// The agent's default source
    Full,
    /// Capture and the node's own trace events
    Capture,
    /// Capture only
    NoEvents,
    /// No agent
    Off,
}

impl Args {
    /// The router `--router` asks for, here.
    pub fn router_kind(&self) -> Result<RouterKind> {
        let missing = topology::missing_bmv2_tool();
        Ok(match (self.router, missing) {
            (RouterChoice::Linux, _) => RouterKind::Linux,
            (RouterChoice::Bmv2, None) => RouterKind::Bmv2,
            (RouterChoice::Bmv2, Some(tool)) => {
                bail!("--router bmv2 needs `{tool}` on PATH")
            }
            (RouterChoice::Auto, None) => RouterKind::Bmv2,
            (RouterChoice::Auto, Some(tool)) => {
                eprintln!("router: linux (`{tool}` is not on PATH for the bmv2 router)");
                RouterKind::Linux
            }
        })
    }

    pub fn phase(&self) -> Duration {
        Duration::from_secs(if self.short {
            5
        } else {
            self.phase_secs.max(1)
        })
    }
}

/// Whether this process may build namespaces: effective uid 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|u| u == "0")
        })
        .unwrap_or(false)
}

pub fn main() -> Result<()> {
    let args = Args::parse();
    if !is_root() {
        eprintln!(
            "clt-login-demo needs root (network namespaces, netlink, IPV6_HOPOPTS): run it with sudo"
        );
        std::process::exit(2);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    watch_signals();
    match run(&args) {
        Err(e) if INTERRUPTED.load(Ordering::Relaxed) => {
            eprintln!("stopped: {e}; the namespaces are removed");
            std::process::exit(130);
        }
        r => r.map(|_| ()),
    }
}

/// Ctrl-C and SIGTERM set [`INTERRUPTED`] instead of killing the process,
/// so that the namespaces are removed on the way out.
fn watch_signals() {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = term.recv() => {},
                    }
                    if INTERRUPTED.swap(true, Ordering::Relaxed) {
                        eprintln!("\ninterrupted again: exiting now");
                        std::process::exit(130);
                    }
                    eprintln!("\ninterrupted: stopping and removing the namespaces");
                }
            });
        });
}

/// A host: a thread inside a network namespace, stopped through a channel.
struct Host<T> {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<T>>>,
}

impl<T: Send + 'static> Host<T> {
    /// Runs `f` on a new thread in `netns`; waits until it reports ready.
    fn start<F>(name: &str, netns: &str, f: F) -> Result<Host<T>>
    where
        F: FnOnce(mpsc::Sender<Result<()>>, tokio::sync::oneshot::Receiver<()>) -> Result<T>
            + Send
            + 'static,
    {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let ns = netns.to_string();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                clt_linux::netns::enter(&ns)?;
                f(ready_tx, stop_rx)
            })?;
        let mut host = Host {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(host),
            Ok(Err(e)) => Err(e.context(format!("starting {name}"))),
            Err(_) => match host.join() {
                Err(e) => Err(e.context(format!("starting {name}"))),
                Ok(_) => bail!("{name} did not start"),
            },
        }
    }

    fn join(&mut self) -> Result<T> {
        drop(self.stop.take());
        let t = self.thread.take().context("host already joined")?;
        match t.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl<T> Drop for Host<T> {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The collector's in-process handle, run in the `obs` namespace at
/// `nice`.
fn collector_host(
    cfg: clt_collector::Config,
    nice: i32,
    ready: mpsc::Sender<Result<()>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<clt_collector::JoinStats> {
    set_nice(nice)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("obs-rt")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let running = match clt_collector::server::start(cfg).await {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("collector: {e}")));
                bail!("collector did not start");
            }
        };
        let _ = ready.send(Ok(()));
        let _ = stop.await;
        let stats = running.core.join_stats();
        running.shutdown(Duration::from_secs(5)).await;
        Ok(stats)
    })
}

/// Sets the calling thread's nice value (threads it spawns inherit it).
fn set_nice(nice: i32) -> Result<()> {
    if nice == 0 {
        return Ok(());
    }
    // "/proc/thread-self" is "<pid>/task/<tid>".
    let link = std::fs::read_link("/proc/thread-self").context("reading /proc/thread-self")?;
    let tid = link
        .file_name()
        .and_then(|t| t.to_str())
        .context("no thread id in /proc/thread-self")?
        .to_string();
    topology::run(&["renice", "-n", &nice.to_string(), "-p", &tid])
}

/// What runs on the server host for the application: the HTTPS server and
/// the bulk sink.
fn server_host(
    identity: https::Identity,
    ready: mpsc::Sender<Result<()>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("server-rt")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = async {
            let l = tokio::net::TcpListener::bind("[::]:443").await?;
            let d = tokio::net::TcpListener::bind("[::]:5001").await?;
            let srv = tokio::spawn(https::serve(l, identity));
            let sink = tokio::spawn(https::discard(d));
            anyhow::Ok((srv, sink))
        }
        .await;
        let (srv, sink) = match started {
            Ok(v) => {
                let _ = ready.send(Ok(()));
                v
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                bail!("server host did not start");
            }
        };
        let _ = stop.await;
        srv.abort();
        sink.abort();
        Ok(())
    })
}

/// The IOAM agent on the server host (its own threads, at `nice`): it
/// returns its counters.
fn agent_host(
    netns: String,
    agent_endpoint: String,
    opts: agent::AgentOptions,
    nice: i32,
    ready: mpsc::Sender<Result<()>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<Arc<AgentStats>> {
    set_nice(nice)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("agent-rt")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stats = Arc::new(AgentStats::default());
        let (tx, report) = agent::report::start(agent_endpoint, 1 << 16, Arc::clone(&stats));
        let stop_capture = Arc::new(AtomicBool::new(false));
        let captures = match agent::spawn_agent(
            &["eth0".to_string()],
            Some(netns),
            "server".into(),
            Arc::clone(&stats),
            Sink::Report(tx),
            Arc::clone(&stop_capture),
            opts,
        ) {
            Ok(c) => {
                eprintln!(
                    "agent on the server: {}",
                    if stats.source_nflog.load(Ordering::Relaxed) == 1 {
                        "nf_tables log (the server's entry filled in by its kernel)"
                    } else {
                        "AF_PACKET capture"
                    }
                );
                let _ = ready.send(Ok(()));
                c
            }
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("agent: {e}")));
                bail!("the agent did not start");
            }
        };
        let _ = stop.await;
        stop_capture.store(true, Ordering::Relaxed);
        for t in captures {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // The capture side is gone: the report stream finishes and ends.
        let _ = tokio::time::timeout(Duration::from_secs(3), report).await;
        Ok(stats)
    })
}

/// Everything the demo produced.
#[derive(Debug)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    /// CPU time and wakeups of the demo's threads, per phase.
    pub costs: Vec<cost::PhaseCost>,
    pub join: clt_collector::JoinStats,
    pub agent_traces: u64,
    pub files: Vec<PathBuf>,
    pub router: RouterKind,
}

/// Builds the fabric, runs the experiment, tears it down, writes the outputs.
pub fn run(args: &Args) -> Result<Outcome> {
    let router = args.router_kind()?;
    let src = match (&args.policy, router) {
        (Some(p), _) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        (None, RouterKind::Linux) => topology::POLICY.to_string(),
        (None, RouterKind::Bmv2) => topology::POLICY_BMV2.to_string(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let store_path = args.out.join("collector.redb");
    let _ = std::fs::remove_file(&store_path);
    let identity = https::Identity::generate()?;

    match router {
        RouterKind::Linux => eprintln!(
            "building the fabric, linux router (cltc -> plans -> clt-linux apply in each namespace)"
        ),
        RouterKind::Bmv2 => eprintln!(
            "building the fabric, bmv2 router (cltc -> plans -> clt-linux apply on the hosts; cltc -> p4c-bm2-ss -> clt-controller install on simple_switch_grpc)"
        ),
    }
    let topo = Topology::build(&src, router, &args.out, &mut |s| eprint!("{s}"))?;
    let ioam_listen: SocketAddr = topo
        .collector
        .parse()
        .with_context(|| format!("the domain's collector `{}` is not ip:port", topo.collector))?;

    let collector_cfg = clt_collector::Config {
        otlp_grpc_listen: ([0, 0, 0, 0], 4317).into(),
        otlp_http_listen: ([127, 0, 0, 1], 4318).into(),
        ioam_listen,
        metrics_listen: ([127, 0, 0, 1], 9464).into(),
        downstream: None,
        store_path: store_path.clone(),
        store_max_spans: 2_000_000,
        ..clt_collector::Config::default()
    };
    let nice = args.telemetry_nice;
    let mut obs = Host::start("obs", &topo.obs.name, move |ready, stop| {
        collector_host(collector_cfg, nice, ready, stop)
    })?;
    let id = identity.clone();
    let mut server = Host::start("server", &topo.server.name, move |ready, stop| {
        server_host(id, ready, stop)
    })?;
    let (ns, ep) = (
        topo.server.name.clone(),
        format!("http://{}", topo.collector),
    );
    let agent_opts = agent::AgentOptions {
        source: match args.agent {
            AgentMode::Full => agent::Source::Auto,
            _ => agent::Source::Capture,
        },
        own_hop_window: match args.agent {
            AgentMode::NoEvents => Duration::ZERO,
            _ => agent::AgentOptions::default().own_hop_window,
        },
        batch_interval: Duration::from_millis(args.agent_batch_ms),
        ..agent::AgentOptions::default()
    };
    let mut agent = match args.agent {
        AgentMode::Off => None,
        _ => Some(Host::start(
            "agent",
            &topo.server.name,
            move |ready, stop| agent_host(ns, ep, agent_opts, nice, ready, stop),
        )?),
    };

    let mut runs = vec![load::congestion_run()];
    if !args.no_overhead_run {
        runs.push(load::overhead_run(usize::from(args.overhead_cycles)));
    }
    let entry_cfg = EntryConfig {
        server: SocketAddr::new(topo.server_addr.into(), 443),
        bulk_sink: SocketAddr::new(topo.server_addr.into(), 5001),
        otlp_endpoint: format!("http://{}:4317", topology::OBS_ENTRY_SIDE),
        identity,
        policy: topo.policy.clone(),
        router_netns: topo.router.name.clone(),
        congestion: Congestion {
            rate_kbit: args.tbf_rate_kbit,
            limit_bytes: args.tbf_limit_bytes,
            flows: args
                .bulk_flows
                .unwrap_or(Congestion::for_router(router).flows),
            ..Congestion::for_router(router)
        },
        rate: args.rate,
        phase: args.phase(),
        warmup: Duration::from_secs(if args.short { 1 } else { 3 }),
        runs: runs.clone(),
    };
    eprintln!(
        "running {} phase(s) of {} s at up to {} logins/s",
        runs.iter().map(|r| r.phases.len()).sum::<usize>(),
        entry_cfg.phase.as_secs(),
        args.rate
    );
    let entry_ns = topo.entry.name.clone();
    let samples = std::thread::Builder::new()
        .name("entry".into())
        .spawn(move || {
            clt_linux::netns::enter(&entry_ns)?;
            load::entry_host(entry_cfg)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the entry point panicked"))?;

    // Let the collector match the last spans (its linger), then stop the
    // agent (flushing its reports) and the collector (flushing its join).
    if samples.is_ok() {
        std::thread::sleep(Duration::from_millis(2_000));
    }
    let agent_stats = agent.as_mut().map(Host::join).transpose();
    let served = server.join();
    let join = obs.join();
    let node_names = topo.node_names.clone();
    drop(topo);
    let (samples, costs) = samples?;
    served?;
    let agent_stats = agent_stats?;
    let join = join?;

    let files = report::write_all(
        &args.out,
        router,
        &runs,
        &samples,
        &costs,
        &store_path,
        &join,
        &node_names,
    )?;
    Ok(Outcome {
        samples,
        costs,
        join,
        agent_traces: agent_stats.map_or(0, |s| s.traces.load(Ordering::Relaxed)),
        files,
        router,
    })
}
