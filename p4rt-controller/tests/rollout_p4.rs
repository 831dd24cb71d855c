//! A heterogeneous rollout: the login example (Linux entry host, bmv2
//! router, Linux server) with the router served by the in-process P4Runtime
//! switch of the controller tests and the hosts in network namespaces (with
//! a veth `eth0` each). The P4 step goes through the controller's install and
//! read-back; a later failure reconciles the switch back to its previous
//! entries; an unreachable switch is a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fabric_dir;
mod netns_util;

use std::collections::{BTreeSet, HashMap};

use clt_controller::rollout::{self, Compiled};
use clt_linux::plan::KernelState;
use common::FakeSwitch;
use netns_util::NodeNs;

/// Namespaces for the Linux hosts, deleted on drop.
struct Hosts {
    ns: HashMap<String, String>,
    nodes: NodeNs,
}

impl Hosts {
    /// `with_eth0`: the hosts that get an `eth0`.
    fn new(with_eth0: &[&str]) -> Hosts {
        let nodes = NodeNs::new("cltrp", ["entry", "server"]);
        for n in with_eth0 {
            nodes.eth0(n);
        }
        Hosts {
            ns: nodes.names(),
            nodes,
        }
    }

    /// Addresses, routes and IOAM namespaces of a host.
    fn state(&self, node: &str) -> String {
        clt_linux::netns::run_in(Some(&self.ns[node]), || {
            let nl = clt_linux::nl::Netlink::open()?;
            let s = KernelState::read(&nl)?;
            // Only eth0: far0 gains a link-local address of its own once
            // eth0 is up (carrier), and keeps it; no plan touches it.
            let eth0 = s.links.get("eth0").map(|l| l.index);
            let mut addrs: Vec<_> = s
                .addresses
                .iter()
                .filter(|a| Some(a.index) == eth0)
                .map(|a| a.address.to_string())
                .collect();
            addrs.sort();
            let mut routes: Vec<_> = s
                .routes
                .iter()
                .filter(|r| r.table == 254 && r.oif == eth0)
                .map(|r| format!("{} {:?}", r.dst, r.gateway))
                .collect();
            routes.sort();
            let mut links: Vec<_> = s
                .links
                .values()
                .map(|l| (l.name.clone(), l.is_up(), l.mac))
                .collect();
            links.sort();
            Ok(format!(
                "{links:?} {addrs:?} {routes:?} {:?} {}",
                s.namespaces,
                clt_linux::sysctl::read("net.ipv6.ioam6_id")?
            ))
        })
        .unwrap()
    }
}

/// The login example with the router at `p4runtime`.
fn compile(p4runtime: &str) -> (tempfile::TempDir, Compiled) {
    let src = fabric_dir::example("login").replace("127.0.0.1:9559", p4runtime);
    fabric_dir::compile("login.clt", &src)
}

fn compiled_entries(c: &Compiled) -> usize {
    match &c.nodes["router"] {
        rollout::Artifact::P4 { entries, .. } => entries.len(),
        other => panic!("router is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_and_p4_nodes_roll_out_in_order() {
    clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable());
    let hosts = Hosts::new(&["entry", "server"]);
    let (sw, addr) = FakeSwitch::start().await;
    let (_d, fabric) = compile(&addr.to_string());
    let mut log = Vec::new();
    let out = rollout::run(None, &fabric, &hosts.nodes.options(), |d| {
        log.push(format!("{} {}", d.step.role, d.step.node))
    })
    .await;
    assert!(out.failure.is_none(), "{out}");
    assert_eq!(
        log,
        [
            "forwarding entry",
            "forwarding router",
            "forwarding server",
            "decap server",
            "transit router",
            "encap entry"
        ]
    );
    // The switch holds the compiled entries (read back by the rollout, and
    // here from the switch's own state).
    let n = compiled_entries(&fabric);
    assert!(n > 0);
    assert_eq!(sw.state().tables.len(), n);
    assert_eq!(sw.state().set_pipeline_calls, 1);
    assert_eq!(
        out.touched(),
        BTreeSet::from(["entry".into(), "router".into(), "server".into()])
    );
    // The same fabric again: nothing to do, nothing written.
    let writes = sw.state().write_calls;
    assert!(rollout::steps(Some(&fabric), &fabric).is_empty());
    let again = rollout::run(Some(&fabric), &fabric, &hosts.nodes.options(), |_| {}).await;
    assert!(again.failure.is_none() && again.done.is_empty());
    assert_eq!(sw.state().write_calls, writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_switch_step_reconciles_the_switch_back() {
    clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable());
    // The server has no eth0: its forwarding step fails after the entry
    // host and the router were configured.
    let hosts = Hosts::new(&["entry"]);
    let (sw, addr) = FakeSwitch::start().await;
    let (_d, fabric) = compile(&addr.to_string());
    let entry_before = hosts.state("entry");
    let out = rollout::run(None, &fabric, &hosts.nodes.options(), |_| {}).await;
    let failure = out.failure.as_ref().expect("the rollout should fail");
    assert_eq!(failure.step.node, "server", "{out}");
    assert!(failure.cause.contains("eth0"), "{}", failure.cause);
    let undone: Vec<&str> = failure.undone.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(undone, ["router", "entry"], "{out}");
    assert!(failure.undo_errors.is_empty(), "{out}");
    // Read every node back: the switch has no entry left, the host is as
    // it was.
    assert!(
        sw.state().tables.is_empty(),
        "{:?}",
        sw.state().tables.len()
    );
    assert_eq!(hosts.state("entry"), entry_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_switch_is_a_failed_step() {
    clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable());
    let hosts = Hosts::new(&["entry", "server"]);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_d, fabric) = compile(&port.to_string());
    let entry_before = hosts.state("entry");
    let out = rollout::run(None, &fabric, &hosts.nodes.options(), |_| {}).await;
    let failure = out.failure.as_ref().expect("the rollout should fail");
    assert_eq!(failure.step.node, "router", "{out}");
    assert!(failure.cause.contains("unreachable"), "{}", failure.cause);
    assert_eq!(failure.undone.len(), 1, "{out}");
    assert_eq!(hosts.state("entry"), entry_before);
    assert!(
        out.to_string()
            .contains("FAILED apply forwarding on router")
    );
}
