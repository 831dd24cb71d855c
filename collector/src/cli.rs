//! Command lines of `clt-collector` and `clt-agent` (their `main.rs` only
//! call [`collector_main`] and [`agent_main`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::agent::report::AgentStats;
use crate::agent::{Output, Sink};
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "clt-collector",
    about = "joins ioam traces with otlp spans and exports enriched spans"
)]
pub struct CollectorArgs {
    #[command(subcommand)]
    pub command: Option<CollectorCommand>,
    #[command(flatten)]
    pub opts: CollectorOpts,
}

#[derive(Debug, clap::Args)]
pub struct CollectorOpts {
    /// TOML configuration file (flags override it)
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub otlp_grpc_listen: Option<SocketAddr>,
    #[arg(long)]
    pub otlp_http_listen: Option<SocketAddr>,
    #[arg(long)]
    pub ioam_listen: Option<SocketAddr>,
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// OTLP/gRPC endpoint to export to; without one, the embedded store
    #[arg(long)]
    pub downstream: Option<String>,
    /// The embedded store's file
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    #[arg(long)]
    pub max_delay_ms: Option<u64>,
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CollectorCommand {
    /// Runs the collector (the default)
    Run,
    /// Prints the traces kept in the embedded store
    Traces {
        /// Only this trace (32 hex digits)
        #[arg(long)]
        trace: Option<String>,
    },
}

fn config(o: &CollectorOpts) -> anyhow::Result<Config> {
    let mut c = match &o.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    macro_rules! set {
        ($($f:ident => $k:ident),*) => { $( if let Some(v) = &o.$f { c.$k = v.clone().into(); } )* };
    }
    set!(otlp_grpc_listen => otlp_grpc_listen, otlp_http_listen => otlp_http_listen,
         ioam_listen => ioam_listen, metrics_listen => metrics_listen,
         store => store_path, max_delay_ms => max_delay_ms);
    if o.downstream.is_some() {
        c.downstream.clone_from(&o.downstream);
    }
    if o.tls_cert.is_some() {
        c.tls_cert.clone_from(&o.tls_cert);
    }
    if o.tls_key.is_some() {
        c.tls_key.clone_from(&o.tls_key);
    }
    Ok(c)
}

/// `GET /traces` from a running collector's metrics listener (plain
/// HTTP/1.0 over TCP: the body is text).
fn ask_running_collector(addr: SocketAddr, trace: Option<u128>) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let q = trace.map_or(String::new(), |t| format!("?trace={t:032x}"));
    write!(s, "GET /traces{q} HTTP/1.0\r\nHost: clt\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "collector: {}",
        body.trim()
    );
    Ok(body.to_owned())
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn collector_main() -> anyhow::Result<()> {
    let args = CollectorArgs::parse();
    let cfg = config(&args.opts)?;
    init_logs();
    match args.command {
        Some(CollectorCommand::Traces { trace }) => {
            let id = trace
                .map(|t| u128::from_str_radix(&t, 16).context("trace id is 32 hex digits"))
                .transpose()?;
            let text = match crate::store::Store::open(&cfg.store_path, cfg.store_max_spans) {
                Ok(store) => {
                    let mut out = Vec::new();
                    crate::store::print_traces(&store.spans(id)?, &mut out)?;
                    String::from_utf8_lossy(&out).into_owned()
                }
                // A running collector holds the file: ask it over HTTP.
                Err(open_err) => {
                    ask_running_collector(cfg.metrics_listen, id).with_context(|| {
                        format!(
                            "open store {}: {open_err}; and no collector answered on {}",
                            cfg.store_path.display(),
                            cfg.metrics_listen
                        )
                    })?
                }
            };
            use std::io::Write;
            match std::io::stdout().lock().write_all(text.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.map_err(Into::into),
            }
        }
        None | Some(CollectorCommand::Run) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let running = crate::server::start(cfg).await?;
                tokio::signal::ctrl_c().await?;
                tracing::info!("shutting down");
                running.shutdown(Duration::from_secs(5)).await;
                Ok(())
            })
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "clt-agent",
    about = "captures ipv6 ioam traces and reports them to the clt collector"
)]
pub struct AgentArgs {
    /// Interface to capture on (repeat for several)
    #[arg(long, short, required = true)]
    pub interface: Vec<String>,
    /// Network namespace of the interfaces (a name from `ip netns` or a path)
    #[arg(long)]
    pub netns: Option<String>,
    /// Print traces instead of reporting them
    #[arg(long, short, value_enum)]
    pub output: Option<Output>,
    /// The collector's IOAM API endpoint
    #[arg(long, default_value = "http://[::1]:7123")]
    pub collector: String,
    /// Traces buffered while the collector is away; more are dropped and counted
    #[arg(long, default_value_t = 65_536)]
    pub buffer: usize,
    /// This node's name in reports (default: the host name)
    #[arg(long)]
    pub reporter: Option<String>,
    /// Log the counters every this many seconds (0: never)
    #[arg(long, default_value_t = 10)]
    pub stats_interval_s: u64,
    /// Where this node's IOAM packets come from: `nflog` (an nf_tables
    /// rule logs them, this node's entry filled in), `capture` (AF_PACKET,
    /// this node's entry joined in from its ioam6 trace events), `auto`
    /// (nflog when the kernel has it, else capture)
    #[arg(long, value_enum, default_value_t = crate::agent::Source::Auto)]
    pub source: crate::agent::Source,
    /// With `--source capture`: how long a captured trace waits for this node's ioam6 trace event,
    /// which carries this node's own entry (0: do not listen; reports then
    /// lack this node's entry)
    #[arg(long, default_value_t = 250)]
    pub own_hop_window_ms: u64,
    /// How often the agent wakes up to take the logged or captured packets
    /// and trace events, ms: one wakeup per interval and thread under load
    /// (the kernel batches the log for this long, 10 ms at least); traces
    /// reach the collector up to about this plus 100 ms late (0: every packet and
    /// event as it comes, 1 ms capture blocks)
    #[arg(long, default_value_t = crate::agent::DEFAULT_BATCH_INTERVAL.as_millis() as u64)]
    pub batch_ms: u64,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

pub fn agent_main() -> anyhow::Result<()> {
    let args = AgentArgs::parse();
    init_logs();
    let reporter = args.reporter.clone().unwrap_or_else(hostname);
    let stats = Arc::new(AgentStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (sink, task) = match args.output {
            Some(o) => (Sink::Print(o), None),
            None => {
                let (tx, task) = crate::agent::report::start(
                    args.collector.clone(),
                    args.buffer,
                    Arc::clone(&stats),
                );
                (Sink::Report(tx), Some(task))
            }
        };
        let threads = crate::agent::spawn_agent(
            &args.interface,
            args.netns.clone(),
            reporter,
            Arc::clone(&stats),
            sink,
            Arc::clone(&stop),
            crate::agent::AgentOptions {
                source: args.source,
                own_hop_window: Duration::from_millis(args.own_hop_window_ms),
                batch_interval: Duration::from_millis(args.batch_ms),
                ..crate::agent::AgentOptions::default()
            },
        )?;
        tracing::info!(interfaces = ?args.interface, "capturing");
        let log_stats = |s: &AgentStats| {
            let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            tracing::info!(
                packets = l(&s.packets),
                traces = l(&s.traces),
                malformed = l(&s.malformed),
                sent = l(&s.sent),
                dropped = l(&s.dropped),
                kernel_drops = l(&s.kernel_drops),
                reconnects = l(&s.reconnects),
                source_nflog = l(&s.source_nflog),
                own_hop_unavailable = l(&s.own_hop_unavailable),
                own_hop_joined = l(&s.own_hop_joined),
                own_hop_unmatched = l(&s.own_hop_unmatched),
                own_hop_no_room = l(&s.own_hop_no_room),
                own_hop_events = l(&s.own_hop_events),
                own_hop_events_unmatched = l(&s.own_hop_events_unmatched),
                own_hop_events_lost = l(&s.own_hop_events_lost),
                "agent counters"
            );
        };
        let every = Duration::from_secs(args.stats_interval_s.max(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(every) => if args.stats_interval_s > 0 { log_stats(&stats) },
            }
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        log_stats(&stats);
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        Ok(())
    })
}
