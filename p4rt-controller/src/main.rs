//! `clt-controller`: installs compiled P4 programs and entries over
//! P4Runtime and forwards the switches' IOAM digests to the collector.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use clt_controller::config::{CollectorConfig, Config, MetricsConfig};
use clt_controller::daemon::Daemon;
use clt_controller::device::{Device, DeviceSpec};
use clt_controller::inputs::DeviceInputs;
use clt_controller::metrics::Metrics;
use clt_controller::reconcile::diff;
use clt_controller::{Mastership, P4InfoIndex};

#[derive(Debug, Parser)]
#[command(name = "clt-controller", version, about)]
struct Cli {
    /// Log as JSON lines.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage every configured device until interrupted: reconnect with
    /// backoff, reinstall after a switch restart, forward digests; with
    /// `[rollout]`, keep a compiled fabric rolled out (SIGHUP: check it now).
    Run {
        #[arg(long, required_unless_present = "compiled")]
        config: Option<PathBuf>,
        /// Instead of --config: every P4 node of a `cltc compile` output.
        #[arg(long, conflicts_with = "config")]
        compiled: Option<PathBuf>,
        /// With --compiled: the collector's IOAM API (`host:port`).
        #[arg(long, requires = "compiled")]
        collector: Option<String>,
        /// With --compiled: serve Prometheus metrics here.
        #[arg(long, requires = "compiled")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Install once (pipeline if its cookie differs, then entries) and exit;
    /// fails when any update is rejected.
    Install {
        #[arg(long)]
        config: PathBuf,
        /// Only this device (default: all).
        #[arg(long)]
        device: Option<String>,
    },
    /// Show what `install` would write, without writing (reads the device).
    Diff {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        device: Option<String>,
    },
    /// Roll a compiled fabric out in the order of its rollout.json, each
    /// step verified; a failed step rolls back the steps made.
    Rollout {
        /// The compiled fabric to roll out.
        compiled: PathBuf,
        /// The compiled fabric running now: roll out only the difference.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Linux nodes configured in network namespaces: `node=netns,...`
        /// (a Linux node not named here is this host's current namespace).
        #[arg(long, value_delimiter = ',')]
        netns_map: Vec<String>,
        /// Print the plan; touch nothing.
        #[arg(long)]
        dry_run: bool,
        /// Linux IOAM insertion: route, socket or auto.
        #[arg(long, default_value = "auto")]
        insertion: String,
        /// Linux nodes on other machines, through their node agent
        /// (`clt-node-agent`): `node=host:port,...`.
        #[arg(long, value_delimiter = ',')]
        agent: Vec<String>,
        /// With --agent: the CA that signed the agents' certificates (each
        /// must name its node).
        #[arg(long, requires = "agent")]
        agent_ca: Option<PathBuf>,
        /// With --agent: the controller's client certificate and key.
        #[arg(long, requires = "agent_key")]
        agent_cert: Option<PathBuf>,
        #[arg(long, requires = "agent_cert")]
        agent_key: Option<PathBuf>,
    },
    /// Show the difference between two compiled fabrics, per node.
    Plan { old: PathBuf, new: PathBuf },
    /// Parse every device's compiled inputs and print a summary; no network.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load(path: &std::path::Path) -> Result<Config> {
    Config::load(path).with_context(|| format!("loading {}", path.display()))
}

fn selected<'a>(
    config: &'a Config,
    only: Option<&str>,
) -> Result<Vec<&'a clt_controller::config::DeviceConfig>> {
    let devices: Vec<_> = config
        .devices
        .iter()
        .filter(|d| only.is_none_or(|n| d.name == n))
        .collect();
    if devices.is_empty() {
        bail!(
            "no device {}",
            only.map_or("configured".to_string(), |n| format!("named {n}"))
        );
    }
    Ok(devices)
}

/// `node=host:port` pairs and the TLS they share.
fn parse_agents(
    pairs: &[String],
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<std::collections::HashMap<String, clt_controller::node_agent::AgentAddr>> {
    let mut out = std::collections::HashMap::new();
    for p in pairs.iter().filter(|p| !p.is_empty()) {
        let Some((node, address)) = p.split_once('=') else {
            bail!("--agent {p}: expected node=host:port");
        };
        let Some(ca) = ca.clone() else {
            bail!("--agent needs --agent-ca: agents are reached over TLS only");
        };
        out.insert(
            node.to_string(),
            clt_controller::node_agent::AgentAddr {
                address: address.to_string(),
                tls: clt_controller::connect::TlsOptions {
                    ca,
                    cert: cert.clone(),
                    key: key.clone(),
                    domain: None,
                },
            },
        );
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logs(cli.json);
    match cli.command {
        Command::Rollout {
            compiled,
            from,
            netns_map,
            dry_run,
            insertion,
            agent,
            agent_ca,
            agent_cert,
            agent_key,
        } => {
            use clt_controller::rollout;
            let new = rollout::Compiled::load(&compiled)?;
            let old = from.as_deref().map(rollout::Compiled::load).transpose()?;
            if dry_run {
                print!("{}", rollout::dry_run_text(old.as_ref(), &new));
                return Ok(());
            }
            let opts = rollout::Options {
                netns: rollout::parse_netns_map(&netns_map)?,
                dry_run,
                insertion: insertion.parse()?,
                agents: parse_agents(&agent, agent_ca, agent_cert, agent_key)?,
            };
            let outcome = rollout::run(old.as_ref(), &new, &opts, |_| {}).await;
            print!("{outcome}");
            if let Some(f) = &outcome.failure {
                bail!("rollout failed at {}: {}", f.step, f.cause);
            }
        }
        Command::Plan { old, new } => {
            let old = clt_controller::rollout::Compiled::load(&old)?;
            let new = clt_controller::rollout::Compiled::load(&new)?;
            print!("{}", clt_controller::rollout::plan_text(&old, &new));
        }
        Command::Run {
            config,
            compiled,
            collector,
            metrics,
        } => {
            let config = match (config, compiled) {
                (Some(path), _) => load(&path)?,
                (None, Some(dir)) => {
                    let mut c = Config::from_compiled(&dir)
                        .with_context(|| format!("loading {}", dir.display()))?;
                    c.collector = collector.map(|address| CollectorConfig {
                        address,
                        buffer: 4096,
                    });
                    c.metrics = metrics.map(|listen| MetricsConfig { listen });
                    c
                }
                (None, None) => bail!("give --config or --compiled"),
            };
            let daemon = Daemon::start(&config)
                .await
                .context("starting the daemon")?;
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("installing the SIGHUP handler")?;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("installing the SIGTERM handler")?;
            loop {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => {
                        r.context("waiting for ctrl-c")?;
                        break;
                    }
                    _ = term.recv() => break,
                    _ = hup.recv() => {
                        if daemon.rollout.is_some() {
                            tracing::info!("SIGHUP: checking the rollout's compiled fabric now");
                            daemon.recheck();
                        } else {
                            tracing::info!("SIGHUP ignored: no [rollout] configured");
                        }
                    }
                }
            }
            tracing::info!("shutting down");
            daemon.shutdown().await;
        }
        Command::Install { config, device } => {
            let config = load(&config)?;
            let mut failed = false;
            for d in selected(&config, device.as_deref())? {
                let inputs =
                    DeviceInputs::load(&d.inputs).with_context(|| format!("device {}", d.name))?;
                let dev =
                    Device::new(DeviceSpec::from_config(d), inputs, None, Metrics::default())?;
                let mut session = dev
                    .open()
                    .await
                    .with_context(|| format!("device {}", d.name))?;
                if session.mastership() != Mastership::Primary {
                    bail!(
                        "device {}: another controller is primary ({:?})",
                        d.name,
                        session.mastership()
                    );
                }
                let report = dev
                    .install(&mut session)
                    .await
                    .with_context(|| format!("device {}", d.name))?;
                println!(
                    "{}: read {}, inserted {}, modified {}, deleted {}, unchanged {}, {} batches",
                    d.name,
                    report.read,
                    report.inserted,
                    report.modified,
                    report.deleted,
                    report.unchanged,
                    report.batches
                );
                for e in &report.errors {
                    println!("{}: rejected: {e}", d.name);
                    failed = true;
                }
            }
            if failed {
                bail!("some updates were rejected");
            }
        }
        Command::Diff { config, device } => {
            let config = load(&config)?;
            for d in selected(&config, device.as_deref())? {
                let inputs =
                    DeviceInputs::load(&d.inputs).with_context(|| format!("device {}", d.name))?;
                let info = P4InfoIndex::new(inputs.pipeline.p4info.clone());
                let dev = Device::new(
                    DeviceSpec::from_config(d),
                    inputs.clone(),
                    None,
                    Metrics::default(),
                )?;
                let mut session = dev
                    .open()
                    .await
                    .with_context(|| format!("device {}", d.name))?;
                let cookie = session.pipeline_cookie().await?;
                if cookie != Some(inputs.pipeline.cookie) {
                    println!(
                        "{}: pipeline would be pushed (running cookie {cookie:?})",
                        d.name
                    );
                    println!("{}: then insert {} entries", d.name, inputs.entries.len());
                    continue;
                }
                let tables: Vec<u32> = info.writable_tables().collect();
                let installed = session.read_table_entries(&tables).await?;
                let plan = diff(&installed, &inputs.entries);
                for e in &plan.delete {
                    println!("{}: - {}", d.name, info.describe(e));
                }
                for e in &plan.modify {
                    println!("{}: ~ {}", d.name, info.describe(e));
                }
                for e in &plan.insert {
                    println!("{}: + {}", d.name, info.describe(e));
                }
                println!(
                    "{}: {} to write, {} unchanged",
                    d.name,
                    plan.len(),
                    plan.unchanged
                );
            }
        }
        Command::Check { config } => {
            let config = load(&config)?;
            for d in &config.devices {
                let inputs =
                    DeviceInputs::load(&d.inputs).with_context(|| format!("device {}", d.name))?;
                let info = P4InfoIndex::new(inputs.pipeline.p4info.clone());
                let digests = clt_controller::digest::DigestLayout::all(&info)?;
                println!(
                    "{}: {} tables, {} actions, {} entries, cookie {:#018x}, digests [{}]",
                    d.name,
                    info.p4info().tables.len(),
                    info.p4info().actions.len(),
                    inputs.entries.len(),
                    inputs.pipeline.cookie,
                    digests
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                for e in &inputs.entries {
                    if info.table(e.table_id).is_none() {
                        bail!(
                            "{}: entry for unknown table {:#x}: {}",
                            d.name,
                            e.table_id,
                            info.describe(e)
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
