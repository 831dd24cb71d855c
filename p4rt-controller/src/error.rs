//! The controller library's error type.

use std::path::PathBuf;

use crate::write::UpdateError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: invalid text format: {message}")]
    TextFormat { what: String, message: String },
    #[error("invalid p4info: {0}")]
    P4Info(String),
    #[error("invalid entry {entry}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid address {address}: {reason}")]
    Address { address: String, reason: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("{rpc} failed: {code:?}: {message}")]
    Rpc {
        rpc: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("stream channel to device {device_id} closed: {reason}")]
    StreamClosed { device_id: u64, reason: String },
    #[error("no arbitration answer from device {device_id} within {timeout_ms} ms")]
    ArbitrationTimeout { device_id: u64, timeout_ms: u64 },
    #[error("not primary for device {device_id}")]
    NotPrimary { device_id: u64 },
    #[error("{} of {total} updates failed: {}", errors.len(), summary(errors))]
    Write {
        total: usize,
        errors: Vec<UpdateError>,
    },
    #[error("invalid digest: {0}")]
    Digest(String),
}

fn summary(errors: &[UpdateError]) -> String {
    let mut s = errors
        .iter()
        .take(3)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > 3 {
        s.push_str(&format!("; and {} more", errors.len() - 3));
    }
    s
}

impl Error {
    pub(crate) fn rpc(rpc: &'static str, status: &tonic::Status) -> Error {
        Error::Rpc {
            rpc,
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
