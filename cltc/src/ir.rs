//! The fabric IR: everything a backend needs, resolved and checked.
//!
//! Invariants (established by lowering from the checked model, relied on by
//! every backend):
//! - every index (`DomainIdx`, `NodeIdx`, `PolicyIdx`, interface indices) is in
//!   range; every policy has a non-empty path whose first hop is `from` and last
//!   hop is `to`; every node on a path belongs to the policy's domain;
//! - `Domain::prealloc_len` fits RFC 9486's 244-byte limit and the path MTUs;
//! - vectors are sorted in declaration order, so output is deterministic.
//!
//! Nothing here names a backend: no P4 table, no netlink attribute, no shell.

use clt_wire::TraceType;
use ipnet::Ipv6Net;
use serde::Serialize;
use std::net::Ipv6Addr;

/// A 48-bit Ethernet address.
pub type Mac = [u8; 6];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DomainIdx(pub u32);
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeIdx(pub u32);
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PolicyIdx(pub u32);

/// The whole compiled fabric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fabric {
    pub domains: Vec<Domain>,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    pub policies: Vec<Policy>,
}

/// One IOAM domain (RFC 9197): a namespace and what every node records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Domain {
    pub name: String,
    /// IOAM-Namespace-ID; 0xFFFF is the default namespace.
    pub namespace: u16,
    pub trace_type: TraceType,
    /// NodeLen in 4-byte units (the fixed fields; opaque state excluded).
    pub node_len: u8,
    /// Whether packets also carry the CLT trace-context option.
    pub context_w3c: bool,
    /// Room pre-allocated for this many nodes.
    pub max_hops: u8,
    /// The opaque state snapshot schema, when the trace has `opaque_state`.
    pub schema: Option<Schema>,
    /// Bytes of node data pre-allocated in the trace option (a multiple of 4,
    /// at most 244): `max_hops * per_hop_len`.
    pub prealloc_len: u8,
    /// Bytes one node writes: `node_len * 4`, plus the opaque state snapshot.
    pub per_hop_len: u8,
    /// Where agents and controllers report traces (`host:port`).
    pub collector: String,
    /// Namespace-specific data nodes write for `namespace_data`, if declared
    /// (`namespace N data D`).
    pub namespace_data: Option<u32>,
    /// Wide namespace-specific data for `namespace_data_wide`, if declared
    /// (`namespace N wide D`).
    pub namespace_data_wide: Option<u64>,
}

/// An opaque state snapshot schema (RFC 9197 section 4.4.2.13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schema {
    /// 24-bit schema id.
    pub id: u32,
    /// The snapshot's data, padded by the compiler to a multiple of 4 bytes.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Linux,
    Bmv2,
    Tofino,
}

/// One node of the fabric with everything it must be configured with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    /// 24-bit IOAM node id (`hop_limit_node_id`).
    pub id: u32,
    /// 56-bit IOAM node id (`hop_limit_node_id_wide`).
    pub id_wide: u64,
    /// Linux interfaces or switch ports, in declaration order.
    pub interfaces: Vec<Interface>,
    /// For bmv2/tofino: where its P4Runtime server is.
    pub p4runtime: Option<P4Runtime>,
    /// The domains this node takes part in (it appears on a policy path).
    pub domains: Vec<DomainIdx>,
    /// IPv6 routes, compacted: every fabric prefix that is not on-link is
    /// forwarded along a shortest path over the links (ties go to the
    /// neighbour declared first). The default route (`::/0`, first when
    /// present) goes to the next hop most prefixes use; the other routes are
    /// the prefixes with another next hop, in declaration order. Following
    /// defaults from any node never loops. See docs/policy-language.md.
    pub routes: Vec<Route>,
    /// What the node does for each policy whose path crosses it.
    pub roles: Vec<RoleAssignment>,
    /// Whether other nodes' routes go through this node (a Linux node then
    /// needs IPv6 forwarding enabled).
    pub forwards: bool,
}

/// A Linux interface or a switch data-plane port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interface {
    /// The Linux interface name (`eth0`) or the port number as text (`1`).
    pub name: String,
    /// The data-plane port number, for switches.
    pub port: Option<u32>,
    /// The IOAM interface id (16-bit; also used zero-extended as the wide id).
    pub if_id: u16,
    /// The interface address and prefix (Linux only).
    pub address: Option<Ipv6Net>,
    pub mac: Option<Mac>,
    /// The other end of this interface's link, if it has one.
    pub peer: Option<Endpoint>,
    /// Link MTU in bytes (1500 unless declared otherwise).
    pub mtu: u16,
}

/// An interface of a node: `node.interfaces[iface]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub node: NodeIdx,
    pub iface: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct P4Runtime {
    /// `host:port` of the P4Runtime gRPC server.
    pub address: String,
    pub device_id: u64,
}

/// A link between two interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Link {
    pub a: Endpoint,
    pub b: Endpoint,
}

/// An IPv6 route on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub prefix: Ipv6Net,
    /// Index into the node's interfaces: where packets leave.
    pub iface: u32,
    pub next_hop: NextHop,
}

/// Where a routed packet goes on the egress link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextHop {
    /// The neighbour's address, when it has one: its interface address for a
    /// Linux neighbour, else the link-local address derived (EUI-64) from its MAC.
    pub address: Option<Ipv6Addr>,
    /// The neighbour's MAC, when declared (switches rewrite to it).
    pub mac: Option<Mac>,
    /// The neighbour node.
    pub node: NodeIdx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// IOAM encapsulating node: inserts the trace (and its own entry).
    Encap,
    /// IOAM transit node: fills its entry.
    Transit,
    /// IOAM decapsulating node: fills its entry, removes the header and
    /// reports the trace.
    Decap,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleAssignment {
    pub policy: PolicyIdx,
    pub role: Role,
    /// Interface the policy's packets arrive on (none at `from`).
    pub ingress: Option<u32>,
    /// Interface they leave on (none at `to`).
    pub egress: Option<u32>,
}

/// Which traffic carries IOAM, between which edges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub domain: DomainIdx,
    pub from: NodeIdx,
    pub to: NodeIdx,
    pub flow: FlowMatch,
    pub sample: Sample,
    /// The nodes from `from` to `to`, in order, with their interfaces.
    pub path: Vec<Hop>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowMatch {
    pub dst: Ipv6Net,
    pub src: Option<Ipv6Net>,
    /// IP protocol number (6 tcp, 17 udp, 58 icmpv6).
    pub proto: Option<u8>,
    pub dport: Option<u16>,
    pub sport: Option<u16>,
}

/// Insert IOAM in `k` of every `n` matching packets (`1 <= k <= n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub k: u32,
    pub n: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub node: NodeIdx,
    pub ingress: Option<u32>,
    pub egress: Option<u32>,
}

impl Fabric {
    pub fn node(&self, idx: NodeIdx) -> &Node {
        &self.nodes[idx.0 as usize]
    }

    pub fn domain(&self, idx: DomainIdx) -> &Domain {
        &self.domains[idx.0 as usize]
    }

    pub fn policy(&self, idx: PolicyIdx) -> &Policy {
        &self.policies[idx.0 as usize]
    }

    pub fn interface(&self, at: Endpoint) -> &Interface {
        &self.node(at.node).interfaces[at.iface as usize]
    }
}
