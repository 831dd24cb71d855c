//! The `cltc` binary: exit statuses, the output layout, `--emit`, `graph`.

use std::path::Path;
use std::process::{Command, Output};

fn cltc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cltc"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("cltc runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn compile_writes_the_layout_deterministically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("login");
    let o = cltc(&[
        "compile",
        "examples/login.clt",
        "-o",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for f in [
        "manifest.json",
        "fabric.dot",
        "rollout.json",
        "nodes/entry/plan.json",
        "nodes/entry/plan.sh",
        "nodes/server/plan.json",
        "nodes/server/plan.sh",
        "nodes/router/program.p4",
        "nodes/router/p4info.txtpb",
        "nodes/router/entries.txtpb",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("nodes/router/") && stdout.contains("bmv2"),
        "{stdout}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).expect("read"))
            .expect("json");
    assert_eq!(
        manifest["nodes"][1]["p4runtime"]["address"],
        "127.0.0.1:9559"
    );
    assert_eq!(manifest["nodes"][0]["roles"][0], "login:encap");
    // A second run writes the same bytes.
    let again = dir.path().join("again");
    let o = cltc(&[
        "compile",
        "examples/login.clt",
        "-o",
        again.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success());
    for f in ["manifest.json", "rollout.json", "nodes/entry/plan.sh"] {
        assert_eq!(
            std::fs::read(out.join(f)).expect("read"),
            std::fs::read(again.join(f)).expect("read"),
            "{f} differs between runs"
        );
    }
}

#[test]
fn check_exits_1_with_rendered_errors() {
    let o = cltc(&["check", "cltc/tests/fixtures/err/multi_error.clt"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("multi_error.clt:3:15"), "{err}");
    assert!(err.contains("= hint:"), "{err}");
    assert!(err.contains("5 errors"), "{err}");
    let o = cltc(&["check", "examples/login.clt"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn emit_prints_every_stage() {
    for (stage, needle) in [
        ("ast", "Domain"),
        (
            "model",
            "policy login domain dc1: entry(encap) -> router(transit) -> server(decap)",
        ),
        ("ir", "path entry[eth0] -> [1]router[2] -> [eth0]server"),
        (
            "linux",
            "encap ioam6 mode inline trace prealloc type 0xc20000 ns 123 size 36",
        ),
        ("p4", "// node router"),
        ("entries", "# node router"),
    ] {
        let o = cltc(&["compile", "examples/login.clt", "--emit", stage]);
        assert!(o.status.success(), "{stage}: {}", text(&o.stderr));
        assert!(
            text(&o.stdout).contains(needle),
            "{stage}: {}",
            text(&o.stdout)
        );
    }
    let o = cltc(&[
        "compile",
        "examples/login.clt",
        "--emit",
        "linux",
        "--node",
        "nope",
    ]);
    assert!(!o.status.success());
}

#[test]
fn graph_prints_dot_and_writes_svg_when_graphviz_is_there() {
    let o = cltc(&["graph", "examples/login.clt"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).starts_with("graph fabric {"));
    let dir = tempfile::tempdir().expect("tempdir");
    let dot = dir.path().join("g.dot");
    let o = cltc(&[
        "graph",
        "examples/login.clt",
        "-o",
        dot.to_str().expect("utf-8 path"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(dot.is_file());
    let has_dot = Command::new("dot").arg("-V").output().is_ok();
    if has_dot {
        let svg = std::fs::read_to_string(dir.path().join("g.svg")).expect("svg written");
        assert!(svg.contains("<svg"));
    } else {
        println!("skipped svg: graphviz `dot` not installed");
        assert!(text(&o.stdout).contains("not on PATH"));
    }
}
