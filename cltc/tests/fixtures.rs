//! The fixture harness: every `tests/fixtures/ok/*.clt` compiles and its
//! outputs (warnings, IR, Linux plans and scripts, DOT, rollout) are
//! snapshotted; every `tests/fixtures/err/*.clt` fails and its rendered
//! diagnostics are snapshotted. The P4 output is the P4 backend's test.

use cltc::backend::{dot, linux, rollout};
use cltc::ir::{NodeIdx, NodeKind};
use std::fmt::Write as _;
use std::path::Path;

fn name_of(path: &Path) -> String {
    path.file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned()
}

/// Everything a compiled fixture produces, except the P4 artifacts.
fn outputs(name: &str, src: &str) -> String {
    let c = cltc::compile_source(name, src)
        .unwrap_or_else(|d| panic!("{name} does not compile:\n{}", d.render(name, src)));
    let f = &c.fabric;
    let mut out = String::new();
    if !c.warnings.is_empty() {
        let _ = writeln!(out, "=== warnings");
        out.push_str(&cltc::Diagnostics(c.warnings.clone()).render(name, src));
    }
    let _ = writeln!(out, "=== ir");
    out.push_str(&cltc::print::ir(f));
    for (i, n) in f.nodes.iter().enumerate() {
        if n.kind != NodeKind::Linux {
            continue;
        }
        let plan = linux::plan(f, NodeIdx(i as u32));
        let _ = writeln!(out, "=== {}/plan.json", n.name);
        out.push_str(&serde_json::to_string_pretty(&plan).expect("plans serialise"));
        let _ = writeln!(out, "\n=== {}/plan.sh", n.name);
        out.push_str(&linux::script(&plan));
    }
    let _ = writeln!(out, "=== fabric.dot");
    out.push_str(&dot::dot(f));
    let _ = writeln!(out, "=== rollout.json");
    out.push_str(&rollout::json(f));
    out
}

#[test]
fn ok_fixtures() {
    insta::glob!("fixtures/ok/*.clt", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let out = outputs(&name_of(path), &src);
        // Deterministic: a second compilation gives the same bytes.
        assert_eq!(out, outputs(&name_of(path), &src));
        insta::assert_snapshot!(out);
    });
}

#[test]
fn err_fixtures() {
    insta::glob!("fixtures/err/*.clt", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let name = name_of(path);
        let diags = match cltc::compile_source(&name, &src) {
            Ok(_) => panic!("{name} compiles but is an error fixture"),
            Err(d) => d,
        };
        assert!(diags.has_errors(), "{name}: no error among {:?}", diags);
        // `check_source` agrees with `compile_source`.
        assert_eq!(cltc::check_source(&src).1, diags);
        insta::assert_snapshot!(diags.render(&name, &src));
    });
}

#[test]
fn examples_compile_without_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "clt") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let c = cltc::compile_source(&name_of(&path), &src)
            .unwrap_or_else(|d| panic!("{}", d.render(&name_of(&path), &src)));
        assert!(!c.fabric.policies.is_empty(), "{}", path.display());
        // Every output file is produced and none is empty except P4 stubs.
        let files = cltc::output::files(&name_of(&path), &c.fabric);
        assert!(files.iter().any(|f| f.path == "manifest.json"));
        n += 1;
    }
    assert!(n >= 3, "expected at least three examples, found {n}");
}

#[test]
fn several_errors_are_all_reported() {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/err/multi_error.clt"),
    )
    .unwrap();
    let d = cltc::compile_source("multi_error.clt", &src).unwrap_err();
    let codes: Vec<&str> = d.errors().map(|d| d.code.as_str()).collect();
    for want in ["E0001", "E0003", "E0008", "E0010", "E0018"] {
        assert!(codes.contains(&want), "{want} missing from {codes:?}");
    }
}
