//! The fabric graph in Graphviz DOT: nodes with their kind and id, links with
//! interface names and ids, and each policy's path coloured, with each node's
//! role per policy.

use crate::ir::{Fabric, NodeKind, Role};
use crate::model::kind_name;
use std::fmt::Write as _;

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(f: &Fabric) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "graph fabric {{");
    let _ = writeln!(s, "  graph [rankdir=LR, fontname=\"Helvetica\"];");
    let _ = writeln!(s, "  node [fontname=\"Helvetica\", fontsize=10];");
    let _ = writeln!(s, "  edge [fontname=\"Helvetica\", fontsize=8];");
    for n in &f.nodes {
        let shape = match n.kind {
            NodeKind::Linux => "box",
            NodeKind::Bmv2 => "box3d",
            NodeKind::Tofino => "component",
        };
        let mut label = format!("{}\\n{} id {}", esc(&n.name), kind_name(n.kind), n.id);
        for r in &n.roles {
            let role = match r.role {
                Role::Encap => "encap",
                Role::Transit => "transit",
                Role::Decap => "decap",
            };
            let _ = write!(label, "\\n{}: {role}", esc(&f.policy(r.policy).name));
        }
        let _ = writeln!(
            s,
            "  \"{}\" [shape={shape}, label=\"{label}\"];",
            esc(&n.name)
        );
    }
    for l in &f.links {
        let (ia, ib) = (f.interface(l.a), f.interface(l.b));
        let _ = writeln!(
            s,
            "  \"{}\" -- \"{}\" [taillabel=\"{} ({})\", headlabel=\"{} ({})\"];",
            esc(&f.node(l.a.node).name),
            esc(&f.node(l.b.node).name),
            esc(&ia.name),
            ia.if_id,
            esc(&ib.name),
            ib.if_id
        );
    }
    for (pi, p) in f.policies.iter().enumerate() {
        let colour = COLOURS[pi % COLOURS.len()];
        let _ = writeln!(
            s,
            "  // policy {}: {}",
            esc(&p.name),
            crate::print::path(f, &p.path)
        );
        for w in p.path.windows(2) {
            let _ = writeln!(
                s,
                "  \"{}\" -- \"{}\" [color=\"{colour}\", fontcolor=\"{colour}\", penwidth=2, dir=forward, label=\"{}\"];",
                esc(&f.node(w[0].node).name),
                esc(&f.node(w[1].node).name),
                esc(&p.name)
            );
        }
    }
    let _ = writeln!(s, "}}");
    s
}
