//! Prometheus metrics and the small HTTP endpoint serving them.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabel {
    pub device: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `failed`.
    pub result: String,
}

/// The controller's metrics, labelled by device name.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub connected: Family<DeviceLabel, Gauge>,
    pub primary: Family<DeviceLabel, Gauge>,
    pub connects: Family<DeviceLabel, Counter>,
    pub pipeline_pushes: Family<DeviceLabel, Counter>,
    pub updates_written: Family<DeviceLabel, Counter>,
    pub update_errors: Family<DeviceLabel, Counter>,
    pub digest_lists: Family<DeviceLabel, Counter>,
    pub digests_malformed: Family<DeviceLabel, Counter>,
    pub traces_forwarded: Counter,
    pub traces_dropped: Counter,
    pub collector_errors: Counter,
    /// `[rollout]`: rollouts finished, by result.
    pub rollouts: Family<ResultLabel, Counter>,
    /// `[rollout]`: steps made and verified.
    pub rollout_steps: Counter,
    /// `[rollout]`: steps undone by a rollback.
    pub rollout_steps_undone: Counter,
    /// `[rollout]`: undos that failed (the fabric may be half-configured).
    pub rollout_undo_errors: Counter,
    /// `[rollout]`: 1 while the last rollout failed (the previous fabric is
    /// running), 0 once one succeeds.
    pub rollout_failing: Gauge,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("clt_controller");
        r.register(
            "device_connected",
            "1 while the stream channel is up",
            self.connected.clone(),
        );
        r.register(
            "device_primary",
            "1 while this controller is the primary",
            self.primary.clone(),
        );
        r.register(
            "device_connects",
            "Stream channels opened",
            self.connects.clone(),
        );
        r.register(
            "pipeline_pushes",
            "Pipelines pushed with VERIFY_AND_COMMIT",
            self.pipeline_pushes.clone(),
        );
        r.register(
            "updates_written",
            "Table updates the device accepted",
            self.updates_written.clone(),
        );
        r.register(
            "update_errors",
            "Table updates the device rejected",
            self.update_errors.clone(),
        );
        r.register(
            "digest_lists",
            "Digest lists received and acknowledged",
            self.digest_lists.clone(),
        );
        r.register(
            "digests_malformed",
            "Digests that could not be decoded",
            self.digests_malformed.clone(),
        );
        r.register(
            "traces_forwarded",
            "Traces the collector accepted",
            self.traces_forwarded.clone(),
        );
        r.register(
            "traces_dropped",
            "Traces dropped because the forward buffer was full",
            self.traces_dropped.clone(),
        );
        r.register(
            "collector_errors",
            "Failed reports to the collector",
            self.collector_errors.clone(),
        );
        r.register(
            "rollouts",
            "Rollouts of the [rollout] fabric, by result (ok, failed)",
            self.rollouts.clone(),
        );
        r.register(
            "rollout_steps",
            "Rollout steps made and verified",
            self.rollout_steps.clone(),
        );
        r.register(
            "rollout_steps_undone",
            "Rollout steps undone by a rollback",
            self.rollout_steps_undone.clone(),
        );
        r.register(
            "rollout_undo_errors",
            "Rollback undos that failed",
            self.rollout_undo_errors.clone(),
        );
        r.register(
            "rollout_failing",
            "1 while the last rollout failed and the previous fabric runs",
            self.rollout_failing.clone(),
        );
    }

    pub fn result(ok: bool) -> ResultLabel {
        ResultLabel {
            result: if ok { "ok" } else { "failed" }.to_string(),
        }
    }

    pub fn device(name: &str) -> DeviceLabel {
        DeviceLabel {
            device: name.to_string(),
        }
    }
}

/// Serves `GET /metrics` on `addr` until the task is dropped. Returns the
/// bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                let content_type =
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        Err(_) => {
                            body = "encoding failed\n".to_string();
                            "text/plain"
                        }
                    };
                ([(axum::http::header::CONTENT_TYPE, content_type)], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Io {
            path: addr.to_string().into(),
            source: e,
        })?;
    let bound = listener.local_addr().map_err(|e| Error::Io {
        path: addr.to_string().into(),
        source: e,
    })?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok((bound, task))
}
