//! The fabric in network namespaces.
//!
//! Data plane (IPv6, configured only by `clt-linux` from `cltc` plans, and
//! with a bmv2 router by p4c-bm2-ss and `clt-controller` from cltc's P4
//! artifacts):
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
use cltc::ir::{Fabric, NodeKind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The policy file compiled by default (`examples/login/login.clt`).
pub const POLICY: &str = include_str!("../login.clt");

/// The policy compiled for the bmv2 router (`examples/login/login-bmv2.clt`).
pub const POLICY_BMV2: &str = include_str!("../login-bmv2.clt");

/// What the router is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum RouterKind {
    /// The Linux kernel's IPv6 forwarding and IOAM transit.
    Linux,
    /// simple_switch_grpc running cltc's P4 program.
    Bmv2,
}

impl RouterKind {
    /// The unit of the queue depth the router writes into its IOAM entry.
    pub fn queue_unit(self) -> &'static str {
        match self {
            RouterKind::Linux => "bytes",
            RouterKind::Bmv2 => "packets",
        }
    }
}

/// The tools the bmv2 router needs on `PATH`.
pub const BMV2_TOOLS: [&str; 3] = ["simple_switch_grpc", "p4c-bm2-ss", "ethtool"];

/// The first of [`BMV2_TOOLS`] missing from `PATH`, if any.
pub fn missing_bmv2_tool() -> Option<&'static str> {
    BMV2_TOOLS
        .into_iter()
        .find(|t| clt_bmv2_tests::find_tool(t).is_none())
}

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
    /// The bmv2 router's switch process: declared first, so that it is
    /// stopped before its namespace goes.
    pub switch: Option<Switch>,
    pub entry: Netns,
    pub router: Netns,
    pub server: Netns,
    pub obs: Netns,
    pub router_kind: RouterKind,
    /// The Linux plans applied (entry, router if Linux, server).
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
    pub fabric: Fabric,
    /// The plan of each Linux node among those asked for, in order.
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
        if compiled.fabric.nodes[idx].kind != NodeKind::Linux {
            continue;
        }
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
        fabric: compiled.fabric,
        plans,
        policy,
        node_names,
    })
}

static RUN: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// Creates the namespaces and links, applies the Linux plans and, with
    /// a bmv2 router, starts the switch and installs its program (the
    /// compiled files go to `workdir/compiled`).
    pub fn build(
        src: &str,
        router_kind: RouterKind,
        workdir: &Path,
        log: &mut impl FnMut(String),
    ) -> Result<Topology> {
        let Compiled {
            fabric,
            plans,
            policy,
            node_names,
        } = compile(src, &["entry", "router", "server"])?;
        let router_node = fabric
            .nodes
            .iter()
            .find(|n| n.name == "router")
            .context("the policy has no node `router`")?;
        let declared = match router_node.kind {
            NodeKind::Linux => RouterKind::Linux,
            NodeKind::Bmv2 => RouterKind::Bmv2,
            other => bail!("the router is a {other:?} node: the demo runs linux or bmv2 routers"),
        };
        if declared != router_kind {
            bail!(
                "the policy's router is a {declared:?} node, but the demo runs a {router_kind:?} router (--router, --policy)"
            );
        }
        let collector = policy.collector.clone();
        let server_plan = plans
            .iter()
            .find(|p| p.node == "server")
            .context("the server is not a linux node")?;
        let server_addr = server_plan
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
        let mut topo = Topology {
            switch: None,
            entry,
            router,
            server,
            obs,
            router_kind,
            plans,
            node_names,
            server_addr,
            policy,
            collector,
        };
        for p in &topo.plans {
            let ns = match p.node.as_str() {
                "entry" => &topo.entry,
                "router" => &topo.router,
                "server" => &topo.server,
                other => bail!("no namespace for node `{other}`"),
            };
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
        if router_kind == RouterKind::Bmv2 {
            topo.switch = Some(Switch::start(&topo, &fabric, workdir, log)?);
        }
        Ok(topo)
    }
}

/// Runs `f` on a new thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = ns.to_string();
    let t = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            netns::enter(&ns)?;
            f()
        })?;
    match t.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// The bmv2 router: simple_switch_grpc in the router's namespace with the
/// two veths as its ports, killed on drop.
#[derive(Debug)]
pub struct Switch {
    child: Child,
    /// The directory of `cltc compile`'s output, with p4c's `program.json`.
    pub compiled: PathBuf,
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Switch {
    /// Compiles the router's program (cltc's artifacts, then p4c-bm2-ss),
    /// prepares the hosts' links for a software switch, starts
    /// simple_switch_grpc and installs the pipeline and entries with the
    /// clt-controller library.
    fn start(
        topo: &Topology,
        fabric: &Fabric,
        workdir: &Path,
        log: &mut impl FnMut(String),
    ) -> Result<Switch> {
        if let Some(tool) = missing_bmv2_tool() {
            bail!("the bmv2 router needs `{tool}` on PATH");
        }
        let idx = fabric
            .nodes
            .iter()
            .position(|n| n.name == "router")
            .context("no router")?;
        let node = &fabric.nodes[idx];
        let p4rt = node
            .p4runtime
            .clone()
            .context("the bmv2 router has no `p4runtime` address")?;

        // cltc's output, as `cltc compile` writes it.
        let compiled = workdir.join("compiled");
        let _ = std::fs::remove_dir_all(&compiled);
        for out in cltc::output::files("login-bmv2.clt", fabric) {
            let path = compiled.join(&out.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&path, &out.contents)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let node_dir = compiled.join("nodes").join(&node.name);
        let p4c = clt_bmv2_tests::find_tool("p4c-bm2-ss").context("p4c-bm2-ss")?;
        let started = Instant::now();
        clt_bmv2_tests::run_p4c(
            &p4c,
            cltc::backend::p4::Target::V1Model,
            &node_dir.join("program.p4"),
            &node_dir,
            "program",
        )?;
        log(format!(
            "p4c-bm2-ss {} ({:.1} s)\n",
            node_dir.join("program.p4").display(),
            started.elapsed().as_secs_f64()
        ));

        // The switch's ports: the router's veth towards each port's peer.
        let mut ports = Vec::new();
        for i in &node.interfaces {
            let port = i.port.context("a bmv2 interface without a port number")?;
            let peer = i
                .peer
                .map(|e| fabric.nodes[e.node.0 as usize].name.as_str())
                .with_context(|| format!("router port {port} has no link"))?;
            let dev = match peer {
                "entry" => "eth0",
                "server" => "eth1",
                other => bail!("router port {port} is linked to `{other}`, not entry or server"),
            };
            if let Some(mac) = i.mac {
                run(&[
                    "ip",
                    "-n",
                    &topo.router.name,
                    "link",
                    "set",
                    dev,
                    "address",
                    &mac.map(|b| format!("{b:02x}")).join(":"),
                ])?;
            }
            run(&["ip", "-n", &topo.router.name, "link", "set", dev, "up"])?;
            ports.push(format!("{port}@{dev}"));
        }
        // The router's kernel stays out of the data plane.
        run(&[
            "ip",
            "netns",
            "exec",
            &topo.router.name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ])?;
        // A software switch reads and writes whole frames: the hosts must
        // not leave checksums to the veth nor hand it TSO/GSO segments.
        for ns in [&topo.entry, &topo.server] {
            clt_bmv2_tests::offloads_off(&ns.name, "eth0")
                .context("switching off the hosts' offloads for the switch")?;
        }

        let log_path = workdir.join("simple_switch_grpc.log");
        let log_file = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &topo.router.name, "simple_switch_grpc"])
            .args(["--device-id", &p4rt.device_id.to_string(), "--no-p4"]);
        for p in &ports {
            cmd.args(["-i", p]);
        }
        cmd.args(["--", "--grpc-server-addr", &p4rt.address])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = cmd.spawn().context("starting simple_switch_grpc")?;
        let mut switch = Switch { child, compiled };
        log(format!(
            "simple_switch_grpc --device-id {} {} on {} ({})\n",
            p4rt.device_id,
            ports.join(" "),
            p4rt.address,
            topo.router.name
        ));

        // Its P4Runtime server, on the router namespace's loopback.
        let addr: std::net::SocketAddr = p4rt
            .address
            .parse()
            .with_context(|| format!("p4runtime address `{}`", p4rt.address))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = switch.child.try_wait()? {
                bail!(
                    "simple_switch_grpc exited ({status}), see {}",
                    log_path.display()
                );
            }
            let up = in_netns(&topo.router.name, move || {
                Ok(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
            })?;
            if up {
                break;
            }
            if Instant::now() > deadline {
                bail!("simple_switch_grpc's P4Runtime server did not come up on {addr}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }

        // clt-controller: pipeline, digests and entries.
        let dir = switch.compiled.clone();
        let name = node.name.clone();
        let report = in_netns(&topo.router.name, move || install(&dir, &name))?;
        log(format!("clt-controller install router: {report}\n"));
        Ok(switch)
    }
}

/// Installs `cltc compile`'s output in `dir` on device `name` with the
/// clt-controller library; returns what it did.
fn install(dir: &Path, name: &str) -> Result<String> {
    use clt_controller::config::Config;
    use clt_controller::device::{Device, DeviceSpec};
    use clt_controller::inputs::DeviceInputs;
    let config = Config::from_compiled(dir)?;
    let d = config
        .devices
        .iter()
        .find(|d| d.name == name)
        .with_context(|| format!("{} has no P4 node `{name}`", dir.display()))?;
    let inputs = DeviceInputs::load(&d.inputs)?;
    let dev = Device::new(
        DeviceSpec::from_config(d),
        inputs,
        None,
        clt_controller::metrics::Metrics::default(),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut session = dev.open().await?;
        if session.mastership() != clt_controller::Mastership::Primary {
            bail!("another controller is primary ({:?})", session.mastership());
        }
        let r = dev.install(&mut session).await?.into_result()?;
        Ok(format!(
            "pipeline and {} entries ({} batches)",
            r.inserted + r.modified + r.unchanged,
            r.batches
        ))
    })
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

impl Congestion {
    /// The default congestion for `router`. bmv2 sends through a packet
    /// socket whose send buffer the shaped link fills; the switch's transmit
    /// thread then blocks, its 128-packet output buffer fills, and only then
    /// its egress queue (the one P4 sees as `deq_qdepth`). 12 flows fill the
    /// output buffer but leave the egress queue mostly empty; 48 fill it
    /// (measured).
    pub fn for_router(router: RouterKind) -> Congestion {
        match router {
            RouterKind::Linux => Congestion::default(),
            RouterKind::Bmv2 => Congestion {
                flows: 48,
                ..Congestion::default()
            },
        }
    }
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
