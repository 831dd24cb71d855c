//! `clt-linux`: applies `cltc` Linux plans over netlink, and the CLT socket API.
//!
//! # Applying a plan
//!
//! A [`LinuxPlan`](cltc::artifact::linux::LinuxPlan) states what a node must
//! look like: sysctls, interface addresses, permanent neighbours, IOAM
//! schemas and namespaces (generic netlink family `IOAM6`) and routes.
//! [`plan::diff`] reads the running kernel back and lists the [`Change`]s that
//! would make it match; [`plan::apply`] makes exactly those changes, in order,
//! and when one fails undoes the ones already made, in reverse, and reports
//! which step failed and why. A second apply finds nothing to do and says so.
//! [`plan::teardown`] removes what the plan adds. [`netns::run_in`] runs any
//! of these on a dedicated thread inside a named network namespace, so that
//! both the netlink sockets and `/proc/sys` refer to that namespace.
//!
//! # IOAM insertion: kernel routes or the socket API
//!
//! An encapsulating node inserts the IOAM trace either with a kernel route
//! (`ip -6 route ... encap ioam6`, which needs a kernel built with
//! `CONFIG_IPV6_IOAM6_LWTUNNEL`) or from the application, with the CLT socket
//! API ([`socket::enable`]), which needs only the IOAM core that every
//! transit node uses anyway. [`Insertion`] chooses:
//!
//! * `route`: install the plan's routes with their ioam6 encapsulation. On a
//!   kernel without it, the route step fails with a message naming
//!   `CONFIG_IPV6_IOAM6_LWTUNNEL`, after the steps before it are rolled back.
//! * `socket`: install the same routes without the encapsulation, and leave
//!   insertion to applications that call [`socket::enable`] with the plan's
//!   [`EncapPolicy`](cltc::artifact::linux::EncapPolicy).
//! * `auto` (the default): probe the kernel (a request that can never install
//!   anything, see [`nl::Netlink::probe_ioam6_lwtunnel`]) and use `route` when
//!   it supports the encapsulation, else `socket`, with a one-line notice.
//!
//! # The CLT socket API
//!
//! [`socket::enable`] is the paper's `CLT.enable(sockfd, trace_id, span_id)`:
//! it sets `IPV6_HOPOPTS` on any socket (`AsFd`: std or tokio, TCP or UDP)
//! to a Hop-by-Hop header holding the pre-allocated IOAM trace of the policy
//! and the CLT option with the request's ids, with the sender's own node
//! entry already filled as a kernel encapsulating node fills it.
//! [`socket::disable`] removes it.
//!
//! # What this crate does not do
//!
//! It creates no interfaces or namespaces (the operator or the test does),
//! never deletes what the plan does not name, and never touches routes it
//! did not install (they carry `rtm_protocol` [`nl::route::RTPROT_CLT`]) on
//! teardown.
#![deny(unsafe_code)]

pub mod nl;
pub mod plan;
pub mod socket;
pub mod sysctl;

pub mod netns;
// The only module with `unsafe` (socket options and setns).
#[allow(unsafe_code)]
mod sys;

pub use plan::{Change, Insertion, Options, Report};
/// Waits until a socket is readable; for the agent's sockets, so that their
/// `poll` is written once.
pub use sys::poll_readable;

use std::io;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel answered a request with an error.
    #[error("{op}: {error}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Kernel {
        op: String,
        error: io::Error,
        /// The kernel's extended-ack message, if it sent one.
        detail: Option<String>,
    },
    /// The netlink transport failed (socket, framing, sequence).
    #[error("netlink: {0}")]
    Netlink(String),
    /// A message from the kernel did not parse.
    #[error("malformed netlink message: {0}")]
    Malformed(String),
    #[error("sysctl {key}: {error}")]
    Sysctl { key: String, error: io::Error },
    #[error("no interface named {0}")]
    NoSuchInterface(String),
    #[error("network namespace {name}: {error}")]
    Netns { name: String, error: io::Error },
    /// The kernel lacks a feature the plan needs.
    #[error("{0}")]
    Unsupported(String),
    /// The plan is inconsistent or cannot be expressed.
    #[error("invalid plan: {0}")]
    Plan(String),
    /// An apply or teardown step failed; the earlier steps were undone.
    #[error(
        "step {index} of {total} failed: {step}: {cause}; rolled back {rolled_back} earlier step(s){}",
        if rollback_errors.is_empty() { String::new() } else { format!(", rollback errors: {}", rollback_errors.join("; ")) }
    )]
    StepFailed {
        index: usize,
        total: usize,
        step: String,
        cause: Box<Error>,
        rolled_back: usize,
        rollback_errors: Vec<String>,
    },
    /// A socket option or system call of the socket API failed.
    #[error("{op}: {error}")]
    Socket { op: &'static str, error: io::Error },
    /// The IOAM/CLT header could not be built.
    #[error("building the hop-by-hop header: {0}")]
    Wire(clt_wire::Error),
}

// Display carries each cause's text, so no variant reports a `source()`:
// error chains (anyhow) print every message once.

impl From<clt_wire::Error> for Error {
    fn from(e: clt_wire::Error) -> Error {
        Error::Wire(e)
    }
}
