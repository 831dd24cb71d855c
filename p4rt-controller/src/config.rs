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
//! resync_secs = 60                # reconcile again while primary; 0: never
//! p4info = "out/login/r1.p4info.txtpb"
//! entries = "out/login/r1.entries.txtpb"
//! device_config = "out/login/r1.json"
//! program = "out/login/r1.p4"
//! [device.tls]                    # optional; cert + key for mutual TLS
//! ca = "ca.pem"
//!
//! [[device]]                      # or: files, address and id from cltc
//! name = "router"
//! compiled = "out/login"          # DIR/nodes/router/{p4info,entries}.txtpb,
//!                                 # program.p4 and program.json (p4c-bm2-ss)
//!
//! [rollout]                       # optional: keep a whole fabric rolled out
//! compiled = "out/fabric"         # watched; a new version is rolled out
//! netns = { web = "ns-web" }      # Linux nodes in network namespaces
//! insertion = "auto"              # route, socket or auto
//! poll_secs = 2                   # how often `compiled` is checked
//! state_dir = "/var/lib/clt-controller"  # the fabric last rolled out
//! agents = { db = "[2001:db8:ff::21]:7443" }  # Linux nodes elsewhere
//! [rollout.agent_tls]             # required with agents
//! ca = "agents-ca.pem"
//! cert = "controller.pem"
//! key = "controller.key"
//! ```
//!
//! `docs/rollout.md` describes what the daemon does with `[rollout]`.
//!
//! Relative paths are relative to the configuration file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::connect::TlsOptions;
use crate::error::{Error, Result};
use crate::inputs::InputPaths;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub collector: Option<CollectorConfig>,
    pub metrics: Option<MetricsConfig>,
    pub devices: Vec<DeviceConfig>,
    pub rollout: Option<RolloutConfig>,
}

/// `[rollout]`: a compiled fabric the daemon keeps rolled out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// The `cltc compile` output directory to watch (relative to the
    /// configuration file's directory).
    pub compiled: PathBuf,
    /// Linux node name -> network namespace (absent: the daemon's own).
    #[serde(default)]
    pub netns: std::collections::BTreeMap<String, String>,
    /// Linux IOAM insertion: `route`, `socket` or `auto`.
    #[serde(default = "default_insertion")]
    pub insertion: String,
    /// Seconds between two checks of `compiled`.
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
    /// Where the fabric last rolled out is kept (`current/`), so that a
    /// restarted daemon rolls out only the difference. Default: a directory
    /// of its own under the system's temporary directory, removed on exit.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Linux nodes on other machines: node -> its `clt-node-agent`
    /// (`host:port`).
    #[serde(default)]
    pub agents: std::collections::BTreeMap<String, String>,
    /// TLS to the agents (required with `agents`): the CA that signed
    /// their certificates, the daemon's client certificate and key.
    #[serde(default)]
    pub agent_tls: Option<TlsOptions>,
}

fn default_insertion() -> String {
    "auto".to_string()
}

fn default_poll_secs() -> u64 {
    2
}

/// A device as written in the file: either explicit paths, or `compiled`
/// (a `cltc compile` output directory) from which the node's files, address
/// and device id default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    collector: Option<CollectorConfig>,
    #[serde(default)]
    metrics: Option<MetricsConfig>,
    #[serde(rename = "device", default)]
    devices: Vec<RawDevice>,
    #[serde(default)]
    rollout: Option<RolloutConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    device_id: Option<u64>,
    #[serde(default = "default_election_id")]
    election_id: u64,
    #[serde(default)]
    role: Option<String>,
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    #[serde(default)]
    compiled: Option<PathBuf>,
    #[serde(default)]
    p4info: Option<PathBuf>,
    #[serde(default)]
    entries: Option<PathBuf>,
    #[serde(default)]
    device_config: Option<PathBuf>,
    #[serde(default)]
    program: Option<PathBuf>,
    #[serde(default)]
    tls: Option<TlsOptions>,
    #[serde(default)]
    digest: DigestConfig,
    #[serde(default = "default_resync_secs")]
    resync_secs: u64,
}

fn default_resync_secs() -> u64 {
    60
}

/// The part of `cltc compile`'s `manifest.json` the controller reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    pub nodes: Vec<ManifestNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManifestNode {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub p4runtime: Option<ManifestP4Runtime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ManifestP4Runtime {
    pub address: String,
    pub device_id: u64,
}

/// The file name, beside `program.p4`, where a P4 node's device config is
/// expected when the configuration does not name one (for bmv2:
/// `p4c-bm2-ss -o program.json program.p4`).
pub const DEVICE_CONFIG_FILE: &str = "program.json";

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// The P4 nodes (bmv2 and tofino).
    pub fn p4_nodes(&self) -> impl Iterator<Item = &ManifestNode> {
        self.nodes
            .iter()
            .filter(|n| n.kind == "bmv2" || n.kind == "tofino")
    }
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

/// One device, resolved: every path absolute or relative to the working
/// directory, address and device id known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub name: String,
    pub address: String,
    pub device_id: u64,
    pub election_id: u64,
    pub role: Option<String>,
    pub batch_size: usize,
    pub inputs: InputPaths,
    pub tls: Option<TlsOptions>,
    pub digest: DigestConfig,
    /// Seconds between periodic reconciles while primary; 0 disables.
    pub resync_secs: u64,
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

fn resolve(raw: RawDevice, base: &Path) -> Result<DeviceConfig> {
    let abs = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
    let name = raw.name;
    let compiled = raw.compiled.map(abs);
    let (node_dir, from_manifest) = match &compiled {
        Some(dir) => {
            let manifest = Manifest::load(dir)?;
            let node = manifest
                .p4_nodes()
                .find(|n| n.name == name)
                .ok_or_else(|| {
                    Error::Config(format!("{}: no P4 node named {name}", dir.display()))
                })?;
            (Some(dir.join("nodes").join(&name)), node.p4runtime.clone())
        }
        None => (None, None),
    };
    let path = |given: Option<PathBuf>, file: &str| -> Result<PathBuf> {
        match (given, &node_dir) {
            (Some(p), _) => Ok(abs(p)),
            (None, Some(dir)) => Ok(dir.join(file)),
            (None, None) => Err(Error::Config(format!(
                "device {name}: no {} (give it, or `compiled`)",
                file.split('.').next().unwrap_or(file)
            ))),
        }
    };
    let inputs = InputPaths {
        p4info: path(raw.p4info, "p4info.txtpb")?,
        entries: path(raw.entries, "entries.txtpb")?,
        device_config: path(raw.device_config, DEVICE_CONFIG_FILE)?,
        program: match (raw.program, &node_dir) {
            (Some(p), _) => Some(abs(p)),
            (None, Some(dir)) => Some(dir.join("program.p4")),
            (None, None) => None,
        },
    };
    let address = raw
        .address
        .or_else(|| from_manifest.as_ref().map(|p| p.address.clone()))
        .ok_or_else(|| Error::Config(format!("device {name}: no address")))?;
    let device_id = raw
        .device_id
        .or_else(|| from_manifest.as_ref().map(|p| p.device_id))
        .ok_or_else(|| Error::Config(format!("device {name}: no device_id")))?;
    if raw.batch_size == 0 {
        return Err(Error::Config(format!(
            "device {name}: batch_size must be at least 1"
        )));
    }
    let tls = raw.tls.map(|mut t| {
        t.ca = abs(t.ca);
        t.cert = t.cert.map(abs);
        t.key = t.key.map(abs);
        t
    });
    Ok(DeviceConfig {
        name,
        address,
        device_id,
        election_id: raw.election_id,
        role: raw.role,
        batch_size: raw.batch_size,
        inputs,
        tls,
        digest: raw.digest,
        resync_secs: raw.resync_secs,
    })
}

impl Config {
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let mut names = std::collections::HashSet::new();
        let mut devices = Vec::with_capacity(raw.devices.len());
        for d in raw.devices {
            if !names.insert(d.name.clone()) {
                return Err(Error::Config(format!(
                    "device {} is declared twice",
                    d.name
                )));
            }
            devices.push(resolve(d, base)?);
        }
        let rollout = match raw.rollout {
            Some(mut r) => {
                if r.compiled.is_relative() {
                    r.compiled = base.join(&r.compiled);
                }
                if let Some(d) = &r.state_dir
                    && d.is_relative()
                {
                    r.state_dir = Some(base.join(d));
                }
                if r.poll_secs == 0 {
                    return Err(Error::Config(
                        "rollout: poll_secs must be at least 1".to_string(),
                    ));
                }
                r.insertion
                    .parse::<clt_linux::Insertion>()
                    .map_err(|e| Error::Config(format!("rollout: insertion: {e}")))?;
                if !r.agents.is_empty() && r.agent_tls.is_none() {
                    return Err(Error::Config(
                        "rollout: agents need [rollout.agent_tls] (agents are reached over TLS only)"
                            .to_string(),
                    ));
                }
                if let Some(t) = &mut r.agent_tls {
                    t.ca = base.join(&t.ca);
                    t.cert = t.cert.as_ref().map(|p| base.join(p));
                    t.key = t.key.as_ref().map(|p| base.join(p));
                }
                Some(r)
            }
            None => None,
        };
        Ok(Config {
            collector: raw.collector,
            metrics: raw.metrics,
            devices,
            rollout,
        })
    }

    /// Every P4 node of a `cltc compile` output, with the manifest's
    /// addresses and the default file names.
    pub fn from_compiled(dir: &Path) -> Result<Config> {
        let manifest = Manifest::load(dir)?;
        let devices = manifest
            .p4_nodes()
            .map(|n| {
                resolve(
                    RawDevice {
                        name: n.name.clone(),
                        address: None,
                        device_id: None,
                        election_id: default_election_id(),
                        role: None,
                        batch_size: default_batch_size(),
                        compiled: Some(dir.to_path_buf()),
                        p4info: None,
                        entries: None,
                        device_config: None,
                        program: None,
                        tls: None,
                        digest: DigestConfig::default(),
                        resync_secs: default_resync_secs(),
                    },
                    Path::new("."),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Config {
            collector: None,
            metrics: None,
            devices,
            rollout: None,
        })
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path.parent().unwrap_or(Path::new(".")))
    }
}
