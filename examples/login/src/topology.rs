//! The fabric in network namespaces.
//!
//! Data plane (IPv6, configured only by `clt-linux` from `cltc` plans):
//!
//! ```text
//!  entry eth0 db01::1 ── eth0 router eth1 ── eth0 server db02::2
//!        |                 (tbf here when congested)   |
//!      mgmt0 10.17.1.1                               mgmt0 10.17.2.1
//!        └──── e0 10.17.1.2  obs (collector)  s0 10.17.2.2 ────┘
//! ```
//!
//! The management network (IPv4, set up here with `ip`) carries only
//! telemetry: the entry point's OTLP spans and the agent's IOAM reports
//! reach the collector in `obs` without crossing the congested router.
//! Every namespace and link is created under a name unique to this process
//! and removed when [`Topology`] is dropped (also on error or panic).

use anyhow::{Context, Result, bail};
use clt_linux::{Insertion, Options, netns, nl::Netlink, plan};
use cltc::artifact::linux::{EncapPolicy, LinuxPlan};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The policy file compiled by default (`examples/login/login.clt`).
pub const POLICY: &str = include_str!("../login.clt");

/// Management addresses.
pub const ENTRY_MGMT: &str = "10.17.1.1";
pub const OBS_ENTRY_SIDE: &str = "10.17.1.2";
pub const SERVER_MGMT: &str = "10.17.2.1";
pub const OBS_SERVER_SIDE: &str = "10.17.2.2";

/// Runs a command, failing with its stderr.
pub fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn new(name: String) -> Result<Netns> {
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair from `a`'s `a_if` to `b`'s `b_if` (names are per namespace).
fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    run(&[
        "ip", "-n", &a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ])
}

fn mgmt_addr(ns: &Netns, dev: &str, addr: &str) -> Result<()> {
    run(&[
        "ip",
        "-n",
        &ns.name,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        dev,
    ])?;
    run(&["ip", "-n", &ns.name, "link", "set", dev, "up"])
}

/// The four hosts, their plans and the login policy.
#[derive(Debug)]
pub struct Topology {
    pub entry: Netns,
    pub router: Netns,
    pub server: Netns,
    pub obs: Netns,
    pub plans: Vec<LinuxPlan>,
    /// IOAM node id to node name.
    pub node_names: std::collections::HashMap<u32, String>,
    /// The server's address on the data plane (its plan's first interface).
    pub server_addr: std::net::Ipv6Addr,
    /// The login policy as the entry point's plan states it: what the CLT
    /// socket API inserts.
    pub policy: EncapPolicy,
    /// Where the agent reports (the domain's `collector`).
    pub collector: String,
}

/// What the demo takes from the compiled policy.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The plan of each node asked for, in order.
    pub plans: Vec<LinuxPlan>,
    /// The first policy the first node encapsulates.
    pub policy: EncapPolicy,
    /// IOAM node id to node name, for every node of the fabric.
    pub node_names: std::collections::HashMap<u32, String>,
}

/// Compiles `src` and plans the nodes named in `nodes`.
pub fn compile(src: &str, nodes: &[&str]) -> Result<Compiled> {
    let compiled = cltc::compile_source("login.clt", src).map_err(|d| {
        anyhow::anyhow!("cltc rejected the policy:\n{}", d.render("login.clt", src))
    })?;
    let mut plans = Vec::new();
    for name in nodes {
        let idx = compiled
            .fabric
            .nodes
            .iter()
            .position(|n| n.name == *name)
            .with_context(|| format!("the policy has no node `{name}`"))?;
        plans.push(cltc::backend::linux::plan(
            &compiled.fabric,
            cltc::ir::NodeIdx(idx as u32),
        ));
    }
    let policy = plans
        .first()
        .and_then(|p| p.encap.first())
        .cloned()
        .context("the entry point encapsulates no policy")?;
    let node_names = compiled
        .fabric
        .nodes
        .iter()
        .map(|n| (n.id, n.name.clone()))
        .collect();
    Ok(Compiled {
        plans,
        policy,
        node_names,
    })
}

static RUN: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// Creates the namespaces and links and applies the plans.
    pub fn build(src: &str, log: &mut impl FnMut(String)) -> Result<Topology> {
        let Compiled {
            plans,
            policy,
            node_names,
        } = compile(src, &["entry", "router", "server"])?;
        let collector = policy.collector.clone();
        let server_addr = plans[2]
            .interfaces
            .iter()
            .find_map(|i| i.address)
            .map(|a| a.addr())
            .context("the server has no address")?;
        let tag = format!(
            "clt-login-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let entry = Netns::new(format!("{tag}-entry"))?;
        let router = Netns::new(format!("{tag}-router"))?;
        let server = Netns::new(format!("{tag}-server"))?;
        let obs = Netns::new(format!("{tag}-obs"))?;
        veth(&entry, "eth0", &router, "eth0")?;
        veth(&router, "eth1", &server, "eth0")?;
        veth(&entry, "mgmt0", &obs, "e0")?;
        veth(&server, "mgmt0", &obs, "s0")?;
        mgmt_addr(&entry, "mgmt0", ENTRY_MGMT)?;
        mgmt_addr(&obs, "e0", OBS_ENTRY_SIDE)?;
        mgmt_addr(&server, "mgmt0", SERVER_MGMT)?;
        mgmt_addr(&obs, "s0", OBS_SERVER_SIDE)?;
        let topo = Topology {
            entry,
            router,
            server,
            obs,
            plans,
            node_names,
            server_addr,
            policy,
            collector,
        };
        for (ns, p) in [&topo.entry, &topo.router, &topo.server]
            .into_iter()
            .zip(&topo.plans)
        {
            let plan = p.clone();
            // Insertion by the CLT socket API, per request: a kernel encap
            // route would mark every packet to the prefix, CLT on or off.
            let report = netns::run_in(Some(&ns.name), move || {
                let nl = Netlink::open()?;
                plan::apply(
                    &nl,
                    &plan,
                    &Options {
                        insertion: Insertion::Socket,
                    },
                )
            })
            .with_context(|| format!("clt-linux apply on node {}", p.node))?;
            log(format!(
                "clt-linux apply {} ({}):\n{report}",
                p.node, ns.name
            ));
        }
        Ok(topo)
    }
}

/// The congestion: the router's link to the server shaped to `rate_kbit`
/// with room for `limit_bytes` of queue, which a bulk transfer fills.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Congestion {
    pub rate_kbit: u32,
    pub burst_bytes: u32,
    pub limit_bytes: u32,
    /// Bulk TCP flows through the shaped link while congested.
    pub flows: u32,
}

impl Default for Congestion {
    fn default() -> Self {
        // A full queue drains in limit / rate = 250 kB / 10 Mbit/s = 200 ms,
        // the paper's added RTT.
        Congestion {
            rate_kbit: 10_000,
            burst_bytes: 32_000,
            limit_bytes: 250_000,
            flows: 12,
        }
    }
}
