//! One managed device: connect, arbitrate, install the pipeline and entries,
//! serve digests; on any break, reconnect with backoff and install again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::config::{DeviceConfig, DigestConfig};
use crate::connect::{TlsOptions, connect};
use crate::digest::DigestLayout;
use crate::error::{Error, Result};
use crate::forward::Forwarder;
use crate::inputs::DeviceInputs;
use crate::metrics::{DeviceLabel, Metrics};
use crate::p4info::P4InfoIndex;
use crate::proto::p4::v1 as p4;
use crate::session::{Mastership, PipelineAction, ReconcileReport, Session, SessionOptions};

/// Everything needed to manage one device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub name: String,
    pub address: String,
    pub tls: Option<TlsOptions>,
    pub session: SessionOptions,
    pub batch_size: usize,
    pub digest: DigestConfig,
    pub connect_timeout: Duration,
    /// First and longest delay between reconnects.
    pub backoff: (Duration, Duration),
    /// While primary, reconcile again this often, repairing entries changed
    /// behind the controller's back (`None`: only on (re)connect and on
    /// regaining primacy).
    pub resync: Option<Duration>,
}

impl DeviceSpec {
    pub fn from_config(d: &DeviceConfig) -> DeviceSpec {
        let mut session = SessionOptions::new(d.device_id, u128::from(d.election_id));
        session.role = d.role.clone();
        DeviceSpec {
            name: d.name.clone(),
            address: d.address.clone(),
            tls: d.tls.clone(),
            session,
            batch_size: d.batch_size,
            digest: d.digest.clone(),
            connect_timeout: Duration::from_secs(5),
            backoff: (Duration::from_millis(200), Duration::from_secs(30)),
            resync: (d.resync_secs > 0).then(|| Duration::from_secs(d.resync_secs)),
        }
    }
}

/// What a device's manager last did (for tests, logs and `status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStatus {
    pub connected: bool,
    pub primary: bool,
    /// Sessions opened so far.
    pub sessions: u64,
    /// Completed installs (pipeline check + reconcile) so far.
    pub installs: u64,
    pub pipeline_pushes: u64,
    pub last_report: Option<ReconcileReport>,
    pub last_error: Option<String>,
}

/// Manages one device until dropped.
#[derive(Debug)]
pub struct Device {
    spec: DeviceSpec,
    inputs: Arc<DeviceInputs>,
    info: Arc<P4InfoIndex>,
    layouts: Arc<HashMap<u32, DigestLayout>>,
    forwarder: Option<Forwarder>,
    metrics: Metrics,
    label: DeviceLabel,
    status: watch::Sender<DeviceStatus>,
}

impl Device {
    pub fn new(
        spec: DeviceSpec,
        inputs: DeviceInputs,
        forwarder: Option<Forwarder>,
        metrics: Metrics,
    ) -> Result<Device> {
        let info = P4InfoIndex::new(inputs.pipeline.p4info.clone());
        let layouts = DigestLayout::all(&info)?
            .into_iter()
            .map(|l| (l.digest_id, l))
            .collect();
        let label = Metrics::device(&spec.name);
        Ok(Device {
            spec,
            inputs: Arc::new(inputs),
            info: Arc::new(info),
            layouts: Arc::new(layouts),
            forwarder,
            metrics,
            label,
            status: watch::channel(DeviceStatus::default()).0,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn info(&self) -> &P4InfoIndex {
        &self.info
    }

    /// The compiled pipeline and entries this device is given.
    pub fn inputs(&self) -> &DeviceInputs {
        &self.inputs
    }

    pub fn watch_status(&self) -> watch::Receiver<DeviceStatus> {
        self.status.subscribe()
    }

    /// Connects and opens a session (arbitration sent and answered).
    pub async fn open(&self) -> Result<Session> {
        let channel = connect(
            &self.spec.address,
            self.spec.tls.as_ref(),
            self.spec.connect_timeout,
        )
        .await?;
        Session::open(channel, self.spec.session.clone()).await
    }

    /// Installs the pipeline (unless the cookie matches), the digest
    /// configuration and the entries. The session must be primary.
    pub async fn install(&self, session: &mut Session) -> Result<ReconcileReport> {
        let name = &self.spec.name;
        let action = session.ensure_pipeline(&self.inputs.pipeline).await?;
        if action == PipelineAction::Pushed {
            self.metrics
                .pipeline_pushes
                .get_or_create(&self.label)
                .inc();
            self.status.send_modify(|s| s.pipeline_pushes += 1);
            tracing::info!(device = %name, cookie = format!("{:#018x}", self.inputs.pipeline.cookie), "pipeline pushed");
        } else {
            tracing::info!(device = %name, "pipeline already running, push skipped");
        }
        // Digests: the compiled configurations, then the IOAM digests the
        // compiled entries leave out, with the configured defaults.
        let mut configured = std::collections::HashSet::new();
        for d in &self.inputs.digests {
            session
                .configure_digest(d.digest_id, d.config.unwrap_or_default())
                .await?;
            configured.insert(d.digest_id);
        }
        let mut ids: Vec<u32> = self.layouts.keys().copied().collect();
        ids.sort_unstable();
        for id in ids.into_iter().filter(|id| !configured.contains(id)) {
            let d = &self.spec.digest;
            let config = p4::digest_entry::Config {
                max_timeout_ns: d.max_timeout_ns,
                max_list_size: d.max_list_size,
                ack_timeout_ns: d.ack_timeout_ns,
            };
            session.configure_digest(id, config).await?;
        }
        let report = session
            .reconcile(&self.info, &self.inputs.entries, self.spec.batch_size)
            .await?;
        let written = (report.inserted + report.modified + report.deleted) as u64;
        self.metrics
            .updates_written
            .get_or_create(&self.label)
            .inc_by(written);
        self.metrics
            .update_errors
            .get_or_create(&self.label)
            .inc_by(report.errors.len() as u64);
        for e in &report.errors {
            tracing::error!(device = %name, table = %e.table, entry = %e.entry, op = e.op, code = ?e.code, message = %e.message, "update rejected");
        }
        tracing::info!(device = %name, read = report.read, inserted = report.inserted, modified = report.modified,
            deleted = report.deleted, unchanged = report.unchanged, failed = report.errors.len(), "entries reconciled");
        self.status.send_modify(|s| {
            s.installs += 1;
            s.last_report = Some(report.clone());
        });
        Ok(report)
    }

    /// Acknowledges, decodes and forwards the session's digests until the
    /// stream ends.
    fn spawn_digest_task(&self, session: &mut Session) -> Option<tokio::task::JoinHandle<()>> {
        let mut digests = session.take_digests()?;
        let sender = session.sender();
        let layouts = self.layouts.clone();
        let forwarder = self.forwarder.clone();
        let metrics = self.metrics.clone();
        let label = self.label.clone();
        let name = self.spec.name.clone();
        Some(tokio::spawn(async move {
            while let Some(list) = digests.recv().await {
                if let Some(layout) = layouts.get(&list.digest_id) {
                    for data in &list.data {
                        match layout.decode(data) {
                            Ok(d) => {
                                if let Some(f) = &forwarder {
                                    f.submit(d.trace);
                                }
                            }
                            Err(e) => {
                                metrics.digests_malformed.get_or_create(&label).inc();
                                tracing::warn!(device = %name, error = %e, "digest skipped");
                            }
                        }
                    }
                }
                metrics.digest_lists.get_or_create(&label).inc();
                if sender
                    .ack_digest(list.digest_id, list.list_id)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }))
    }

    /// One session: open, install whenever primary, serve digests; returns
    /// when the stream breaks (always an error).
    pub async fn run_session(&self) -> Result<()> {
        let mut session = self.open().await?;
        self.metrics.connects.get_or_create(&self.label).inc();
        self.metrics.connected.get_or_create(&self.label).set(1);
        self.status.send_modify(|s| {
            s.connected = true;
            s.sessions += 1;
        });
        let digest_task = self.spawn_digest_task(&mut session);
        let result = self.serve(&mut session).await;
        if let Some(t) = digest_task {
            t.abort();
        }
        self.metrics.connected.get_or_create(&self.label).set(0);
        self.metrics.primary.get_or_create(&self.label).set(0);
        self.status.send_modify(|s| {
            s.connected = false;
            s.primary = false;
        });
        result
    }

    async fn serve(&self, session: &mut Session) -> Result<()> {
        let mut mastership = session.watch_mastership();
        loop {
            if session.mastership() != Mastership::Primary {
                tracing::info!(device = %self.spec.name, mastership = ?session.mastership(), "waiting to become primary");
            }
            session.wait_primary().await?;
            self.metrics.primary.get_or_create(&self.label).set(1);
            self.status.send_modify(|s| s.primary = true);
            match self.install(session).await {
                Ok(_) => {}
                // Lost primacy during the install: wait for it again.
                Err(Error::NotPrimary { .. }) => continue,
                Err(e) => return Err(e),
            }
            // Installed: resync periodically until primacy is lost or the
            // stream closes.
            mastership.mark_unchanged();
            loop {
                let lost = mastership.wait_for(|m| !matches!(m, Mastership::Primary));
                let tick = async {
                    match self.spec.resync {
                        Some(every) => tokio::time::sleep(every).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    // An error means the reader ended, which it only does
                    // after publishing Closed: checked below.
                    _ = lost => break,
                    _ = tick => {}
                }
                match self.install(session).await {
                    Ok(_) | Err(Error::NotPrimary { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            self.metrics.primary.get_or_create(&self.label).set(0);
            self.status.send_modify(|s| s.primary = false);
            if let Mastership::Closed(reason) = session.mastership() {
                return Err(Error::StreamClosed {
                    device_id: session.device_id(),
                    reason,
                });
            }
            tracing::warn!(device = %self.spec.name, "arbitration lost: another controller is primary");
        }
    }

    /// Manages the device until `shutdown` turns true: every broken session
    /// is followed by a reconnect after an exponential backoff.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let (initial, max) = self.spec.backoff;
        let mut backoff = Backoff::new(initial, max);
        loop {
            let started = tokio::time::Instant::now();
            let result = tokio::select! {
                r = self.run_session() => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if let Err(e) = result {
                tracing::warn!(device = %self.spec.name, error = %e, "session ended");
                self.status
                    .send_modify(|s| s.last_error = Some(e.to_string()));
            }
            // A session that lived a while resets the backoff.
            if started.elapsed() > max {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
