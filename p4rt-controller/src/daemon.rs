//! The daemon: every configured device managed concurrently, one forwarder
//! to the collector, one metrics endpoint, and (with `[rollout]`) a compiled
//! fabric kept rolled out.
//!
//! The `[rollout]` task checks the compiled directory every `poll_secs`
//! (and at once on [`Daemon::recheck`], which `clt-controller run` calls on
//! SIGHUP). A new version (its files' [`rollout::fingerprint`] differs from
//! the running one's and stayed the same for one interval, so a `cltc
//! compile` still writing is not read half-way) is copied into the state
//! directory and rolled out with the same engine as `clt-controller rollout
//! --from RUNNING NEW`: ordered, each step verified, rolled back on failure.
//! A version that failed is not retried until it changes again or a recheck
//! is asked for. Between rollouts the fabric's P4 nodes are managed as
//! `[[device]]`s are (reconnect, reinstall after a restart, digests to the
//! collector) from the running version; they are stopped while a rollout
//! drives the switches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{Notify, watch};

use crate::config::{Config, DeviceConfig, RolloutConfig};
use crate::device::{Device, DeviceSpec};
use crate::error::{Error, Result};
use crate::forward::Forwarder;
use crate::inputs::DeviceInputs;
use crate::metrics::Metrics;
use crate::rollout::{self, Compiled};

/// A running daemon; dropping it does not stop it, [`Daemon::shutdown`] does.
#[derive(Debug)]
pub struct Daemon {
    pub devices: Vec<Arc<Device>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// What the `[rollout]` task has done, if there is one.
    pub rollout: Option<watch::Receiver<RolloutStatus>>,
    rollout_task: Option<tokio::task::JoinHandle<()>>,
    recheck: Arc<Notify>,
}

/// What the `[rollout]` task has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutStatus {
    pub succeeded: u64,
    pub failed: u64,
    /// The fingerprint of the version running (the last rolled out).
    pub running: Option<String>,
    /// The last rollout's report, or why the version could not be loaded.
    pub last_report: String,
    /// Whether the last rollout failed (the previous version runs).
    pub failing: bool,
}

impl Daemon {
    /// Loads every device's inputs (failing before touching any device when
    /// one is invalid), then starts managing them.
    pub async fn start(config: &Config) -> Result<Daemon> {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut tasks = Vec::new();
        let forwarder = match &config.collector {
            Some(c) => {
                let (f, task) = Forwarder::spawn(&c.address, c.buffer, metrics.clone())?;
                tasks.push(task);
                Some(f)
            }
            None => None,
        };
        let mut devices = Vec::new();
        for d in &config.devices {
            devices.push(Arc::new(device(d, &forwarder, &metrics)?));
        }
        if let Some(r) = &config.rollout {
            check_rollout(r, config)?;
        }
        let metrics_addr = match &config.metrics {
            Some(m) => {
                let (addr, task) = crate::metrics::serve(m.listen, registry).await?;
                tracing::info!(%addr, "metrics at http://{addr}/metrics");
                tasks.push(task);
                Some(addr)
            }
            None => None,
        };
        let (shutdown, rx) = watch::channel(false);
        for device in &devices {
            let device = device.clone();
            let rx = rx.clone();
            tasks.push(tokio::spawn(async move { device.run(rx).await }));
        }
        let recheck = Arc::new(Notify::new());
        let (rollout, rollout_task) = match &config.rollout {
            Some(r) => {
                let (status, status_rx) = watch::channel(RolloutStatus::default());
                let task = RolloutTask {
                    config: r.clone(),
                    forwarder: forwarder.clone(),
                    metrics: metrics.clone(),
                    status,
                    recheck: recheck.clone(),
                };
                let rx = rx.clone();
                (Some(status_rx), Some(tokio::spawn(task.run(rx))))
            }
            None => (None, None),
        };
        Ok(Daemon {
            devices,
            shutdown,
            tasks,
            metrics_addr,
            rollout,
            rollout_task,
            recheck,
        })
    }

    /// Checks the `[rollout]` directory now, and rolls out its version even
    /// if it failed before (what SIGHUP does).
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }

    /// Stops every device manager and waits for them; a rollout in progress
    /// is finished first (at most a minute).
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        if let Some(t) = self.rollout_task {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// The `[rollout]` fabric must be loadable, and its P4 nodes must not also
/// be `[[device]]`s (two managers would fight over the switch).
fn check_rollout(r: &RolloutConfig, config: &Config) -> Result<()> {
    let c = Compiled::load(&r.compiled).map_err(|e| Error::Config(format!("rollout: {e}")))?;
    for d in &config.devices {
        if c.nodes.contains_key(&d.name) {
            return Err(Error::Config(format!(
                "device {} is also a node of the rollout's fabric ({}); the rollout manages it",
                d.name,
                r.compiled.display()
            )));
        }
    }
    Ok(())
}

/// The fabric's P4 nodes, managed between rollouts.
/// One `[[device]]`'s manager: its compiled inputs loaded, not yet running.
fn device(d: &DeviceConfig, forwarder: &Option<Forwarder>, metrics: &Metrics) -> Result<Device> {
    let inputs = DeviceInputs::load(&d.inputs)?;
    Device::new(
        DeviceSpec::from_config(d),
        inputs,
        forwarder.clone(),
        metrics.clone(),
    )
}

struct Managers {
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Managers {
    fn start(dir: &Path, forwarder: &Option<Forwarder>, metrics: &Metrics) -> Result<Managers> {
        let config = Config::from_compiled(dir)?;
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for d in &config.devices {
            let device = device(d, forwarder, metrics)?;
            let rx = rx.clone();
            tasks.push(tokio::spawn(async move { device.run(rx).await }));
        }
        Ok(Managers { shutdown, tasks })
    }

    async fn stop(self) {
        self.shutdown.send_replace(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

struct RolloutTask {
    config: RolloutConfig,
    forwarder: Option<Forwarder>,
    metrics: Metrics,
    status: watch::Sender<RolloutStatus>,
    recheck: Arc<Notify>,
}

/// Where the running version is kept: `DIR/current` (and `DIR/next` while a
/// new one is rolled out); removed on exit when the daemon made it.
struct StateDir {
    dir: PathBuf,
    temporary: bool,
}

impl StateDir {
    fn new(configured: Option<&Path>) -> std::io::Result<StateDir> {
        let (dir, temporary) = match configured {
            Some(d) => (d.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("clt-controller-rollout-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir)?;
        Ok(StateDir { dir, temporary })
    }

    fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    fn next(&self) -> PathBuf {
        self.dir.join("next")
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl RolloutTask {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let state = match StateDir::new(self.config.state_dir.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "rollout: cannot create the state directory; no rollouts");
                return;
            }
        };
        let insertion = self
            .config
            .insertion
            .parse::<clt_linux::Insertion>()
            .unwrap_or_default();
        let opts = rollout::Options {
            netns: self
                .config
                .netns
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
            dry_run: false,
            insertion,
            agents: match &self.config.agent_tls {
                Some(tls) => self
                    .config
                    .agents
                    .iter()
                    .map(|(node, address)| {
                        let agent = crate::node_agent::AgentAddr {
                            address: address.clone(),
                            tls: tls.clone(),
                        };
                        (node.clone(), agent)
                    })
                    .collect(),
                None => HashMap::new(),
            },
        };
        let poll = Duration::from_secs(self.config.poll_secs);
        // The version a previous run of the daemon left running.
        let mut current: Option<(String, Compiled)> = match (
            rollout::fingerprint(&state.current()),
            Compiled::load(&state.current()),
        ) {
            (Ok(fp), Ok(c)) => {
                tracing::info!(fingerprint = %fp, dir = %state.current().display(), "rollout: running version from the state directory");
                Some((fp, c))
            }
            _ => None,
        };
        if let Some((fp, _)) = &current {
            let fp = fp.clone();
            self.status.send_modify(|s| s.running = Some(fp));
        }
        let mut managers = self.start_managers(current.as_ref());
        // A version seen at the last check and not rolled out yet (it must
        // stay the same for one interval), and the last one that failed.
        let mut seen: Option<String> = None;
        let mut refused: Option<String> = None;
        let mut forced = true;
        loop {
            if !forced {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = self.recheck.notified() => forced = true,
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
            let was_forced = std::mem::take(&mut forced);
            let fp = match rollout::fingerprint(&self.config.compiled) {
                Ok(fp) => fp,
                Err(e) => {
                    tracing::warn!(error = %e, "rollout: cannot read the compiled fabric");
                    continue;
                }
            };
            if current.as_ref().map(|c| &c.0) == Some(&fp) {
                seen = None;
                continue;
            }
            if !was_forced && (refused.as_ref() == Some(&fp) || seen.as_ref() != Some(&fp)) {
                seen = Some(fp);
                continue;
            }
            seen = None;
            let next = state.next();
            let _ = std::fs::remove_dir_all(&next);
            let loaded = rollout::snapshot(&self.config.compiled, &next)
                .and_then(|()| rollout::fingerprint(&next))
                .and_then(|copied| {
                    if copied == fp {
                        Compiled::load(&next).map(Some)
                    } else {
                        Ok(None)
                    }
                });
            let new = match loaded {
                Ok(Some(c)) => c,
                // Changed while being copied: the next check sees it again.
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(fingerprint = %fp, error = %e, "rollout: the new version cannot be loaded");
                    self.record_failure(&fp, format!("{e}\n"));
                    refused = Some(fp);
                    continue;
                }
            };
            tracing::info!(
                from = current.as_ref().map(|c| c.0.as_str()).unwrap_or("nothing"),
                to = %fp,
                steps = rollout::steps(current.as_ref().map(|c| &c.1), &new).len(),
                "rollout: starting"
            );
            if let Some(m) = managers.take() {
                m.stop().await;
            }
            let metrics = self.metrics.clone();
            let outcome = rollout::run(current.as_ref().map(|c| &c.1), &new, &opts, |d| {
                metrics.rollout_steps.inc();
                tracing::info!(step = %d.step, changes = d.changes.len(),
                    ms = format!("{:.1}", d.elapsed.as_secs_f64() * 1e3), "rollout: step verified");
            })
            .await;
            let report = outcome.to_string();
            match &outcome.failure {
                None => match self.promote(&state, &fp) {
                    Ok(c) => {
                        tracing::info!(fingerprint = %fp, steps = outcome.done.len(), "rollout: done");
                        self.metrics
                            .rollouts
                            .get_or_create(&Metrics::result(true))
                            .inc();
                        self.metrics.rollout_failing.set(0);
                        let running = fp.clone();
                        self.status.send_modify(|s| {
                            s.succeeded += 1;
                            s.running = Some(running);
                            s.last_report = report;
                            s.failing = false;
                        });
                        current = Some((fp, c));
                        refused = None;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "rollout: rolled out, but the state directory could not be updated");
                        self.record_failure(&fp, format!("{report}state directory: {e}\n"));
                        refused = Some(fp);
                    }
                },
                Some(f) => {
                    tracing::error!(step = %f.step, cause = %f.cause, undone = f.undone.len(),
                        undo_errors = f.undo_errors.len(), "rollout: failed and rolled back");
                    for e in &f.undo_errors {
                        tracing::error!(error = %e, "rollout: undo failed");
                    }
                    self.metrics
                        .rollout_steps_undone
                        .inc_by(f.undone.len() as u64);
                    self.metrics
                        .rollout_undo_errors
                        .inc_by(f.undo_errors.len() as u64);
                    self.record_failure(&fp, report);
                    let _ = std::fs::remove_dir_all(&next);
                    refused = Some(fp);
                }
            }
            managers = self.start_managers(current.as_ref());
        }
        if let Some(m) = managers.take() {
            m.stop().await;
        }
    }

    fn record_failure(&self, fp: &str, report: String) {
        self.metrics
            .rollouts
            .get_or_create(&Metrics::result(false))
            .inc();
        self.metrics.rollout_failing.set(1);
        tracing::warn!(fingerprint = %fp, "rollout: the previous version keeps running; change the compiled fabric or send SIGHUP to try again");
        self.status.send_modify(|s| {
            s.failed += 1;
            s.last_report = report;
            s.failing = true;
        });
    }

    /// `next` becomes `current`.
    fn promote(&self, state: &StateDir, fp: &str) -> std::result::Result<Compiled, String> {
        let (current, next) = (state.current(), state.next());
        if current.exists() {
            std::fs::remove_dir_all(&current).map_err(|e| format!("{}: {e}", current.display()))?;
        }
        std::fs::rename(&next, &current).map_err(|e| format!("{}: {e}", next.display()))?;
        let c = Compiled::load(&current).map_err(|e| e.to_string())?;
        tracing::debug!(fingerprint = %fp, dir = %current.display(), "rollout: running version kept");
        Ok(c)
    }

    fn start_managers(&self, current: Option<&(String, Compiled)>) -> Option<Managers> {
        let (_, c) = current?;
        match Managers::start(&c.dir, &self.forwarder, &self.metrics) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(error = %e, "rollout: the fabric's P4 nodes cannot be managed");
                None
            }
        }
    }
}
