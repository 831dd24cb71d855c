//! P4 backends: a P4_16 program specialised from `p4src/`, its P4Info and the
//! table entries, for bmv2 (v1model) and Tofino (TNA).
//!
//! The program is `p4src/<arch>/clt.p4` with its `// @clt:NAME` markers
//! replaced by code generated for the node's domains ([`program`]). Ids come
//! from one place ([`objects`]): the templates' `@id` annotations, the P4Info
//! ([`p4info`]) and the entries ([`entries`]) all agree with it.
//!
//! Output is deterministic: it follows the IR's order, which follows the
//! `.clt` file.

pub mod entries;
pub mod layout;
pub mod objects;
pub mod p4info;
pub mod program;
pub mod template;
pub mod textpb;

use crate::ir::{Fabric, NodeIdx};

/// Which P4 architecture to generate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// bmv2 simple_switch (v1model).
    V1Model,
    /// Tofino (TNA).
    Tna,
}

/// The generated files for one P4 node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P4Artifacts {
    /// The P4_16 program (`<node>.p4`).
    pub program: String,
    /// The P4Info in protobuf text format (`<node>.p4info.txtpb`).
    pub p4info: String,
    /// Table entries in P4Runtime text format (`<node>.entries.txtpb`): a
    /// `p4.v1.WriteRequest` without election id.
    pub entries: String,
}

/// Generates the P4 artifacts for `node` (a bmv2 or tofino node).
pub fn compile(fabric: &Fabric, node: NodeIdx, target: Target) -> P4Artifacts {
    let n = fabric.node(node);
    let domains = layout::domains_of(fabric, n);
    let objects = objects::Objects::new(
        target,
        &reported(fabric, n, &domains, target),
        entries::sample_slots(n),
        n.routes.len(),
    );
    P4Artifacts {
        program: program::render(n, &domains, &objects, target),
        p4info: p4info::render(&objects, target, &n.name),
        entries: entries::render(fabric, node, &objects, &domains),
    }
}

/// The domains whose traces the node's program reports (a digest each).
///
/// v1model: all of them. TNA: only those the node decapsulates; a Tofino
/// learning digest holds at most 48 bytes (bf-p4c rejects a larger one), so
/// a node that only encapsulates or forwards declares none and can compile.
fn reported(
    fabric: &Fabric,
    node: &crate::ir::Node,
    domains: &[layout::DomainLayout],
    target: Target,
) -> Vec<layout::DomainLayout> {
    domains
        .iter()
        .zip(&node.domains)
        .filter(|(_, domain)| {
            target == Target::V1Model
                || node.roles.iter().any(|r| {
                    r.role == crate::ir::Role::Decap && fabric.policy(r.policy).domain == **domain
                })
        })
        .map(|(layout, _)| layout.clone())
        .collect()
}

/// The P4Info ids of `artifacts`' program, by name, as `@id` annotations
/// declare them: `(name, id)` for each annotated table, action, register
/// and digest instance. Used by tests and by tools comparing with p4c.
pub fn annotated_ids(program: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = program.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim().strip_prefix("@id(") else {
            continue;
        };
        let Some(value) = rest.strip_suffix(')') else {
            continue;
        };
        let id = match value.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => value.parse().ok(),
        };
        let (Some(id), Some(next)) = (id, lines.get(i + 1)) else {
            continue;
        };
        if let Some(name) = declared_name(next) {
            out.push((name, id));
        }
    }
    out
}

/// The name a declaration line declares: `table t {`, `action a(...) {`,
/// `register<...>(N) r;`, `Digest<...>(...) d;`.
fn declared_name(line: &str) -> Option<String> {
    let line = line.trim();
    let ident = |s: &str| {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
    };
    if let Some(rest) = line.strip_prefix("table ") {
        return Some(ident(rest));
    }
    if let Some(rest) = line.strip_prefix("action ") {
        return Some(ident(rest));
    }
    // An extern instance: `Type<...>(args) name;`
    let body = line.strip_suffix(';')?;
    let name = body.rsplit([' ', ')']).next()?;
    Some(name.to_string()).filter(|n| !n.is_empty())
}
