//! `clt-controller rollout` on a fabric of five Linux nodes in network
//! namespaces (examples/fabric-linux.clt: two hosts, two leaves, a spine):
//! the order of the steps, read-back verification, traffic during a rollout,
//! rollback after an induced failure, and incremental rollouts that touch
//! only the nodes they must.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddrV6;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod fabric_dir;
mod netns_util;

use clt_controller::rollout::{self, Phase};
use clt_testkit::ip;
use netns_util::{
    LINKS, NODES, NodeNs, assert_encap_last, compile, example_src, linux_plan, receiver, rt, sender,
};

/// The five namespaces with their veth links, deleted on drop.
struct Fabric {
    /// node -> namespace
    ns: HashMap<String, String>,
    nodes: NodeNs,
}

impl Fabric {
    fn new() -> Fabric {
        let nodes = NodeNs::new("cltro", NODES);
        nodes.link(&LINKS);
        for n in NODES {
            nodes.no_dad(n);
        }
        Fabric {
            ns: nodes.names(),
            nodes,
        }
    }

    /// `ip -n <node's namespace> <args>`, `args` split at spaces.
    fn ip(&self, node: &str, args: &str) {
        let mut all = vec!["-n", self.ns[node].as_str()];
        all.extend(args.split_whitespace());
        ip(&all);
    }
}

/// A UDP policy api -> web, the other way than the example's.
const API_WEB: &str = "\npolicy api_web {\n    domain prod\n    from api to web\n    match dst 2001:db8:1:1::/64 proto udp dport 9001\n}\n";

#[test]
fn rollout_orders_verifies_and_changes_only_what_differs() {
    clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable());
    let fabric = Fabric::new();
    let rt = rt();
    let src = example_src();
    let (_d1, v1) = compile(&src);

    // 1. The whole fabric from scratch, in rollout.json order.
    let mut log = Vec::new();
    let out = rt.block_on(rollout::run(None, &v1, &fabric.nodes.options(), |d| {
        log.push(d.step.clone())
    }));
    assert!(out.failure.is_none(), "rollout failed:\n{out}");
    eprintln!("{out}");
    assert_eq!(
        log.len(),
        10,
        "5 forwarding, 1 decap, 3 transit, 1 encap:\n{out}"
    );
    assert_encap_last(&log);
    fabric.nodes.assert_matches(&v1);
    assert_eq!(
        out.touched(),
        NODES.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );

    // 2. A new trace field: only the encapsulating host's plan changes.
    let v2_src = src.replace(
        "trace hop_limit_node_id, interface_ids",
        "trace hop_limit_node_id, interface_ids, queue_depth",
    );
    assert_ne!(v2_src, src);
    let (_d2, v2) = compile(&v2_src);
    let before = fabric.nodes.snapshot();
    let planned: BTreeSet<String> = rollout::steps(Some(&v1), &v2)
        .into_iter()
        .map(|s| s.node)
        .collect();
    assert_eq!(planned, BTreeSet::from(["web".to_string()]));
    let out = rt.block_on(rollout::run(
        Some(&v1),
        &v2,
        &fabric.nodes.options(),
        |_| {},
    ));
    assert!(out.failure.is_none(), "incremental rollout failed:\n{out}");
    assert!(out.touched().is_subset(&planned), "{:?}", out.touched());
    let after = fabric.nodes.snapshot();
    for n in ["leaf1", "spine", "leaf2", "api"] {
        assert_eq!(before[n], after[n], "{n} was touched");
    }
    let state_v2 = after;
    fabric.nodes.assert_matches(&v2);

    // 3. A new policy in the other direction, rolled out under traffic:
    //    web -> api with IOAM all along, api -> web plain until the encap
    //    step of api_web is verified, then with IOAM.
    let v3_src = format!("{v2_src}{API_WEB}");
    let (_d3, v3) = compile(&v3_src);
    let stop = Arc::new(AtomicBool::new(false));
    let (rx1, rx2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (tx1, tx2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (q1, q2) = (Arc::default(), Arc::default());
    let r1 = receiver(
        fabric.ns["api"].clone(),
        9000,
        stop.clone(),
        rx1.clone(),
        Arc::clone(&q1),
    );
    let r2 = receiver(
        fabric.ns["web"].clone(),
        9001,
        stop.clone(),
        rx2.clone(),
        Arc::clone(&q2),
    );
    let send_stop = Arc::new(AtomicBool::new(false));
    let web_api = linux_plan(&v2, "web").encap[0].clone();
    let api_web = linux_plan(&v3, "api")
        .encap
        .iter()
        .find(|p| p.policy == "api_web")
        .cloned()
        .unwrap();
    let always = Arc::new(AtomicBool::new(true));
    let api_web_on = Arc::new(AtomicBool::new(false));
    let s1 = sender(
        fabric.ns["web"].clone(),
        SocketAddrV6::new("2001:db8:2:1::10".parse().unwrap(), 9000, 0, 0),
        web_api,
        always,
        send_stop.clone(),
        tx1.clone(),
        Duration::from_micros(500),
    );
    let s2 = sender(
        fabric.ns["api"].clone(),
        SocketAddrV6::new("2001:db8:1:1::10".parse().unwrap(), 9001, 0, 0),
        api_web,
        api_web_on.clone(),
        send_stop.clone(),
        tx2.clone(),
        Duration::from_micros(500),
    );
    // Traffic flows before the rollout starts.
    let t0 = Instant::now();
    while (rx1.load(Ordering::Relaxed) == 0 || rx2.load(Ordering::Relaxed) == 0)
        && t0.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first datagrams wait for neighbour discovery on every hop (and
    // the kernel queues only a few per neighbour): count from here on.
    std::thread::sleep(Duration::from_millis(300));
    let (base1, base2) = (tx1.load(Ordering::Relaxed), tx2.load(Ordering::Relaxed));
    let mut log = Vec::new();
    let out = rt.block_on(rollout::run(Some(&v2), &v3, &fabric.nodes.options(), |d| {
        if d.step.role == "encap" && d.step.policies.iter().any(|p| p == "api_web") {
            // The application enables the policy once the controller says
            // the fabric is ready for it.
            api_web_on.store(true, Ordering::Relaxed);
        }
        log.push(d.step.clone());
    }));
    // Keep sending a little after the rollout, with IOAM both ways: wait
    // until the api sender has sent well past the moment it was told to
    // enable CLT (a loaded machine may not schedule it for a while), then
    // 300 ms more.
    let mark = tx2.load(Ordering::Relaxed);
    let t0 = Instant::now();
    while api_web_on.load(Ordering::Relaxed)
        && tx2.load(Ordering::Relaxed) < mark + 20
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    send_stop.store(true, Ordering::Relaxed);
    let (web_api_on, api_web_enabled) = (s1.join().unwrap(), s2.join().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    r1.join().unwrap();
    r2.join().unwrap();
    assert!(
        out.failure.is_none(),
        "rollout under traffic failed:\n{out}"
    );
    assert!(web_api_on, "web -> api never carried IOAM");
    assert!(
        api_web_enabled,
        "api -> web never carried IOAM (encap step reported: {})",
        api_web_on.load(Ordering::Relaxed)
    );
    assert_encap_last(&log);
    for (what, base, sent, seqs) in [
        ("web -> api", base1, &tx1, &q1),
        ("api -> web", base2, &tx2, &q2),
    ] {
        let (sent, missing) = netns_util::lost(what, base, sent, seqs);
        assert!(sent > 100, "{what}: only {sent} sent");
        assert!(missing.is_empty(), "{what}: lost {missing:?}");
    }
    fabric.nodes.assert_matches(&v3);

    // 4. The policy removed again: encap withdrawn first, decap last, and
    //    every node reads back exactly as it did under v2.
    let mut log = Vec::new();
    let out = rt.block_on(rollout::run(Some(&v3), &v2, &fabric.nodes.options(), |d| {
        log.push(d.step.clone())
    }));
    assert!(out.failure.is_none(), "removal failed:\n{out}");
    let pos = |node: &str, role: &str| {
        log.iter()
            .position(|s| s.phase == Phase::Remove && s.node == node && s.role == role)
            .unwrap_or_else(|| panic!("no removal of {role} on {node}:\n{out}"))
    };
    let encap = pos("api", "encap");
    assert!(encap < pos("leaf1", "transit"), "{out}");
    assert!(encap < pos("spine", "transit"), "{out}");
    assert!(pos("spine", "transit") < pos("web", "decap"), "{out}");
    let now = fabric.nodes.snapshot();
    for n in NODES {
        assert_eq!(state_v2[n], now[n], "{n} differs from v2 after the removal");
        assert_eq!(fabric.nodes.diff(&v2, n), Vec::<String>::new(), "{n}");
    }
}

#[test]
fn a_failed_step_rolls_every_node_back() {
    clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable());
    let fabric = Fabric::new();
    let rt = rt();
    let (_d1, v1) = compile(&example_src());
    // leaf2 (the fourth node of the forwarding stage) has no `down`
    // interface: its plan fails midway, after web, leaf1 and spine changed.
    fabric.ip("leaf2", "link set dev down name wrong");
    let before = fabric.nodes.snapshot();
    let out = rt.block_on(rollout::run(None, &v1, &fabric.nodes.options(), |_| {}));
    let failure = out.failure.as_ref().expect("the rollout should fail");
    assert_eq!(failure.step.node, "leaf2", "{out}");
    assert!(failure.cause.contains("down"), "cause: {}", failure.cause);
    let undone: Vec<&str> = failure.undone.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(undone, ["spine", "leaf1", "web"], "{out}");
    assert!(failure.undo_errors.is_empty(), "{out}");
    let text = out.to_string();
    assert!(text.contains("FAILED apply forwarding on leaf2"), "{text}");
    // Every node reads back as it was before the rollout.
    let after = fabric.nodes.snapshot();
    for n in NODES {
        assert_eq!(before[n], after[n], "{n} was not rolled back");
    }
    // With the interface back, the same rollout goes through.
    fabric.ip("leaf2", "link set dev wrong name down");
    let out = rt.block_on(rollout::run(None, &v1, &fabric.nodes.options(), |_| {}));
    assert!(out.failure.is_none(), "{out}");
    fabric.nodes.assert_matches(&v1);
}

#[test]
fn a_failed_incremental_step_restores_the_previous_fabric() {
    clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable());
    let fabric = Fabric::new();
    let rt = rt();
    let src = example_src();
    let (_d1, v1) = compile(&src);
    let out = rt.block_on(rollout::run(None, &v1, &fabric.nodes.options(), |_| {}));
    assert!(out.failure.is_none(), "{out}");
    let v2_src = format!("{src}{API_WEB}");
    let (_d2, v2) = compile(&v2_src);
    let before = fabric.nodes.snapshot();
    // Fail a transit step midway through: once leaf1's transit step is
    // verified, the spine's new ingress interface disappears under its name
    // (a veth is renamed only while down).
    let out = rt.block_on(rollout::run(Some(&v1), &v2, &fabric.nodes.options(), |d| {
        if d.step.node == "leaf1" && d.step.role == "transit" {
            fabric.ip("spine", "link set p2 down");
            fabric.ip("spine", "link set p2 name p2x");
        }
    }));
    fabric.ip("spine", "link set p2x name p2");
    fabric.ip("spine", "link set p2 up");
    let failure = out.failure.as_ref().expect("the rollout should fail");
    assert_eq!(
        (failure.step.node.as_str(), failure.step.role.as_str()),
        ("spine", "transit"),
        "{out}"
    );
    // web's decap and leaf1's transit step changed the kernel and were undone.
    let undone: Vec<(&str, &str)> = failure
        .undone
        .iter()
        .map(|s| (s.node.as_str(), s.role.as_str()))
        .collect();
    assert!(undone.contains(&("leaf1", "transit")), "{out}");
    assert!(undone.contains(&("web", "decap")), "{out}");
    assert!(failure.undo_errors.is_empty(), "{out}");
    let after = fabric.nodes.snapshot();
    for n in ["web", "leaf1", "leaf2", "api"] {
        assert_eq!(before[n], after[n], "{n} was not rolled back");
        assert_eq!(fabric.nodes.diff(&v1, n), Vec::<String>::new(), "{n}");
    }
    // The spine lost p2's address and routes to the test's own link down;
    // its IOAM state is back as before.
    let ioam = |s: &str| {
        s.lines()
            .filter(|l| {
                l.starts_with("namespaces") || l.starts_with("schemas") || l.contains("ioam6")
            })
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(ioam(&before["spine"]), ioam(&after["spine"]));
}
