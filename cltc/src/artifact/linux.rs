//! The Linux configuration plan (`<node>.plan.json`), applied by `clt-linux`.
//!
//! The plan is declarative: it states what the node must look like, and
//! `clt-linux` computes the difference with the running kernel. Its JSON form is
//! stable and diff-friendly (fields in declaration order, vectors sorted).

use clt_wire::TraceType;
use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;

/// Everything one Linux node needs for the IOAM domains it takes part in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxPlan {
    /// The node's name in the `.clt` file.
    pub node: String,
    /// `sysctl` settings, e.g. `net.ipv6.ioam6_id`,
    /// `net.ipv6.conf.eth0.ioam6_enabled`, `net.ipv6.conf.all.forwarding`.
    pub sysctls: Vec<Sysctl>,
    /// Interface addresses and state.
    pub interfaces: Vec<InterfaceConfig>,
    /// Permanent neighbour entries for next hops that do not answer
    /// neighbour discovery (P4 switches).
    pub neighbors: Vec<Neighbor>,
    /// IOAM opaque-state schemas (`ip ioam schema add`).
    pub schemas: Vec<IoamSchema>,
    /// IOAM namespaces (`ip ioam namespace add`), with their schema binding.
    pub namespaces: Vec<IoamNamespace>,
    /// Routes, with ioam6 encapsulation where this node encapsulates.
    pub routes: Vec<RouteConfig>,
    /// The IOAM traces this node inserts itself, per policy: what the CLT
    /// socket API writes into `IPV6_HOPOPTS` (and what an encap route would).
    pub encap: Vec<EncapPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceConfig {
    pub name: String,
    pub address: Option<Ipv6Net>,
    /// `aa:bb:cc:dd:ee:ff`
    pub mac: Option<String>,
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    pub dev: String,
    pub address: Ipv6Addr,
    /// `aa:bb:cc:dd:ee:ff`
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoamSchema {
    /// 24-bit schema id.
    pub id: u32,
    /// Hex-encoded schema data (a multiple of 4 bytes).
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoamNamespace {
    pub id: u16,
    /// Namespace-specific data (`namespace_data`), if any.
    pub data: Option<u32>,
    /// Wide namespace-specific data (`namespace_data_wide`), if any.
    pub data_wide: Option<u64>,
    /// The schema bound to this namespace, if any.
    pub schema: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    pub dst: Ipv6Net,
    pub dev: String,
    pub via: Option<Ipv6Addr>,
    /// `encap ioam6 ...` on this route, where this node inserts IOAM.
    pub encap: Option<Ioam6Encap>,
}

/// The kernel's ioam6 lightweight tunnel (`ip -6 route ... encap ioam6`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ioam6Encap {
    pub mode: Ioam6Mode,
    /// Tunnel destination, for `encap` and `auto` modes.
    pub tundst: Option<Ipv6Addr>,
    pub trace_type: TraceType,
    pub namespace: u16,
    /// Pre-allocated node data in bytes (a multiple of 4, at most 244).
    pub size: u8,
    /// Insert in `freq_k` of every `freq_n` packets.
    pub freq_k: u32,
    pub freq_n: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ioam6Mode {
    Inline,
    Encap,
    Auto,
}

/// One policy this node encapsulates: the trace it inserts, for the route
/// encapsulation and for the CLT socket API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncapPolicy {
    pub policy: String,
    pub domain: String,
    pub namespace: u16,
    pub trace_type: TraceType,
    /// Pre-allocated node data in bytes.
    pub size: u8,
    /// Whether the CLT trace-context option goes with the trace.
    pub context_w3c: bool,
    pub dst: Ipv6Net,
    pub src: Option<Ipv6Net>,
    pub proto: Option<u8>,
    pub dport: Option<u16>,
    pub sport: Option<u16>,
    pub freq_k: u32,
    pub freq_n: u32,
    /// Where the agent at the decapsulating node reports.
    pub collector: String,
}
