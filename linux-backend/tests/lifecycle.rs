//! Apply, apply again, dry run, teardown, rollback of a failing step, and the
//! CLI, on a node in its own network namespace.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clt_linux::{Error, Insertion};
use cltc::artifact::linux::{LinuxPlan, Neighbor, RouteConfig};
use common::{Netns, NetnsExt, abc_policy, plans, require_root, veth};
use std::process::Command;

/// The domain of the test; the fabric and policy are `common::abc_policy`'s.
const DOMAIN: &str = r#"
domain d {
    namespace 123 data 0xdeadbeef wide 0x0102030405060708
    trace hop_limit_node_id, interface_ids, opaque_state
    schema 777 "something"
    context w3c
    collector 127.0.0.1:7123
}
"#;

/// Namespace `a` with its link to a peer namespace, and A's plan.
fn node_a() -> (Netns, Netns, LinuxPlan) {
    let (a, peer) = (Netns::new("clta"), Netns::new("cltp"));
    veth(&a, "eth0", &peer, "eth0");
    let plan = plans(&abc_policy(DOMAIN, "dst db02::/64"), &["a"]).remove(0);
    (a, peer, plan)
}

/// Snapshot without what merely bringing a link up adds (link-local
/// addresses and routes, multicast routes).
fn state(ns: &Netns, plan: &LinuxPlan) -> String {
    ns.snapshot(plan)
        .lines()
        .map(|l| {
            if l.starts_with("addresses") || l.starts_with("routes") {
                // Drop fe80:: and ff00:: entries from the debug lists.
                let mut out = String::new();
                for part in l.split(", (").flat_map(|p| p.split(", \"")) {
                    if !(part.contains("fe80::") || part.contains("ff00::")) {
                        out += part;
                        out += "|";
                    }
                }
                out
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn apply_is_idempotent_and_teardown_leaves_no_trace() {
    require_root!();
    let (a, _peer, mut plan) = node_a();
    // A permanent neighbour, as plans have for P4 next hops.
    plan.neighbors.push(Neighbor {
        dev: "eth0".into(),
        address: "db01::99".parse().unwrap(),
        mac: "02:00:00:00:00:99".into(),
    });
    let before = state(&a, &plan);

    // A dry run (diff) changes nothing.
    let p = plan.clone();
    let diff = a
        .run(move || {
            let nl = clt_linux::nl::Netlink::open()?;
            clt_linux::plan::diff(&nl, &p, &clt_linux::Options::default())
        })
        .unwrap();
    assert!(!diff.applied);
    let text = diff.to_string();
    for want in [
        "+ ioam schema 777 data 736f6d657468696e67000000",
        "+ ioam namespace 123 data 0xdeadbeef wide 0x102030405060708 schema 777",
        "~ sysctl net.ipv6.ioam6_id = 1",
        "+ address db01::1/64 dev eth0",
        "+ route db02::/64 via db01::2 dev eth0",
        "+ neighbour db01::99 lladdr 02:00:00:00:00:99 dev eth0 permanent",
    ] {
        assert!(text.contains(want), "diff lacks {want:?}:\n{text}");
    }
    assert_eq!(state(&a, &plan), before, "a dry run changed the kernel");

    let first = a.apply(&plan, Insertion::Socket).unwrap();
    assert!(first.applied);
    assert_eq!(first.changes.len(), diff.changes.len());
    let applied = state(&a, &plan);
    assert_ne!(applied, before);
    assert!(applied.contains("data: Some(3735928559)"), "{applied}");
    assert!(applied.contains("schema: Some(777)"), "{applied}");
    assert!(
        applied.contains("db01::99, Some([2, 0, 0, 0, 0, 153])"),
        "{applied}"
    );

    let second = a.apply(&plan, Insertion::Socket).unwrap();
    assert!(second.changes.is_empty(), "{second}");
    assert!(second.to_string().contains("no changes"));
    assert_eq!(state(&a, &plan), applied);

    let down = a.teardown(&plan).unwrap();
    assert!(!down.changes.is_empty());
    assert_eq!(state(&a, &plan), before, "teardown left a trace");
    let again = a.teardown(&plan).unwrap();
    assert!(again.changes.is_empty(), "{again}");
}

#[test]
fn a_failing_step_rolls_back_everything_before_it() {
    require_root!();
    let (a, _peer, mut plan) = node_a();
    // A new MAC, to be restored by the rollback.
    plan.interfaces[0].mac = Some("02:00:00:00:01:01".into());
    // A route through a device that does not exist: the last step, after
    // sysctls, the address, the schema and the namespace.
    plan.routes.push(RouteConfig {
        dst: "db99::/64".parse().unwrap(),
        dev: "nosuch0".into(),
        via: None,
        encap: None,
    });
    let before = state(&a, &plan);
    let err = a.apply(&plan, Insertion::Socket).unwrap_err();
    match &err {
        Error::StepFailed {
            index,
            total,
            step,
            cause,
            rolled_back,
            rollback_errors,
        } => {
            assert_eq!(index, total, "{err}");
            assert!(
                step.contains("db99::/64") && step.contains("nosuch0"),
                "{step}"
            );
            assert!(matches!(**cause, Error::NoSuchInterface(ref d) if d == "nosuch0"));
            assert_eq!(*rolled_back, index - 1, "{err}");
            assert!(rollback_errors.is_empty(), "{rollback_errors:?}");
        }
        other => panic!("expected a failed step, got {other}"),
    }
    assert!(
        err.to_string().contains("no interface named nosuch0"),
        "{err}"
    );
    assert_eq!(state(&a, &plan), before, "rollback left a trace");
}

#[test]
fn route_insertion_needs_the_lwtunnel_and_says_so() {
    require_root!();
    let (a, _peer, plan) = node_a();
    let supported = a
        .run(|| clt_linux::nl::Netlink::open()?.probe_ioam6_lwtunnel())
        .unwrap();
    let before = state(&a, &plan);
    let result = a.apply(&plan, Insertion::Route);
    if supported {
        let report = result.unwrap();
        assert!(report.to_string().contains("encap ioam6"), "{report}");
        a.teardown(&plan).unwrap();
    } else {
        let err = result.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("CONFIG_IPV6_IOAM6_LWTUNNEL"), "{msg}");
        assert!(msg.contains("encap ioam6"), "{msg}");
        assert!(msg.contains("rolled back"), "{msg}");
    }
    assert_eq!(state(&a, &plan), before);
}

#[test]
fn the_cli_applies_shows_and_tears_down_inside_a_namespace() {
    require_root!();
    let (a, _peer, plan) = node_a();
    let dir = std::env::temp_dir().join(clt_testkit::unique("cltplan"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.plan.json");
    std::fs::write(&path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_clt-linux"))
            .args(args)
            .arg(&path)
            .args(["--netns", a.name()])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&["apply", "--dry-run"]);
    assert!(ok && out.contains("not applied (dry run)"), "{out}");
    let (ok, out) = cli(&["apply", "--insertion", "socket"]);
    assert!(ok && out.contains("change(s) applied"), "{out}");
    let (ok, out) = cli(&["diff", "--insertion", "socket"]);
    assert!(ok && out.contains("no changes"), "{out}");
    let (ok, out) = cli(&["show"]);
    assert!(ok && out.contains("  ok ioam namespace 123"), "{out}");
    let (ok, out) = cli(&["teardown"]);
    assert!(ok && out.contains("- ioam namespace 123"), "{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_clt-linux"))
        .args(["apply", "--netns", "no-such-namespace-clt"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no-such-namespace-clt"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
