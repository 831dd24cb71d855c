//! The layout `cltc compile FILE -o DIR` writes, as a list of files.
//!
//! Pure: [`files`] returns paths (relative to `DIR`) and contents; the CLI
//! writes them. The layout is stable and deterministic:
//!
//! ```text
//! DIR/manifest.json                 nodes, kinds, files, P4Runtime addresses
//! DIR/fabric.dot                    the graph with roles per policy
//! DIR/rollout.json                  apply and removal order
//! DIR/nodes/<node>/plan.json        linux: the LinuxPlan
//! DIR/nodes/<node>/plan.sh          linux: the same as sysctl/ip commands
//! DIR/nodes/<node>/program.p4       bmv2/tofino: the P4 program
//! DIR/nodes/<node>/p4info.txtpb     bmv2/tofino: its P4Info
//! DIR/nodes/<node>/entries.txtpb    bmv2/tofino: table entries
//! ```

use crate::backend::{self, p4::Target};
use crate::ir::{Fabric, NodeIdx, NodeKind, P4Runtime};
use crate::model::kind_name;
use serde::Serialize;

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// Relative to the output directory, `/`-separated.
    pub path: String,
    pub contents: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub source: String,
    pub files: Vec<String>,
    pub nodes: Vec<ManifestNode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestNode {
    pub name: String,
    pub kind: String,
    pub id: u32,
    pub roles: Vec<String>,
    pub p4runtime: Option<P4Runtime>,
    pub files: Vec<String>,
}

fn json<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Every file of the compile output, the manifest first.
pub fn files(source_name: &str, f: &Fabric) -> Vec<OutFile> {
    let mut out = Vec::new();
    let mut nodes = Vec::new();
    for (i, n) in f.nodes.iter().enumerate() {
        let idx = NodeIdx(i as u32);
        let dir = format!("nodes/{}", n.name);
        let mut files = Vec::new();
        let mut add = |name: &str, contents: String| {
            let path = format!("{dir}/{name}");
            files.push(path.clone());
            out.push(OutFile { path, contents });
        };
        match n.kind {
            NodeKind::Linux => {
                let plan = backend::linux::plan(f, idx);
                add("plan.json", json(&plan));
                add("plan.sh", backend::linux::script(&plan));
            }
            NodeKind::Bmv2 | NodeKind::Tofino => {
                let target = if n.kind == NodeKind::Bmv2 {
                    Target::V1Model
                } else {
                    Target::Tna
                };
                let a = backend::p4::compile(f, idx, target);
                add("program.p4", a.program);
                add("p4info.txtpb", a.p4info);
                add("entries.txtpb", a.entries);
            }
        }
        let mut roles: Vec<String> = n
            .roles
            .iter()
            .map(|r| {
                let role = serde_json::to_value(r.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                format!("{}:{role}", f.policy(r.policy).name)
            })
            .collect();
        roles.sort();
        nodes.push(ManifestNode {
            name: n.name.clone(),
            kind: kind_name(n.kind).to_string(),
            id: n.id,
            roles,
            p4runtime: n.p4runtime.clone(),
            files,
        });
    }
    let mut top = vec![
        OutFile {
            path: "fabric.dot".into(),
            contents: backend::dot::dot(f),
        },
        OutFile {
            path: "rollout.json".into(),
            contents: backend::rollout::json(f),
        },
    ];
    let manifest = Manifest {
        source: source_name.to_string(),
        files: top.iter().map(|f| f.path.clone()).collect(),
        nodes,
    };
    let mut all = vec![OutFile {
        path: "manifest.json".into(),
        contents: json(&manifest),
    }];
    all.append(&mut top);
    all.append(&mut out);
    all
}
