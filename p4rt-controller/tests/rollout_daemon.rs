//! `clt-controller run` with `[rollout]`: the daemon keeps the login example
//! (two Linux hosts in network namespaces, the bmv2 router served by the
//! in-process P4Runtime switch of the controller tests) rolled out. It rolls
//! out the compiled directory at start, rolls out the difference when the
//! directory is recompiled in place, keeps the previous version after a
//! failed rollout (every node read back) and retries on a recheck (SIGHUP),
//! manages the router between rollouts, exports the rollout metrics, and a
//! restarted daemon finds the running version in its state directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fabric_dir;
mod netns_util;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use clt_controller::config::Config;
use clt_controller::daemon::{Daemon, RolloutStatus};
use clt_controller::inputs::DeviceInputs;
use clt_controller::rollout::{self, Compiled};
use clt_testkit::ip;
use common::{FakeSwitch, http_get};
use netns_util::{NodeNs, kernel_snapshot};

/// The hosts' namespaces (each with an `eth0` whose far end is up),
/// deleted on drop.
struct Hosts {
    ns: HashMap<String, String>,
    nodes: NodeNs,
}

impl Hosts {
    fn new() -> Hosts {
        let nodes = NodeNs::new("cltrd", ["entry", "server"]);
        nodes.eth0("entry");
        nodes.eth0("server");
        Hosts {
            ns: nodes.names(),
            nodes,
        }
    }
}

/// The login example with the router at `p4runtime` and `extra` appended,
/// compiled into `dir` (replacing what was there, as `cltc compile -o`
/// does), with a stand-in device config.
fn compile_into(dir: &Path, p4runtime: &str, extra: &str, more_fields: bool) -> Compiled {
    let mut src = fabric_dir::example("login").replace("127.0.0.1:9559", p4runtime);
    if more_fields {
        src = src.replace(
            "trace hop_limit_node_id, interface_ids, queue_depth",
            "trace hop_limit_node_id, interface_ids, queue_depth, timestamp_secs",
        );
    }
    src.push_str(extra);
    let _ = std::fs::remove_dir_all(dir);
    fabric_dir::write("login.clt", &src, dir);
    Compiled::load(dir).unwrap()
}

const HEALTH: &str = "\npolicy health {\n    domain dc1\n    from server to entry\n    match dst db01::/64 proto udp dport 9000\n}\n";

/// Waits (up to 30 s) until the daemon's rollout status satisfies `ok`.
async fn wait_status(
    rx: &mut tokio::sync::watch::Receiver<RolloutStatus>,
    what: &str,
    ok: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let got = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| ok(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match got {
        Ok(Ok(s)) => s,
        _ => panic!("timed out waiting for {what}: {:?}", rx.borrow()),
    }
}

fn router_entries(sw: &FakeSwitch) -> Vec<String> {
    let mut v: Vec<String> = sw
        .state()
        .tables
        .values()
        .map(|e| format!("{e:?}"))
        .collect();
    v.sort();
    v
}

/// The pipeline cookie the switch runs.
fn running_cookie(sw: &FakeSwitch) -> Option<u64> {
    sw.state()
        .pipeline
        .as_ref()
        .and_then(|p| p.cookie.as_ref())
        .map(|c| c.cookie)
}

/// The cookie of the router's pipeline compiled in `dir`.
fn router_cookie(dir: &Path) -> Option<u64> {
    let config = Config::from_compiled(dir).unwrap();
    let d = config.devices.iter().find(|d| d.name == "router").unwrap();
    Some(DeviceInputs::load(&d.inputs).unwrap().pipeline.cookie)
}

fn compiled_router(c: &Compiled) -> usize {
    match &c.nodes["router"] {
        rollout::Artifact::P4 { entries, .. } => entries.len(),
        other => panic!("router is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_the_fabric_rolled_out() {
    clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable());
    let hosts = Hosts::new();
    let (sw, addr) = FakeSwitch::start().await;
    let work = tempfile::tempdir().unwrap();
    let fabric = work.path().join("fabric");
    let p4rt = addr.to_string();
    let v1 = compile_into(&fabric, &p4rt, "", false);
    let toml = format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n\n[rollout]\ncompiled = \"fabric\"\nnetns = {{ entry = \"{}\", server = \"{}\" }}\npoll_secs = 1\nstate_dir = \"state\"\n",
        hosts.ns["entry"], hosts.ns["server"]
    );
    let config = Config::parse(&toml, work.path()).unwrap();

    // 1. At start: the whole fabric, then the router is managed.
    let daemon = Daemon::start(&config).await.unwrap();
    let mut status = daemon.rollout.clone().unwrap();
    let s = wait_status(&mut status, "the first rollout", |s| s.succeeded == 1).await;
    assert!(!s.failing, "{}", s.last_report);
    assert_eq!(s.running, Some(rollout::fingerprint(&fabric).unwrap()));
    assert_eq!(
        s.last_report
            .lines()
            .filter(|l| l.starts_with("ok "))
            .count(),
        6,
        "{}",
        s.last_report
    );
    assert_eq!(sw.state().tables.len(), compiled_router(&v1));
    hosts.nodes.assert_matches(&v1);
    let metrics = daemon.metrics_addr.unwrap();
    common::eventually("the router managed between rollouts", || {
        http_get(metrics, "/metrics")
            .contains("clt_controller_device_connected{device=\"router\"} 1")
    })
    .await;
    let m = http_get(metrics, "/metrics");
    assert!(
        m.contains("clt_controller_rollouts_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(m.contains("clt_controller_rollout_steps_total 6"), "{m}");
    assert!(m.contains("clt_controller_rollout_failing 0"), "{m}");

    // 2. Recompiled in place with a new policy the other way: only the
    //    difference is rolled out.
    let v2 = compile_into(&fabric, &p4rt, HEALTH, false);
    let s = wait_status(&mut status, "the second rollout", |s| s.succeeded == 2).await;
    assert_eq!(s.running, Some(rollout::fingerprint(&fabric).unwrap()));
    assert!(
        s.last_report.contains("apply encap on server"),
        "{}",
        s.last_report
    );
    assert_eq!(
        s.last_report
            .lines()
            .filter(|l| l.starts_with("ok "))
            .count(),
        rollout::steps(Some(&v1), &v2).len(),
        "only the difference: {}",
        s.last_report
    );
    // The login entry's priority changes (policy order): it is replaced in
    // the router's apply step, not removed before.
    assert!(!s.last_report.contains("remove "), "{}", s.last_report);
    assert_eq!(sw.state().tables.len(), compiled_router(&v2));
    hosts.nodes.assert_matches(&v2);

    // 3. A version whose rollout fails (the server's eth0 is gone): every
    //    node is rolled back to v2, read back; the failure is reported and
    //    not retried until asked.
    let server = hosts.ns["server"].clone();
    ip(&["-n", &server, "link", "set", "eth0", "down"]);
    ip(&["-n", &server, "link", "set", "eth0", "name", "wrong"]);
    let entry_before = kernel_snapshot(&hosts.ns["entry"]);
    let server_before = kernel_snapshot(&server);
    let router_before = router_entries(&sw);
    let cookie_before = running_cookie(&sw);
    assert_eq!(cookie_before, router_cookie(&fabric));
    let _v3 = compile_into(&fabric, &p4rt, HEALTH, true);
    let s = wait_status(&mut status, "the failed rollout", |s| s.failed == 1).await;
    assert!(s.failing);
    assert!(s.last_report.contains("FAILED"), "{}", s.last_report);
    assert!(s.last_report.contains("on server"), "{}", s.last_report);
    assert_eq!(
        s.running,
        Some(rollout::fingerprint(&work.path().join("state/current")).unwrap())
    );
    // v3 changes the router's program: the rollout pushed it, the
    // rollback pushed v2's back and reinstalled its entries.
    assert_ne!(router_cookie(&fabric), cookie_before);
    assert!(sw.state().set_pipeline_calls >= 3, "v1, v3, v2 again");
    assert_eq!(running_cookie(&sw), cookie_before);
    assert_eq!(router_entries(&sw), router_before);
    assert_eq!(kernel_snapshot(&hosts.ns["entry"]), entry_before);
    assert_eq!(kernel_snapshot(&server), server_before);
    let m = http_get(metrics, "/metrics");
    assert!(
        m.contains("clt_controller_rollouts_total{result=\"failed\"} 1"),
        "{m}"
    );
    assert!(m.contains("clt_controller_rollout_failing 1"), "{m}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status.borrow().failed, 1, "retried without a change");

    // 4. The interface back and a recheck (SIGHUP): v3 goes through.
    ip(&["-n", &server, "link", "set", "wrong", "name", "eth0"]);
    daemon.recheck();
    let s = wait_status(&mut status, "the retried rollout", |s| s.succeeded == 3).await;
    assert!(!s.failing, "{}", s.last_report);
    let v3 = Compiled::load(&fabric).unwrap();
    hosts.nodes.assert_matches(&v3);
    let running = s.running.clone();
    daemon.shutdown().await;

    // 5. Restarted: the state directory says v3 runs; nothing to roll out.
    let daemon = Daemon::start(&config).await.unwrap();
    let mut status = daemon.rollout.clone().unwrap();
    let s = wait_status(&mut status, "the restarted daemon", |s| s.running.is_some()).await;
    assert_eq!(s.running, running);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status.borrow().succeeded,
        0,
        "{}",
        status.borrow().last_report
    );
    daemon.shutdown().await;
}

#[test]
fn the_rollout_section_is_checked_and_resolved() {
    let text = "[rollout]\ncompiled = \"out/fabric\"\nstate_dir = \"state\"\nagents = { db = \"[2001:db8::21]:7443\" }\n[rollout.agent_tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"/k.pem\"\n";
    let config = Config::parse(text, Path::new("/etc/clt")).unwrap();
    let r = config.rollout.unwrap();
    assert_eq!(r.compiled, Path::new("/etc/clt/out/fabric"));
    assert_eq!(r.state_dir.as_deref(), Some(Path::new("/etc/clt/state")));
    assert_eq!((r.insertion.as_str(), r.poll_secs), ("auto", 2));
    assert_eq!(r.agents["db"], "[2001:db8::21]:7443");
    let tls = r.agent_tls.unwrap();
    assert_eq!(tls.ca, Path::new("/etc/clt/ca.pem"));
    assert_eq!(tls.key.as_deref(), Some(Path::new("/k.pem")));
    for (bad, why) in [
        ("[rollout]\ncompiled = \"x\"\npoll_secs = 0\n", "poll_secs"),
        (
            "[rollout]\ncompiled = \"x\"\ninsertion = \"tunnel\"\n",
            "insertion",
        ),
        (
            "[rollout]\ncompiled = \"x\"\nagents = { db = \"h:1\" }\n",
            "agent_tls",
        ),
        ("[rollout]\ncompiled = \"x\"\nbogus = 1\n", "unknown field"),
    ] {
        let err = Config::parse(bad, Path::new("/")).unwrap_err().to_string();
        assert!(err.contains(why), "{err:?} should say {why:?}");
    }
}
