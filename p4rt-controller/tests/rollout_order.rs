//! The order of rollout steps on the heterogeneous leaf-spine example (no
//! devices needed): decap and transit before encap for every policy, removal
//! in reverse, and an incremental rollout that lists only changed nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use clt_controller::rollout::{self, Compiled, Phase, Step};

fn compile(name: &str, src: &str) -> (tempfile::TempDir, Compiled) {
    let compiled = match cltc::compile_source(name, src) {
        Ok(c) => c,
        Err(d) => panic!("cltc rejected {name}: {d:?}"),
    };
    let dir = tempfile::tempdir().unwrap();
    for f in cltc::output::files(name, &compiled.fabric) {
        let path = dir.path().join(&f.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, f.contents).unwrap();
    }
    let c = Compiled::load(dir.path()).unwrap();
    (dir, c)
}

fn example(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(format!("examples/{name}.clt"))).unwrap()
}

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
