//! A P4Runtime session with one device: the StreamChannel with its
//! arbitration, and the RPCs a primary controller makes.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::inputs::Pipeline;
use crate::p4info::P4InfoIndex;
use crate::proto::p4::v1 as p4;
use crate::reconcile::{Plan, diff};
use crate::write::{UpdateError, describe_failures};
use p4::p4_runtime_client::P4RuntimeClient;

/// Who this session is for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mastership {
    /// Arbitration sent, no answer yet.
    Pending,
    /// This client is the primary: it may write.
    Primary,
    /// Another client has a higher election id (`primary` is the highest the
    /// switch has seen).
    Backup { primary: Option<u128> },
    /// The stream ended; the session is over.
    Closed(String),
}

/// How to identify this controller to a device.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub device_id: u64,
    pub election_id: u128,
    /// The role name; `None` is the default role (full pipeline access).
    pub role: Option<String>,
    /// How long to wait for the switch's first arbitration answer.
    pub arbitration_timeout: Duration,
    /// How many DigestLists to queue before the stream reader waits.
    pub digest_queue: usize,
}

impl SessionOptions {
    pub fn new(device_id: u64, election_id: u128) -> SessionOptions {
        SessionOptions {
            device_id,
            election_id,
            role: None,
            arbitration_timeout: Duration::from_secs(10),
            digest_queue: 1024,
        }
    }
}

/// What [`Session::ensure_pipeline`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineAction {
    /// The device already runs a pipeline with the same cookie.
    Skipped,
    /// The pipeline was pushed with VERIFY_AND_COMMIT.
    Pushed,
}

/// What [`Session::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub read: usize,
    pub inserted: usize,
    pub modified: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub batches: usize,
    /// Updates the device rejected, by name.
    pub errors: Vec<UpdateError>,
}

impl ReconcileReport {
    /// `Err(Error::Write)` when any update failed.
    pub fn into_result(self) -> Result<ReconcileReport> {
        if self.errors.is_empty() {
            Ok(self)
        } else {
            Err(Error::Write {
                total: self.inserted + self.modified + self.deleted + self.errors.len(),
                errors: self.errors,
            })
        }
    }
}

/// Sends DigestListAcks (and other stream messages) on a session's stream.
#[derive(Debug, Clone)]
pub struct StreamSender {
    tx: mpsc::Sender<p4::StreamMessageRequest>,
    device_id: u64,
}

impl StreamSender {
    pub async fn ack_digest(&self, digest_id: u32, list_id: u64) -> Result<()> {
        self.send(p4::stream_message_request::Update::DigestAck(
            p4::DigestListAck { digest_id, list_id },
        ))
        .await
    }

    async fn send(&self, update: p4::stream_message_request::Update) -> Result<()> {
        self.tx
            .send(p4::StreamMessageRequest {
                update: Some(update),
            })
            .await
            .map_err(|_| Error::StreamClosed {
                device_id: self.device_id,
                reason: "stream sender closed".to_string(),
            })
    }
}

/// A live P4Runtime session.
#[derive(Debug)]
pub struct Session {
    client: P4RuntimeClient<Channel>,
    opts: SessionOptions,
    sender: StreamSender,
    mastership: watch::Receiver<Mastership>,
    digests: Option<mpsc::Receiver<p4::DigestList>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

pub(crate) fn uint128(v: u128) -> p4::Uint128 {
    p4::Uint128 {
        high: (v >> 64) as u64,
        low: v as u64,
    }
}

fn from_uint128(v: &p4::Uint128) -> u128 {
    (u128::from(v.high) << 64) | u128::from(v.low)
}

impl Session {
    /// Opens the StreamChannel, claims primacy with the election id and waits
    /// for the switch's first arbitration answer. The session may come back
    /// as a backup: see [`Session::mastership`] and [`Session::wait_primary`].
    pub async fn open(channel: Channel, opts: SessionOptions) -> Result<Session> {
        let mut client = P4RuntimeClient::new(channel)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let (tx, rx) = mpsc::channel(256);
        let sender = StreamSender {
            tx,
            device_id: opts.device_id,
        };
        sender
            .send(p4::stream_message_request::Update::Arbitration(
                p4::MasterArbitrationUpdate {
                    device_id: opts.device_id,
                    role: opts.role.as_ref().map(|name| p4::Role {
                        name: name.clone(),
                        ..Default::default()
                    }),
                    election_id: Some(uint128(opts.election_id)),
                    status: None,
                },
            ))
            .await?;
        let mut inbound = client
            .stream_channel(ReceiverStream::new(rx))
            .await
            .map_err(|s| Error::rpc("StreamChannel", &s))?
            .into_inner();

        let (m_tx, mut m_rx) = watch::channel(Mastership::Pending);
        let (d_tx, d_rx) = mpsc::channel(opts.digest_queue.max(1));
        let device_id = opts.device_id;
        let reader = tokio::spawn(async move {
            let reason = loop {
                match inbound.next().await {
                    None => break "stream ended by the device".to_string(),
                    Some(Err(status)) => {
                        break format!("{:?}: {}", status.code(), status.message());
                    }
                    Some(Ok(msg)) => match msg.update {
                        Some(p4::stream_message_response::Update::Arbitration(a)) => {
                            let ok = a.status.as_ref().is_none_or(|s| s.code == 0);
                            let m = if ok {
                                Mastership::Primary
                            } else {
                                Mastership::Backup {
                                    primary: a.election_id.as_ref().map(from_uint128),
                                }
                            };
                            tracing::info!(device_id, mastership = ?m, "arbitration update");
                            m_tx.send_replace(m);
                        }
                        // Never wait here: arbitration updates share this
                        // stream. A list not queued is not acknowledged, so
                        // the switch sends it again after its ack timeout.
                        Some(p4::stream_message_response::Update::Digest(list)) => {
                            if let Err(e) = d_tx.try_send(list) {
                                tracing::warn!(device_id, error = %e, "digest list not queued, left unacknowledged");
                            }
                        }
                        Some(p4::stream_message_response::Update::Error(e)) => {
                            tracing::warn!(device_id, code = e.canonical_code, message = %e.message, "stream error from device");
                        }
                        Some(other) => {
                            tracing::debug!(device_id, ?other, "stream message ignored");
                        }
                        None => {}
                    },
                }
            };
            tracing::info!(device_id, %reason, "stream channel closed");
            m_tx.send_replace(Mastership::Closed(reason));
        });

        let timeout = opts.arbitration_timeout;
        let first = tokio::time::timeout(timeout, m_rx.wait_for(|m| *m != Mastership::Pending))
            .await
            .map(|r| r.map(|m| m.clone()));
        match first {
            Err(_) => {
                reader.abort();
                return Err(Error::ArbitrationTimeout {
                    device_id,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            Ok(Err(_)) => {
                return Err(Error::StreamClosed {
                    device_id,
                    reason: "stream reader ended".to_string(),
                });
            }
            Ok(Ok(Mastership::Closed(reason))) => {
                return Err(Error::StreamClosed { device_id, reason });
            }
            Ok(Ok(_)) => {}
        }
        Ok(Session {
            client,
            opts,
            sender,
            mastership: m_rx,
            digests: Some(d_rx),
            reader,
        })
    }

    pub fn device_id(&self) -> u64 {
        self.opts.device_id
    }

    pub fn mastership(&self) -> Mastership {
        self.mastership.borrow().clone()
    }

    /// A receiver of mastership changes.
    pub fn watch_mastership(&self) -> watch::Receiver<Mastership> {
        self.mastership.clone()
    }

    /// The stream's sender, to acknowledge digests from another task.
    pub fn sender(&self) -> StreamSender {
        self.sender.clone()
    }

    /// The DigestLists the device streams (once; later calls get `None`).
    pub fn take_digests(&mut self) -> Option<mpsc::Receiver<p4::DigestList>> {
        self.digests.take()
    }

    /// Waits until this session is primary; fails when the stream closes.
    pub async fn wait_primary(&mut self) -> Result<()> {
        let device_id = self.opts.device_id;
        let m = self
            .mastership
            .wait_for(|m| matches!(m, Mastership::Primary | Mastership::Closed(_)))
            .await
            .map_err(|_| Error::StreamClosed {
                device_id,
                reason: "stream reader ended".to_string(),
            })?;
        match &*m {
            Mastership::Closed(reason) => Err(Error::StreamClosed {
                device_id,
                reason: reason.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn require_primary(&self) -> Result<()> {
        match &*self.mastership.borrow() {
            Mastership::Primary => Ok(()),
            Mastership::Closed(reason) => Err(Error::StreamClosed {
                device_id: self.opts.device_id,
                reason: reason.clone(),
            }),
            _ => Err(Error::NotPrimary {
                device_id: self.opts.device_id,
            }),
        }
    }

    fn role(&self) -> String {
        self.opts.role.clone().unwrap_or_default()
    }

    /// The running pipeline's cookie, `None` when the device has no pipeline
    /// (or one set without a cookie).
    pub async fn pipeline_cookie(&mut self) -> Result<Option<u64>> {
        use p4::get_forwarding_pipeline_config_request::ResponseType;
        let req = p4::GetForwardingPipelineConfigRequest {
            device_id: self.opts.device_id,
            response_type: ResponseType::CookieOnly as i32,
        };
        match self.client.get_forwarding_pipeline_config(req).await {
            Ok(resp) => Ok(resp
                .into_inner()
                .config
                .and_then(|c| c.cookie)
                .map(|c| c.cookie)),
            // No pipeline yet: bmv2 answers FAILED_PRECONDITION, others NOT_FOUND.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::NotFound
                ) =>
            {
                Ok(None)
            }
            Err(s) => Err(Error::rpc("GetForwardingPipelineConfig", &s)),
        }
    }

    /// Pushes the pipeline with VERIFY_AND_COMMIT (which clears the
    /// forwarding state).
    pub async fn set_pipeline(&mut self, pipeline: &Pipeline) -> Result<()> {
        use p4::set_forwarding_pipeline_config_request::Action;
        self.require_primary()?;
        let req = p4::SetForwardingPipelineConfigRequest {
            device_id: self.opts.device_id,
            role: self.role(),
            election_id: Some(uint128(self.opts.election_id)),
            action: Action::VerifyAndCommit as i32,
            config: Some(p4::ForwardingPipelineConfig {
                p4info: Some(pipeline.p4info.clone()),
                p4_device_config: pipeline.device_config.clone(),
                cookie: Some(p4::forwarding_pipeline_config::Cookie {
                    cookie: pipeline.cookie,
                }),
            }),
            ..Default::default()
        };
        self.client
            .set_forwarding_pipeline_config(req)
            .await
            .map_err(|s| Error::rpc("SetForwardingPipelineConfig", &s))?;
        Ok(())
    }

    /// Pushes the pipeline unless the device already runs one with the same
    /// cookie.
    pub async fn ensure_pipeline(&mut self, pipeline: &Pipeline) -> Result<PipelineAction> {
        self.require_primary()?;
        if self.pipeline_cookie().await? == Some(pipeline.cookie) {
            return Ok(PipelineAction::Skipped);
        }
        self.set_pipeline(pipeline).await?;
        Ok(PipelineAction::Pushed)
    }

    /// Reads the given entities (wildcards allowed) and returns them all.
    pub async fn read(&mut self, entities: Vec<p4::Entity>) -> Result<Vec<p4::Entity>> {
        let req = p4::ReadRequest {
            device_id: self.opts.device_id,
            role: self.role(),
            entities,
        };
        let mut stream = self
            .client
            .read(req)
            .await
            .map_err(|s| Error::rpc("Read", &s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(resp) = stream.next().await {
            out.extend(resp.map_err(|s| Error::rpc("Read", &s))?.entities);
        }
        Ok(out)
    }

    /// Reads every entry of the given tables (one wildcard per table).
    pub async fn read_table_entries(&mut self, tables: &[u32]) -> Result<Vec<p4::TableEntry>> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let entities = tables
            .iter()
            .map(|&table_id| p4::Entity {
                entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry {
                    table_id,
                    ..Default::default()
                })),
            })
            .collect();
        Ok(self
            .read(entities)
            .await?
            .into_iter()
            .filter_map(|e| match e.entity {
                Some(p4::entity::Entity::TableEntry(t)) => Some(t),
                _ => None,
            })
            .collect())
    }

    /// One Write RPC (CONTINUE_ON_ERROR).
    pub async fn write(&mut self, updates: Vec<p4::Update>) -> Result<(), tonic::Status> {
        let req = p4::WriteRequest {
            device_id: self.opts.device_id,
            role: self.role(),
            election_id: Some(uint128(self.opts.election_id)),
            updates,
            atomicity: p4::write_request::Atomicity::ContinueOnError as i32,
            ..Default::default()
        };
        self.client.write(req).await.map(|_| ())
    }

    /// Writes `updates` in batches of `batch_size`; returns how many batches
    /// were sent and the failed updates by name. Every batch is attempted.
    pub async fn write_batched(
        &mut self,
        info: &P4InfoIndex,
        updates: Vec<p4::Update>,
        batch_size: usize,
    ) -> Result<(usize, Vec<UpdateError>)> {
        self.require_primary()?;
        let batch_size = batch_size.max(1);
        let mut errors = Vec::new();
        let mut batches = 0;
        let mut rest = updates;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(batch_size));
            let batch = std::mem::replace(&mut rest, tail);
            batches += 1;
            // Kept for error reporting only when the write fails; cloning
            // every batch up front would double the cost of large installs.
            let described = batch.clone();
            if let Err(status) = self.write(batch).await {
                if matches!(status.code(), tonic::Code::PermissionDenied) {
                    // Lost primacy mid-write: the caller must wait and redo.
                    return Err(Error::NotPrimary {
                        device_id: self.opts.device_id,
                    });
                }
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Cancelled
                ) {
                    return Err(Error::rpc("Write", &status));
                }
                errors.extend(describe_failures(info, &described, &status));
            }
        }
        Ok((batches, errors))
    }

    /// Reads back the program's writable tables and returns what would
    /// still have to be written to reach `desired`: an empty plan means the
    /// device holds exactly the compiled entries (a rollout's verification
    /// step). Writes nothing; works as a backup too.
    pub async fn verify(&mut self, info: &P4InfoIndex, desired: &[p4::TableEntry]) -> Result<Plan> {
        let tables: Vec<u32> = info.writable_tables().collect();
        let installed = self.read_table_entries(&tables).await?;
        // Default entries are not part of a wildcard read: compare only the
        // match entries.
        let desired: Vec<p4::TableEntry> = desired
            .iter()
            .filter(|e| !e.is_default_action)
            .cloned()
            .collect();
        Ok(diff(&installed, &desired))
    }

    /// Reads what the device has in the program's writable tables, diffs it
    /// against `desired`, and writes only the difference.
    pub async fn reconcile(
        &mut self,
        info: &P4InfoIndex,
        desired: &[p4::TableEntry],
        batch_size: usize,
    ) -> Result<ReconcileReport> {
        self.require_primary()?;
        let tables: Vec<u32> = info.writable_tables().collect();
        let mut installed = self.read_table_entries(&tables).await?;
        let read = installed.len();
        // Default entries are not returned by wildcard reads: read those
        // the compiled state sets, so an unchanged one is not rewritten.
        let defaults: Vec<p4::Entity> = desired
            .iter()
            .filter(|e| e.is_default_action)
            .map(|e| p4::Entity {
                entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry {
                    table_id: e.table_id,
                    is_default_action: true,
                    ..Default::default()
                })),
            })
            .collect();
        if !defaults.is_empty() {
            match self.read(defaults).await {
                Ok(found) => installed.extend(found.into_iter().filter_map(|e| match e.entity {
                    Some(p4::entity::Entity::TableEntry(t)) => Some(t),
                    _ => None,
                })),
                Err(e) => {
                    tracing::debug!(error = %e, "default entries not readable, rewriting them")
                }
            }
        }
        let plan = diff(&installed, desired);
        self.apply(info, plan, read, batch_size).await
    }

    /// Writes a plan computed elsewhere (e.g. shown first with `--dry-run`).
    pub async fn apply(
        &mut self,
        info: &P4InfoIndex,
        plan: Plan,
        read: usize,
        batch_size: usize,
    ) -> Result<ReconcileReport> {
        let (deletes, modifies, inserts) =
            (plan.delete.len(), plan.modify.len(), plan.insert.len());
        let unchanged = plan.unchanged;
        let (batches, errors) = self
            .write_batched(info, plan.into_updates(), batch_size)
            .await?;
        let failed = |op: &str| errors.iter().filter(|e| e.op == op).count();
        Ok(ReconcileReport {
            read,
            inserted: inserts - failed("INSERT"),
            modified: modifies - failed("MODIFY"),
            deleted: deletes - failed("DELETE"),
            unchanged,
            batches,
            errors,
        })
    }

    /// Configures a digest (INSERT, or MODIFY when it is already configured).
    pub async fn configure_digest(
        &mut self,
        digest_id: u32,
        config: p4::digest_entry::Config,
    ) -> Result<()> {
        self.require_primary()?;
        let entry = p4::Entity {
            entity: Some(p4::entity::Entity::DigestEntry(p4::DigestEntry {
                digest_id,
                config: Some(config),
            })),
        };
        let update = |ty: p4::update::Type| p4::Update {
            r#type: ty as i32,
            entity: Some(entry.clone()),
        };
        match self.write(vec![update(p4::update::Type::Insert)]).await {
            Ok(()) => Ok(()),
            Err(_) => self
                .write(vec![update(p4::update::Type::Modify)])
                .await
                .map_err(|s| Error::rpc("Write(DigestEntry)", &s)),
        }
    }

    /// The P4Runtime API version the server implements.
    pub async fn capabilities(&mut self) -> Result<String> {
        Ok(self
            .client
            .capabilities(p4::CapabilitiesRequest {})
            .await
            .map_err(|s| Error::rpc("Capabilities", &s))?
            .into_inner()
            .p4runtime_api_version)
    }
}
