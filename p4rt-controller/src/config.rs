//! The daemon's configuration file (TOML).
//!
//! ```toml
//! [collector]
//! address = "127.0.0.1:7123"      # IOAM API (IOAMService.Report)
//! buffer = 4096                   # traces held while the collector is away
//!
//! [metrics]
//! listen = "127.0.0.1:9464"       # GET /metrics
//!
//! [[device]]
//! name = "r1"
//! address = "127.0.0.1:9559"
//! device_id = 1
//! election_id = 1                 # default 1
//! role = "clt"                    # default: the default role
//! batch_size = 1000               # updates per Write
//! p4info = "out/login/r1.p4info.txtpb"
//! entries = "out/login/r1.entries.txtpb"
//! device_config = "out/login/r1.json"
//! program = "out/login/r1.p4"
//! [device.tls]                    # optional; cert + key for mutual TLS
//! ca = "ca.pem"
//! ```
//!
//! Relative paths are relative to the configuration file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::connect::TlsOptions;
use crate::error::{Error, Result};
use crate::inputs::InputPaths;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub collector: Option<CollectorConfig>,
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(rename = "device", default)]
    pub devices: Vec<DeviceConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    pub address: String,
    #[serde(default = "default_buffer")]
    pub buffer: usize,
}

fn default_buffer() -> usize {
    4096
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    #[serde(default = "default_max_timeout_ns")]
    pub max_timeout_ns: i64,
    #[serde(default = "default_max_list_size")]
    pub max_list_size: i32,
    #[serde(default = "default_ack_timeout_ns")]
    pub ack_timeout_ns: i64,
}

fn default_max_timeout_ns() -> i64 {
    1_000_000
}
fn default_max_list_size() -> i32 {
    64
}
fn default_ack_timeout_ns() -> i64 {
    1_000_000_000
}

impl Default for DigestConfig {
    fn default() -> DigestConfig {
        DigestConfig {
            max_timeout_ns: default_max_timeout_ns(),
            max_list_size: default_max_list_size(),
            ack_timeout_ns: default_ack_timeout_ns(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: String,
    pub address: String,
    pub device_id: u64,
    #[serde(default = "default_election_id")]
    pub election_id: u64,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(flatten)]
    pub inputs: InputPaths,
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    #[serde(default)]
    pub digest: DigestConfig,
}

fn default_election_id() -> u64 {
    1
}

/// Updates per Write: large enough to amortise the RPC, small enough that a
/// rejected batch's error list stays readable (see the write_routes bench).
pub const DEFAULT_BATCH_SIZE: usize = 1000;

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl Config {
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let mut names = std::collections::HashSet::new();
        for d in &mut config.devices {
            if !names.insert(d.name.clone()) {
                return Err(Error::Config(format!(
                    "device {} is declared twice",
                    d.name
                )));
            }
            if d.batch_size == 0 {
                return Err(Error::Config(format!(
                    "device {}: batch_size must be at least 1",
                    d.name
                )));
            }
            let fix = |p: &mut PathBuf| {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            };
            fix(&mut d.inputs.p4info);
            fix(&mut d.inputs.entries);
            fix(&mut d.inputs.device_config);
            if let Some(p) = &mut d.inputs.program {
                fix(p);
            }
            if let Some(tls) = &mut d.tls {
                fix(&mut tls.ca);
                if let Some(p) = &mut tls.cert {
                    fix(p);
                }
                if let Some(p) = &mut tls.key {
                    fix(p);
                }
            }
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path.parent().unwrap_or(Path::new(".")))
    }
}
