//! The CLT collector and IOAM agent.
//!
//! The collector ([`server::start`]) receives application spans over OTLP
//! (gRPC and HTTP/protobuf) and IOAM traces over the IOAM gRPC API, joins them
//! by (trace id, span id) in [`join::Joiner`], and exports the spans plus one
//! network span per enriched span ([`enrich`]) over OTLP, or keeps them in an
//! embedded store ([`store`]). The agent ([`agent`]) captures IOAM packets at
//! the decapsulating node and reports them.

pub mod agent;
pub mod cli;
pub mod config;
pub mod enrich;
pub mod export;
pub mod join;
pub mod metrics;
pub mod model;
pub mod server;
pub mod store;

pub use config::Config;
pub use join::{JoinConfig, JoinStats, Joiner};
pub use model::{Flow, IoamReport, OutSpan, SpanKey};

/// The collector's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(String),
    #[error("store: {0}")]
    Store(String),
    #[error("export: {0}")]
    Export(String),
    #[error("capture: {0}")]
    Capture(String),
    #[error("ioam6 trace events: {0}")]
    Events(String),
}

/// Now, in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
