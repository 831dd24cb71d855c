//! The rollout order: in which order to configure nodes so that no packet
//! carrying IOAM reaches a node that is not ready for it.
//!
//! Applying goes by stages: 1 forwarding (interfaces, routes, P4 programs; no
//! IOAM), 2 decap, 3 transit, 4 encap. A node appears in every stage where it
//! has something to do. Removal is the reverse: encap first, forwarding last.

use crate::ir::{Fabric, NodeKind, Role};
use crate::model::kind_name;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub apply: Vec<Stage>,
    pub remove: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub stage: u32,
    /// `forwarding`, `decap`, `transit` or `encap`.
    pub role: String,
    pub nodes: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub node: String,
    pub kind: String,
    /// The policies this step is for (empty for forwarding).
    pub policies: Vec<String>,
    /// What to do on the node.
    pub action: String,
}

fn action(kind: NodeKind, role: Option<Role>, apply: bool) -> String {
    let linux = kind == NodeKind::Linux;
    let s = match (role, linux, apply) {
        (None, true, true) => "set addresses, routes, neighbours and forwarding; no IOAM yet",
        (None, false, true) => {
            "load the P4 program and install the IPv6 routes; no IOAM entries yet"
        }
        (None, true, false) => "remove the routes and addresses cltc added",
        (None, false, false) => "remove the IPv6 routes",
        (Some(Role::Decap), true, true) => {
            "add the IOAM namespaces, set the node and interface ids, enable IOAM on the ingress interfaces and start the agent"
        }
        (Some(Role::Decap), false, true) => {
            "install the decap entries (the switch then digests traces)"
        }
        (Some(Role::Transit), true, true) => {
            "add the IOAM namespaces, set the node and interface ids and enable IOAM on the ingress interfaces"
        }
        (Some(Role::Transit), false, true) => "install the transit entries",
        (Some(Role::Encap), true, true) => {
            "add the IOAM namespaces and the ioam6 encap routes, or enable the policy in the CLT socket API"
        }
        (Some(Role::Encap), false, true) => "install the encap entries",
        (Some(Role::Decap), true, false) => {
            "disable IOAM on the ingress interfaces and stop the agent; remove the namespaces"
        }
        (Some(Role::Decap), false, false) => "remove the decap entries",
        (Some(Role::Transit), true, false) => {
            "disable IOAM on the ingress interfaces; remove the namespaces"
        }
        (Some(Role::Transit), false, false) => "remove the transit entries",
        (Some(Role::Encap), true, false) => {
            "remove the ioam6 encap routes (or disable the policy in the CLT socket API)"
        }
        (Some(Role::Encap), false, false) => "remove the encap entries",
    };
    s.to_string()
}

fn stage(f: &Fabric, n: u32, role: Option<Role>, apply: bool) -> Stage {
    let mut nodes = Vec::new();
    for node in &f.nodes {
        let policies: Vec<String> = node
            .roles
            .iter()
            .filter(|r| Some(r.role) == role)
            .map(|r| f.policy(r.policy).name.clone())
            .collect();
        if role.is_some() && policies.is_empty() {
            continue;
        }
        nodes.push(Step {
            node: node.name.clone(),
            kind: kind_name(node.kind).to_string(),
            policies,
            action: action(node.kind, role, apply),
        });
    }
    let name = match role {
        None => "forwarding",
        Some(Role::Decap) => "decap",
        Some(Role::Transit) => "transit",
        Some(Role::Encap) => "encap",
    };
    Stage {
        stage: n,
        role: name.to_string(),
        nodes,
    }
}

pub fn rollout(f: &Fabric) -> Rollout {
    let order = [
        None,
        Some(Role::Decap),
        Some(Role::Transit),
        Some(Role::Encap),
    ];
    let apply = order
        .iter()
        .enumerate()
        .map(|(i, r)| stage(f, i as u32 + 1, *r, true))
        .collect();
    let remove = order
        .iter()
        .rev()
        .enumerate()
        .map(|(i, r)| stage(f, i as u32 + 1, *r, false))
        .collect();
    Rollout { apply, remove }
}

/// The rollout as pretty JSON (`rollout.json`).
pub fn json(f: &Fabric) -> String {
    let mut s = serde_json::to_string_pretty(&rollout(f)).unwrap_or_default();
    s.push('\n');
    s
}
