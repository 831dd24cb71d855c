//! The order of rollout steps on the heterogeneous leaf-spine example (no
//! devices needed): decap and transit before encap for every policy, removal
//! in reverse, and an incremental rollout that lists only changed nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fabric_dir;

use std::collections::BTreeSet;

use clt_controller::rollout::{self, Phase, Step};
use fabric_dir::{compile, example};

fn position(steps: &[Step], f: impl Fn(&Step) -> bool) -> Vec<usize> {
    steps
        .iter()
        .enumerate()
        .filter(|(_, s)| f(s))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn encap_comes_after_every_decap_and_transit_of_its_policy() {
    let (_d, fabric) = compile("leaf-spine.clt", &example("leaf-spine"));
    let steps = rollout::steps(None, &fabric);
    assert!(steps.iter().all(|s| s.phase == Phase::Apply));
    let policies: BTreeSet<&String> = steps.iter().flat_map(|s| &s.policies).collect();
    assert_eq!(policies.len(), 5, "{policies:?}");
    for p in policies {
        let ready = position(&steps, |s| {
            (s.role == "decap" || s.role == "transit") && s.policies.contains(p)
        });
        let encap = position(&steps, |s| s.role == "encap" && s.policies.contains(p));
        assert!(!ready.is_empty() && !encap.is_empty(), "{p}");
        assert!(
            ready.iter().max() < encap.iter().min(),
            "{p}: ready at {ready:?}, encap at {encap:?}"
        );
    }
    // Every node's forwarding comes first.
    let fwd = position(&steps, |s| s.role == "forwarding");
    let other = position(&steps, |s| s.role != "forwarding");
    assert!(fwd.iter().max() < other.iter().min());
}

#[test]
fn removing_a_policy_removes_encap_first_and_touches_only_its_nodes() {
    let src = example("leaf-spine");
    let (_d1, old) = compile("leaf-spine.clt", &src);
    // Drop the store -> web probe (ops domain, store encap, web decap).
    let start = src.find("policy store_probe").unwrap();
    let new_src = &src[..start];
    let (_d2, new) = compile("leaf-spine.clt", new_src);
    let steps = rollout::steps(Some(&old), &new);
    let plan = rollout::plan_text(&old, &new);
    let changed: BTreeSet<String> = plan
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.ends_with("unchanged"))
        .map(|l| l.split([' ', ':']).next().unwrap().to_string())
        .collect();
    let touched: BTreeSet<String> = steps.iter().map(|s| s.node.clone()).collect();
    assert!(
        touched.is_subset(&changed),
        "{touched:?} vs {changed:?}\n{plan}"
    );
    assert!(
        changed.contains("store") && changed.contains("web"),
        "{plan}"
    );
    assert!(
        !touched.contains("api") && !touched.contains("db"),
        "{touched:?}"
    );
    // store's encap goes before web's decap removal.
    let encap = position(&steps, |s| {
        s.phase == Phase::Remove && s.node == "store" && s.role == "encap"
    });
    let decap = position(&steps, |s| {
        s.phase == Phase::Remove && s.node == "web" && s.role == "decap"
    });
    assert_eq!(encap.len(), 1, "{steps:#?}");
    assert_eq!(decap.len(), 1, "{steps:#?}");
    assert!(encap[0] < decap[0]);
    // The switches on the probe's path lose its entries in the transit
    // removal stage: after store's encap, before web's decap.
    let leaf3 = position(&steps, |s| {
        s.phase == Phase::Remove && s.node == "leaf3" && s.role == "transit"
    });
    assert_eq!(leaf3.len(), 1, "{steps:#?}");
    assert!(encap[0] < leaf3[0] && leaf3[0] < decap[0]);
    // Removals all come before the apply phase.
    let rm = position(&steps, |s| s.phase == Phase::Remove);
    let ap = position(&steps, |s| s.phase == Phase::Apply);
    assert!(ap.is_empty() || rm.iter().max() < ap.iter().min());
}

#[test]
fn plan_of_identical_fabrics_is_unchanged_everywhere() {
    let src = example("leaf-spine");
    let (_d1, a) = compile("leaf-spine.clt", &src);
    let (_d2, b) = compile("leaf-spine.clt", &src);
    assert!(rollout::steps(Some(&a), &b).is_empty());
    let text = rollout::plan_text(&a, &b);
    assert_eq!(text.lines().count(), a.nodes.len());
    assert!(text.lines().all(|l| l.ends_with(": unchanged")), "{text}");
    assert!(rollout::dry_run_text(Some(&a), &b).starts_with("nothing to do"));
}

#[test]
fn netns_map_parses_and_rejects_bad_pairs() {
    let m = rollout::parse_netns_map(&["web=ns1".into(), "api=ns2".into()]).unwrap();
    assert_eq!(m["web"], "ns1");
    assert_eq!(m["api"], "ns2");
    assert!(rollout::parse_netns_map(&["web".into()]).is_err());
    assert!(rollout::parse_netns_map(&["=ns".into()]).is_err());
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_clt-controller"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_plan_dry_run_and_a_failing_rollout() {
    let src = example("fabric-linux");
    let (d1, _) = compile("fabric.clt", &src);
    let v2 = src.replace(
        "trace hop_limit_node_id, interface_ids",
        "trace hop_limit_node_id, interface_ids, queue_depth",
    );
    let (d2, _) = compile("fabric.clt", &v2);
    let (p1, p2) = (d1.path().to_str().unwrap(), d2.path().to_str().unwrap());

    let out = cli(&["plan", p1, p2]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for n in ["api", "leaf1", "leaf2", "spine"] {
        assert!(text.contains(&format!("{n}: unchanged")), "{text}");
    }
    assert!(text.contains("web (linux):"), "{text}");
    assert!(text.contains("+ route"), "{text}");

    let out = cli(&["rollout", "--dry-run", p1]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.find("apply forwarding on web").unwrap();
    let encap = text.find("apply encap on web").unwrap();
    let decap = text.find("apply decap on api").unwrap();
    assert!(first < decap && decap < encap, "{text}");

    let out = cli(&["rollout", "--dry-run", "--from", p1, p2]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("on api") && !text.contains("on spine"),
        "{text}"
    );

    // Every node mapped to a namespace that does not exist: the first step
    // fails, nothing was made, the exit status says so.
    let map = "web=clt-none-1,leaf1=clt-none-2,spine=clt-none-3,leaf2=clt-none-4,api=clt-none-5";
    let out = cli(&["rollout", p1, "--netns-map", map]);
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("FAILED apply forwarding on web"),
        "{stdout}"
    );
    assert!(stdout.contains("rolled back 0 step(s)"), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("clt-none-1"), "{stderr}");
}
