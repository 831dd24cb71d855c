//! The generated shell scripts against the real `ip` and `sysctl` of this
//! machine, in a network namespace: every command is accepted, the state
//! it describes is there afterwards, and a second run changes nothing.
//!
//! Needs root and iproute2; otherwise the test says why it skips. The only
//! failure tolerated is the kernel lacking the ioam6 route encapsulation
//! ("lwt encapsulation type not supported"), which is a capability of the
//! kernel, not a syntax error: iproute2 rejects bad syntax before that.

use cltc::ir::{NodeIdx, NodeKind};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace deleted on drop, even when the test fails.
struct Netns(String);

impl Netns {
    fn new() -> Option<Netns> {
        let name = format!(
            "cltc-t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Netns(name))
    }

    /// Runs `sh -c cmd` inside the namespace: (success, stderr).
    fn sh(&self, cmd: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .output()
            .expect("ip netns exec runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn skip_reason() -> Option<String> {
    // Root: the effective uid in /proc/self/status is 0.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("not root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 `ip` not installed".into());
    }
    if Command::new("sysctl").arg("-V").output().is_err() {
        return Some("`sysctl` not installed".into());
    }
    if !std::path::Path::new("/proc/sys/net/ipv6/ioam6_id").exists() {
        return Some("kernel without IOAM6 sysctls".into());
    }
    None
}

/// Runs a script line by line; returns the failures that are not the
/// kernel's missing ioam6 encapsulation, and how many lines that skipped.
fn run_script(ns: &Netns, script: &str) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut lwt = 0;
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line == "set -e" {
            continue;
        }
        let (ok, err) = ns.sh(line);
        if ok {
            continue;
        }
        if line.contains("encap ioam6") && err.contains("lwt encapsulation type not supported") {
            lwt += 1;
            continue;
        }
        failures.push(format!("{line}\n  -> {}", err.trim()));
    }
    (failures, lwt)
}

fn check_example(file: &str) {
    let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).expect("example exists");
    let fabric = cltc::compile_source(file, &src)
        .expect("example compiles")
        .fabric;
    for (i, node) in fabric.nodes.iter().enumerate() {
        if node.kind != NodeKind::Linux {
            continue;
        }
        let plan = cltc::backend::linux::plan(&fabric, NodeIdx(i as u32));
        let script = cltc::backend::linux::script(&plan);
        let Some(ns) = Netns::new() else {
            panic!("cannot create a network namespace");
        };
        // The interfaces the plan configures exist on the node already.
        for (k, iface) in plan.interfaces.iter().enumerate() {
            let (ok, err) = ns.sh(&format!(
                "ip link add {} type veth peer name cltcpeer{k} && ip link set cltcpeer{k} up",
                iface.name
            ));
            assert!(ok, "{err}");
        }
        let (failures, lwt) = run_script(&ns, &script);
        assert!(
            failures.is_empty(),
            "{file} node {}:\n{}",
            node.name,
            failures.join("\n")
        );
        let with_encap = plan.routes.iter().filter(|r| r.encap.is_some()).count();
        assert!(lwt <= with_encap);
        // The state is there.
        for c in &plan.sysctls {
            let (ok, out) = ns.sh(&format!("sysctl -n {}", c.key));
            assert!(ok, "{out}");
            assert_eq!(out.trim(), c.value, "{} on {}", c.key, node.name);
        }
        let (_, namespaces) = ns.sh("ip ioam namespace show");
        for n in &plan.namespaces {
            assert!(
                namespaces.contains(&format!("namespace {}", n.id)),
                "{namespaces}"
            );
            if let Some(s) = n.schema {
                assert!(
                    namespaces.contains(&format!("[schema {s}]")),
                    "{namespaces}"
                );
            }
        }
        let (_, routes) = ns.sh("ip -6 route show");
        for r in plan.routes.iter().filter(|r| r.encap.is_none() || lwt == 0) {
            let dst = if r.dst.prefix_len() == 0 {
                "default".to_string()
            } else {
                r.dst.to_string()
            };
            assert!(
                routes.contains(&dst),
                "route {dst} missing on {}:\n{routes}",
                node.name
            );
        }
        let (_, neigh) = ns.sh("ip -6 neigh show nud permanent");
        for n in &plan.neighbors {
            assert!(neigh.contains(&n.address.to_string()), "{neigh}");
        }
        // Idempotent: a second run is accepted as well.
        let (failures, _) = run_script(&ns, &script);
        assert!(
            failures.is_empty(),
            "second run of {}:\n{}",
            node.name,
            failures.join("\n")
        );
    }
}

#[test]
fn scripts_run_against_real_iproute2() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    for file in ["login.clt", "telemetry.clt", "leaf-spine.clt"] {
        check_example(file);
    }
}
