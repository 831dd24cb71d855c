//! Shared helpers of the P4 backend tests: compiling the examples and reading
//! the generated P4Info back.

#![allow(dead_code)]

use cltc::backend::p4::Target;
use cltc::backend::p4::textpb::TextMessage;
use cltc::ir::{Fabric, NodeIdx, NodeKind};
use std::path::{Path, PathBuf};

/// The repository's `examples/*.clt`, sorted.
pub fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "clt"))
        .collect();
    files.sort();
    files
}

/// Compiles a `.clt` file to the IR, failing the test with its diagnostics.
pub fn fabric(path: &Path) -> Fabric {
    let src = std::fs::read_to_string(path).expect("read example");
    let name = path.display().to_string();
    match cltc::compile_source(&name, &src) {
        Ok(c) => c.fabric,
        Err(d) => panic!("{name} does not compile:\n{}", d.render(&name, &src)),
    }
}

/// The fabric's P4 nodes with their natural target.
pub fn p4_nodes(fabric: &Fabric) -> Vec<(NodeIdx, Target)> {
    fabric
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let target = match n.kind {
                NodeKind::Bmv2 => Target::V1Model,
                NodeKind::Tofino => Target::Tna,
                NodeKind::Linux => return None,
            };
            Some((NodeIdx(u32::try_from(i).expect("node index")), target))
        })
        .collect()
}

/// One P4Info object: its kind (`tables`, `actions`, ...), name and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: String,
    pub name: String,
    pub id: u32,
}

/// Every object of a P4Info text.
pub fn objects(p4info: &TextMessage) -> Vec<Object> {
    let mut out = Vec::new();
    for kind in ["tables", "actions", "registers", "digests"] {
        for m in p4info.messages(kind) {
            let p = m.message("preamble").expect("preamble");
            out.push(Object {
                kind: kind.to_string(),
                name: p.string("name").expect("name").to_string(),
                id: u32::try_from(p.number("id").expect("id")).expect("32-bit id"),
            });
        }
    }
    out
}
