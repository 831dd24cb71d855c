//! Collector configuration: a TOML file (every key optional) and flags that
//! override it. Keys are documented in `docs/collector.md`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// OTLP/gRPC receiver.
    pub otlp_grpc_listen: SocketAddr,
    /// OTLP/HTTP (protobuf) receiver; `POST /v1/traces`.
    pub otlp_http_listen: SocketAddr,
    /// IOAM trace API (`ioam_api.IOAMService` and `clt_api.CltIOAMService`).
    pub ioam_listen: SocketAddr,
    /// Prometheus metrics, `GET /metrics`.
    pub metrics_listen: SocketAddr,
    /// OTLP/gRPC endpoint to export to (e.g. `http://jaeger:4317`). None:
    /// keep the spans in the embedded store.
    pub downstream: Option<String>,
    /// The embedded store's file.
    pub store_path: PathBuf,
    /// Spans kept in the embedded store; the oldest go first.
    pub store_max_spans: usize,
    /// The embedded store's commits are durable (fsync) at most this often;
    /// a crash loses at most this much of the newest spans. 0: every commit.
    pub store_sync_ms: u64,
    /// How long a span or a trace waits for the other.
    pub max_delay_ms: u64,
    /// How long a matched span waits for more of its packets.
    pub linger_ms: u64,
    /// Bounds of the join's memory.
    pub max_pending_items: usize,
    pub max_pending_bytes: usize,
    /// Bounds of the export buffer (spans waiting for the downstream).
    pub export_queue_max_spans: usize,
    pub export_queue_max_bytes: usize,
    pub export_batch_size: usize,
    /// A batch goes out when `export_batch_size` spans wait or this long
    /// after the oldest of them was queued.
    pub export_delay_ms: u64,
    pub export_timeout_ms: u64,
    /// Largest gRPC message accepted (RESOURCE_EXHAUSTED beyond).
    pub max_message_bytes: usize,
    /// PEM certificate and key: TLS on the gRPC listeners when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `service.name` of the network spans the collector makes.
    pub network_service_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            otlp_grpc_listen: ([0, 0, 0, 0], 4317).into(),
            otlp_http_listen: ([0, 0, 0, 0], 4318).into(),
            ioam_listen: ([0, 0, 0, 0], 7123).into(),
            metrics_listen: ([0, 0, 0, 0], 9464).into(),
            downstream: None,
            store_path: PathBuf::from("clt-collector.redb"),
            store_max_spans: 100_000,
            store_sync_ms: 5_000,
            max_delay_ms: 10_000,
            linger_ms: 1_000,
            max_pending_items: 1_000_000,
            max_pending_bytes: 512 << 20,
            export_queue_max_spans: 100_000,
            export_queue_max_bytes: 256 << 20,
            export_batch_size: 512,
            export_delay_ms: 500,
            export_timeout_ms: 5_000,
            max_message_bytes: 4 << 20,
            tls_cert: None,
            tls_key: None,
            network_service_name: "clt-network".into(),
        }
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, Error> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    pub fn load(path: &std::path::Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Config::from_toml(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_toml_keeps_defaults() {
        let c =
            Config::from_toml("downstream = \"http://[::1]:4317\"\nmax_delay_ms = 5\n").unwrap();
        assert_eq!(c.downstream.as_deref(), Some("http://[::1]:4317"));
        assert_eq!(c.max_delay_ms, 5);
        assert_eq!(c.otlp_grpc_listen.port(), 4317);
        assert!(Config::from_toml("no_such_key = 1").is_err());
    }
}
