//! The entry point: login requests over one kept-open HTTPS connection, each
//! in an OpenTelemetry span, marked with the CLT socket API in the phases
//! where CLT is on; the phases and the congestion they switch.

use crate::cost::{self, PhaseCost};
use crate::https::{Connection, Identity};
use crate::topology::{Congestion, run};
use anyhow::{Context, Result, bail};
use clt_linux::socket::{self, EnableOptions, Marker};
use cltc::artifact::linux::EncapPolicy;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, SpanKind, Tracer, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by Ctrl-C / SIGTERM: every loop stops at its next request.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The entry point's `service.name`.
pub const SERVICE: &str = "login-entry";
/// The login span's name.
pub const SPAN_NAME: &str = "POST /login";

/// One phase of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phase {
    pub name: String,
    pub congested: bool,
    pub clt: bool,
}

/// A run: phases back to back on one connection.
#[derive(Debug, Clone, Serialize)]
pub struct RunSpec {
    pub name: &'static str,
    pub title: String,
    pub phases: Vec<Phase>,
}

impl Phase {
    fn new(name: impl Into<String>, congested: bool, clt: bool) -> Phase {
        Phase {
            name: name.into(),
            congested,
            clt,
        }
    }
}

/// The paper's figure 10: normal, congestion, congestion with CLT, normal.
pub fn congestion_run() -> RunSpec {
    RunSpec {
        name: "congestion",
        title: "RTT, four phases with congestion (paper fig. 10)".into(),
        phases: vec![
            Phase::new("normal", false, false),
            Phase::new("congested", true, false),
            Phase::new("congested+clt", true, true),
            Phase::new("recovered", false, false),
        ],
    }
}

/// The paper's figure 11 without congestion: CLT off, on, off; with
/// `cycles` above 1, CLT on and off alternately, `cycles` times on, each
/// time between two phases without it (`off`, `clt`, `off-2`, `clt-2`,
/// ..., `off-<cycles + 1>`). More cycles measure CLT's effect against
/// several CLT-off phases instead of one pair (see
/// [`crate::report::comparison`]).
pub fn overhead_run(cycles: usize) -> RunSpec {
    let cycles = cycles.max(1);
    let mut phases = vec![Phase::new("off", false, false)];
    for c in 1..=cycles {
        phases.push(Phase::new(
            if c == 1 {
                "clt".into()
            } else {
                format!("clt-{c}")
            },
            false,
            true,
        ));
        phases.push(Phase::new(
            match (cycles, c) {
                (1, _) => "off-again".into(),
                _ => format!("off-{}", c + 1),
            },
            false,
            false,
        ));
    }
    RunSpec {
        name: "overhead",
        title: if cycles == 1 {
            "RTT, three phases without congestion (paper fig. 11)".into()
        } else {
            format!("RTT, no congestion, CLT off and on {cycles} times (paper fig. 11: once)")
        },
        phases,
    }
}

/// One login request as measured by the entry point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub run: String,
    /// 0-based phase index within the run.
    pub phase: usize,
    pub phase_name: String,
    /// When the request started, in seconds since the run's first one.
    pub t_s: f64,
    /// From just before `CLT.enable` to the end of the response (or the
    /// same points without CLT): the request, its whole response and
    /// CLT's own system call.
    pub rtt_ms: f64,
    pub clt: bool,
    pub congested: bool,
    pub status: u16,
    /// The login span's ids, 32 and 16 hex digits.
    pub trace_id: String,
    pub span_id: String,
}

pub const CSV_HEADER: &str =
    "run,phase,phase_name,t_s,rtt_ms,clt,congested,status,trace_id,span_id";

impl Sample {
    pub fn csv_line(&self) -> String {
        format!(
            "{},{},{},{:.6},{:.6},{},{},{},{},{}",
            self.run,
            self.phase,
            self.phase_name,
            self.t_s,
            self.rtt_ms,
            self.clt,
            self.congested,
            self.status,
            self.trace_id,
            self.span_id
        )
    }

    /// Parses a line written by [`Sample::csv_line`].
    pub fn from_csv_line(line: &str) -> Result<Sample> {
        let f: Vec<&str> = line.trim_end().split(',').collect();
        if f.len() != 10 {
            bail!("expected 10 fields, got {}: {line}", f.len());
        }
        Ok(Sample {
            run: f[0].to_string(),
            phase: f[1].parse().context("phase")?,
            phase_name: f[2].to_string(),
            t_s: f[3].parse().context("t_s")?,
            rtt_ms: f[4].parse().context("rtt_ms")?,
            clt: f[5].parse().context("clt")?,
            congested: f[6].parse().context("congested")?,
            status: f[7].parse().context("status")?,
            trace_id: f[8].to_string(),
            span_id: f[9].to_string(),
        })
    }
}

/// What the entry point needs to know.
#[derive(Debug, Clone)]
pub struct EntryConfig {
    pub server: SocketAddr,
    pub bulk_sink: SocketAddr,
    pub otlp_endpoint: String,
    pub identity: Identity,
    pub policy: EncapPolicy,
    pub router_netns: String,
    pub congestion: Congestion,
    pub rate: u32,
    pub phase: Duration,
    pub warmup: Duration,
    pub runs: Vec<RunSpec>,
}

/// The bulk transfers that fill the router's shaped queue: another
/// tenant's backup, sharing the bottleneck with the logins. Several flows:
/// Linux keeps a forwarded packet charged to its sender through veth, so
/// TCP small queues caps each flow at a few packets in the router's queue.
struct Bulk {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Bulk {
    /// Starts `flows` connections, each on a thread of the calling thread's
    /// network namespace.
    fn start(to: SocketAddr, flows: u32) -> Result<Bulk> {
        let mut bulk = Bulk {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        // Connect every flow before any sends: a SYN behind a queue the
        // first flows already fill could be dropped and wait a second.
        let mut conns = Vec::new();
        for _ in 0..flows.max(1) {
            let tcp = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                .with_context(|| format!("bulk transfer to {to}"))?;
            tcp.set_write_timeout(Some(Duration::from_millis(200)))?;
            conns.push(tcp);
        }
        for tcp in conns {
            let s = Arc::clone(&bulk.stop);
            bulk.threads
                .push(
                    std::thread::Builder::new()
                        .name("bulk".into())
                        .spawn(move || {
                            let chunk = vec![0u8; 16 * 1024];
                            let mut tcp = tcp;
                            while !s.load(Ordering::Relaxed) {
                                match tcp.write(&chunk) {
                                    Ok(_) => {}
                                    Err(e)
                                        if matches!(
                                            e.kind(),
                                            std::io::ErrorKind::WouldBlock
                                                | std::io::ErrorKind::TimedOut
                                        ) => {}
                                    Err(_) => break,
                                }
                            }
                            // Reset rather than drain what the socket still
                            // buffers, so the congestion ends with the phase.
                            let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
                        })?,
                );
        }
        Ok(bulk)
    }
}

impl Drop for Bulk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Congestion on: the router's token bucket and the bulk transfer; both
/// end when this is dropped.
struct Congested {
    router_netns: String,
    bulk: Option<Bulk>,
}

impl Congested {
    fn start(cfg: &EntryConfig) -> Result<Congested> {
        let c = &cfg.congestion;
        run(&[
            "tc",
            "-n",
            &cfg.router_netns,
            "qdisc",
            "replace",
            "dev",
            "eth1",
            "root",
            "tbf",
            "rate",
            &format!("{}kbit", c.rate_kbit),
            "burst",
            &c.burst_bytes.to_string(),
            "limit",
            &c.limit_bytes.to_string(),
        ])
        .context("congesting the router")?;
        let mut g = Congested {
            router_netns: cfg.router_netns.clone(),
            bulk: None,
        };
        g.bulk = Some(Bulk::start(cfg.bulk_sink, c.flows)?);
        Ok(g)
    }
}

impl Drop for Congested {
    fn drop(&mut self) {
        drop(self.bulk.take());
        let _ = run(&[
            "tc",
            "-n",
            &self.router_netns,
            "qdisc",
            "del",
            "dev",
            "eth1",
            "root",
        ]);
    }
}

/// The one-line progress display.
struct Progress {
    tty: bool,
    last: Instant,
}

impl Progress {
    fn show(&mut self, spec: &RunSpec, i: usize, t: f64, sent: usize, rtt: f64) {
        if !self.tty || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[2K[{} {}/{}] {:<14} {t:6.1} s  sent {sent:>6}  rtt {rtt:9.3} ms",
            spec.name,
            i + 1,
            spec.phases.len(),
            &spec.phases[i].name
        );
        let _ = e.flush();
    }

    fn phase_done(&mut self, run: &str, phase: &Phase, samples: &[Sample], spent: &PhaseCost) {
        let rtts: Vec<f64> = samples.iter().map(|s| s.rtt_ms).collect();
        let med = crate::stats::median(&rtts).unwrap_or(f64::NAN);
        let (cpu, wakeups) = spent.total_per_request();
        let (agent_cpu, agent_wakeups) = spent.per_request("agent");
        let line = format!(
            "{run}: phase {:<14} {:>6} requests, median rtt {med:.3} ms; per request: cpu {cpu:.0} us, wakeups {wakeups:.1} (agent {agent_cpu:.1} us, {agent_wakeups:.2})",
            phase.name,
            samples.len()
        );
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{line}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs every run of `cfg` on the calling thread, which must be in the
/// entry point's network namespace.
pub fn entry_host(cfg: EntryConfig) -> Result<(Vec<Sample>, Vec<PhaseCost>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.otlp_endpoint.clone())
            .build()
            .context("otlp exporter")?;
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(500))
                    .with_max_queue_size(1 << 16)
                    .with_max_export_batch_size(1024)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name(SERVICE)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("clt-login-demo");
        let mut samples = Vec::new();
        let mut costs = Vec::new();
        let mut result = Ok(());
        for spec in &cfg.runs {
            match one_run(&cfg, spec, &tracer, &mut costs).await {
                Ok(s) => samples.extend(s),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let p = provider.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = p.force_flush();
            p.shutdown()
        })
        .await;
        result.map(|()| (samples, costs))
    })
}

async fn one_run(
    cfg: &EntryConfig,
    spec: &RunSpec,
    tracer: &opentelemetry_sdk::trace::SdkTracer,
    costs: &mut Vec<PhaseCost>,
) -> Result<Vec<Sample>> {
    let mut conn = Connection::open(cfg.server, &cfg.identity).await?;
    // The socket's header template, built once for the kept-open socket.
    let marker = Marker::new(&conn.fd, &cfg.policy, &EnableOptions::default())
        .context("CLT marker for the connection")?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(cfg.rate.max(1)));
    let timeout = Duration::from_secs(20);
    let mut user = 0u64;

    // Warm-up (not recorded): TLS session, caches, TCP window.
    let until = Instant::now() + cfg.warmup;
    while Instant::now() < until && !INTERRUPTED.load(Ordering::Relaxed) {
        user += 1;
        tokio::time::timeout(timeout, conn.login(user, "")).await??;
        tokio::time::sleep(interval).await;
    }

    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        last: Instant::now(),
    };
    let mut out = Vec::new();
    let t0 = Instant::now();
    let mut congested: Option<Congested> = None;
    for (i, phase) in spec.phases.iter().enumerate() {
        if phase.congested && congested.is_none() {
            congested = Some(Congested::start(cfg)?);
        } else if !phase.congested {
            congested = None;
        }
        let start_len = out.len();
        // Shared by the phase's spans: a clone per request is a count.
        let phase_name: Arc<str> = Arc::from(phase.name.as_str());
        let before = cost::snapshot();
        let end = Instant::now() + cfg.phase;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while Instant::now() < end {
            if INTERRUPTED.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            tick.tick().await;
            user += 1;
            let mut span = tracer
                .span_builder(SPAN_NAME)
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("http.request.method", "POST"),
                    KeyValue::new("url.path", "/login"),
                    KeyValue::new("server.address", cfg.server.ip().to_string()),
                    KeyValue::new("server.port", i64::from(cfg.server.port())),
                    KeyValue::new("clt.enabled", phase.clt),
                    KeyValue::new("demo.run", spec.name),
                    KeyValue::new("demo.phase", Arc::clone(&phase_name)),
                ])
                .start(tracer);
            let sc = span.span_context().clone();
            let (trace_id, span_id) = (sc.trace_id().to_bytes(), sc.span_id().to_bytes());
            let traceparent = format!("00-{}-{}-01", hex(&trace_id), hex(&span_id));
            let started = Instant::now();
            if phase.clt {
                // The header stays on the socket between requests: each
                // request only switches the ids (one setsockopt), and the
                // ACKs that follow a response still carry its ids.
                marker
                    .enable(&conn.fd, trace_id, span_id)
                    .context("CLT.enable")?;
            }
            let status = tokio::time::timeout(timeout, conn.login(user, &traceparent))
                .await
                .context("login timed out")?;
            let rtt = started.elapsed().as_secs_f64() * 1e3;
            let status = status?;
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            span.end();
            let t_s = started.duration_since(t0).as_secs_f64();
            progress.show(spec, i, t_s, out.len() + 1, rtt);
            out.push(Sample {
                run: spec.name.to_string(),
                phase: i,
                phase_name: phase.name.to_string(),
                t_s,
                rtt_ms: rtt,
                clt: phase.clt,
                congested: phase.congested,
                status,
                trace_id: hex(&trace_id),
                span_id: hex(&span_id),
            });
        }
        let spent = PhaseCost {
            run: spec.name.to_string(),
            phase: i,
            name: phase.name.to_string(),
            requests: out.len() - start_len,
            groups: cost::between(&before, &cost::snapshot()),
        };
        if phase.clt {
            socket::disable(&conn.fd).context("CLT.disable")?;
        }
        progress.phase_done(spec.name, phase, &out[start_len..], &spent);
        costs.push(spent);
    }
    drop(congested);
    Ok(out)
}
