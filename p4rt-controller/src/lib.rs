//! The CLT P4Runtime controller: installs compiled P4 programs and table
//! entries on switches, and forwards the switches' IOAM digests to the
//! collector.
//!
//! - [`session::Session`]: one P4Runtime session (StreamChannel arbitration,
//!   pipeline push skipped on a matching cookie, batched writes, reconcile).
//! - [`reconcile`]: the diff between installed and compiled entries.
//! - [`write`]: per-update errors of a Write, decoded and named.
//! - [`inputs`]: the compiled files (text-format P4Info and entries).
//! - [`digest`]: digest structs to IOAM traces; [`forward`]: to the collector.
//! - [`device::Device`] and [`daemon::Daemon`]: reconnecting managers.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod connect;
pub mod daemon;
pub mod device;
pub mod digest;
pub mod error;
pub mod forward;
pub mod inputs;
pub mod metrics;
pub mod node_agent;
pub mod p4info;
pub mod proto;
pub mod reconcile;
pub mod rollout;
pub mod session;
pub mod write;

pub use error::{Error, Result};
pub use p4info::P4InfoIndex;
pub use session::{Mastership, PipelineAction, ReconcileReport, Session, SessionOptions};
pub use write::UpdateError;
