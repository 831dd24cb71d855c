//! `clt-controller rollout` on the leaf-spine example with real switches:
//! its six Linux hosts in network namespaces and its P4 nodes as
//! `simple_switch_grpc` processes, their programs compiled by cltc and
//! `p4c-bm2-ss`, driven over P4Runtime by the rollout engine together with
//! the hosts' kernels.
//!
//! Tofino cannot run here, so the example's two Tofino spines are compiled
//! as bmv2 (`node spineN tofino` becomes `node spineN bmv2`; everything else,
//! ports, ids, links and policies, is the example's). The fabric is then
//! five bmv2 switches (three leaves, two spines) and six Linux hosts. Each
//! switch runs in this test's namespace with veth ports (host-facing veths
//! have their far end, `eth0`, in the host's namespace); its P4Runtime
//! server listens on a free port of 127.0.0.1, written into the source in
//! place of the example's address.
//!
//! The tests: a rollout from scratch; an incremental rollout adding a UDP
//! policy through three switches while UDP traffic with IOAM crosses three
//! other switch hops (no datagram may be lost) and touching only the nodes
//! it must (the others' kernels and entries read back unchanged); an
//! induced failure on a Linux host after every switch was written, and an
//! unreachable switch in the middle of an incremental rollout, both rolled
//! back (every host's kernel and every switch's entries read back).
//!
//! Needs root, `ip`, `simple_switch_grpc`, `p4c-bm2-ss` and `ethtool`;
//! says `skipped: ...` (clt-testkit's report_skip) and returns otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fabric_dir;
mod netns_util;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddrV6, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clt_controller::config::{Config, DEVICE_CONFIG_FILE};
use clt_controller::device::{Device, DeviceSpec};
use clt_controller::inputs::DeviceInputs;
use clt_controller::metrics::Metrics;
use clt_controller::proto::p4::v1 as p4;
use clt_controller::rollout::{self, Compiled};
use clt_testkit::{KillOnDrop, free_port, ip};
use cltc::ir::NodeKind;
use netns_util::{NodeNs, assert_encap_last, receiver, rt, sender};

/// The senders' pace: bmv2 forwards in software, one packet at a time;
/// faster, a busy machine starves the switches and they drop packets for
/// reasons that have nothing to do with IOAM.
const SEND_EVERY: Duration = Duration::from_millis(2);

/// One network at a time: each runs five switches on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn missing() -> Option<String> {
    clt_testkit::skip::netns_unavailable().or_else(|| {
        clt_testkit::skip::tools_missing(&["simple_switch_grpc", "p4c-bm2-ss", "ethtool"])
    })
}

/// A UDP policy web -> store, through leaf1, spine1 and leaf3.
const WEB_STORE: &str = "\npolicy web_store {\n    domain prod\n    from web to store\n    match dst 2001:db8:3:1::/64 proto udp dport 9000\n}\n";
/// A UDP policy cache -> web, through leaf2, spine1 and leaf1.
const CACHE_WEB: &str = "\npolicy cache_web {\n    domain prod\n    from cache to web\n    match dst 2001:db8:1:1::/64 proto udp dport 9001\n}\n";

/// The leaf-spine example with its spines as bmv2 and every P4Runtime
/// address at `ports[node]` on 127.0.0.1.
fn leaf_spine(ports: &BTreeMap<String, u16>) -> String {
    let src = fabric_dir::example("leaf-spine");
    let mut node = String::new();
    let mut out = String::new();
    let mut spines = 0;
    for line in src.lines() {
        let mut line = line.to_string();
        if let Some(rest) = line.strip_prefix("node ") {
            node = rest.split_whitespace().next().unwrap_or("").to_string();
            if line.contains(" tofino {") {
                line = line.replace(" tofino {", " bmv2 {");
                spines += 1;
            }
        }
        if let Some(rest) = line.trim_start().strip_prefix("p4runtime ") {
            let device = rest.split_once(" device ").map(|(_, d)| d).unwrap();
            line = format!(
                "    p4runtime 127.0.0.1:{} device {device}",
                ports[node.as_str()]
            );
        }
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(spines, 2, "the example's two Tofino spines");
    out
}

/// Compiles `src` with cltc into a fresh directory and every bmv2 program
/// with p4c-bm2-ss (as `nodes/NODE/program.json`, the controller's default
/// device config); `cache` keeps p4c's output per program text.
fn compile(src: &str, cache: &mut HashMap<String, Vec<u8>>) -> (tempfile::TempDir, Compiled) {
    let dir = tempfile::tempdir().unwrap();
    let fabric = fabric_dir::write("leaf-spine.clt", src, dir.path());
    let p4c = clt_testkit::skip::find_tool("p4c-bm2-ss").unwrap();
    for n in &fabric.nodes {
        if n.kind != NodeKind::Bmv2 {
            continue;
        }
        let node_dir = dir.path().join("nodes").join(&n.name);
        let program = std::fs::read_to_string(node_dir.join("program.p4")).unwrap();
        let json = match cache.get(&program) {
            Some(j) => j.clone(),
            None => {
                let out = tempfile::tempdir().unwrap();
                let o = clt_bmv2_tests::run_p4c(
                    &p4c,
                    cltc::backend::p4::Target::V1Model,
                    &node_dir.join("program.p4"),
                    out.path(),
                    "program",
                )
                .unwrap_or_else(|e| panic!("p4c-bm2-ss on {}: {e}", n.name));
                let j = std::fs::read(o.output).unwrap();
                cache.insert(program, j.clone());
                j
            }
        };
        std::fs::write(node_dir.join(DEVICE_CONFIG_FILE), json).unwrap();
    }
    let c = Compiled::load(dir.path()).unwrap();
    (dir, c)
}

/// A bmv2 node: (P4Runtime port, device id, its veth ports by number).
type Switch = (u16, u64, Vec<(u32, String)>);

/// The hosts' namespaces, the switches' veth ports and the switches,
/// removed on drop (also when the test fails).
struct Net {
    /// Names the switches' notification sockets.
    id: String,
    /// Linux node -> namespace.
    ns: HashMap<String, String>,
    hosts: NodeNs,
    switches: BTreeMap<String, Switch>,
    running: HashMap<String, KillOnDrop>,
    /// Root-namespace veths (deleting one end deletes the pair).
    links: Vec<String>,
    /// [`SERIAL`], held until all of the above is gone.
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Net {
    fn drop(&mut self) {
        self.running.clear();
        for l in &self.links {
            let _ = clt_testkit::try_ip(&["link", "del", l]);
        }
        for (_, dev, _) in self.switches.values() {
            let _ = std::fs::remove_file(self.ipc(*dev));
        }
    }
}

impl Net {
    /// Namespaces and links for `fabric` (its Linux hosts and bmv2
    /// switches), with P4Runtime ports from `ports`, holding `serial` (the
    /// ports were free while it was held). The switches are not started
    /// yet.
    fn new(
        fabric: &cltc::ir::Fabric,
        ports: &BTreeMap<String, u16>,
        serial: MutexGuard<'static, ()>,
    ) -> Net {
        let linux = fabric.nodes.iter().filter(|n| n.kind == NodeKind::Linux);
        let hosts = NodeNs::new("cb", linux.clone().map(|n| n.name.as_str()));
        for n in linux {
            hosts.no_dad(&n.name);
        }
        let mut net = Net {
            id: clt_testkit::unique("cltrb"),
            ns: hosts.names(),
            hosts,
            switches: BTreeMap::new(),
            running: HashMap::new(),
            links: Vec::new(),
            _serial: serial,
        };
        for n in fabric.nodes.iter().filter(|n| n.kind != NodeKind::Linux) {
            let p = n.p4runtime.as_ref().expect("a P4 node's p4runtime");
            net.switches
                .insert(n.name.clone(), (ports[&n.name], p.device_id, Vec::new()));
        }
        // One veth per link end on a switch, in this namespace; a host's
        // end is its interface, in its namespace.
        let sw_index: HashMap<String, usize> = net
            .switches
            .keys()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        for link in &fabric.links {
            let mut ends = Vec::new();
            for e in [link.a, link.b] {
                let node = &fabric.nodes[e.node.0 as usize];
                let iface = &node.interfaces[e.iface as usize];
                match node.kind {
                    NodeKind::Linux => {
                        ends.push((iface.name.clone(), Some(node.name.clone()), None))
                    }
                    _ => {
                        let port = iface.port.expect("a switch port");
                        let name = clt_testkit::unique_ifname(&format!(
                            "s{}p{port}",
                            sw_index[&node.name]
                        ));
                        net.switches
                            .get_mut(&node.name)
                            .unwrap()
                            .2
                            .push((port, name.clone()));
                        ends.push((
                            name,
                            None,
                            iface.mac.map(|m| m.map(|b| format!("{b:02x}")).join(":")),
                        ));
                    }
                }
            }
            let (a, b) = (&ends[0], &ends[1]);
            let ns_of = |host: &Option<String>| host.as_ref().map(|h| net.hosts[h].name());
            let mut args = vec!["link", "add", "name", a.0.as_str()];
            if let Some(ns) = ns_of(&a.1) {
                args.extend(["netns", ns]);
            }
            args.extend(["type", "veth", "peer", "name", b.0.as_str()]);
            if let Some(ns) = ns_of(&b.1) {
                args.extend(["netns", ns]);
            }
            ip(&args);
            for (name, host, mac) in [a, b] {
                if let Some(host) = host {
                    clt_bmv2_tests::offloads_off(net.hosts[host].name(), name).unwrap();
                    continue;
                }
                net.links.push(name.clone());
                // A switch port: no IPv6 of this namespace's own on it.
                clt_linux::sysctl::write(&format!("net.ipv6.conf.{name}.disable_ipv6"), "1")
                    .unwrap();
                if let Some(mac) = mac {
                    ip(&["link", "set", name, "address", mac]);
                }
                ip(&["link", "set", name, "up"]);
            }
        }
        net
    }

    fn ipc(&self, device: u64) -> PathBuf {
        PathBuf::from(format!("/tmp/{}-{device}-notifications.ipc", self.id))
    }

    /// Starts (or restarts) `node`'s simple_switch_grpc with no pipeline
    /// and waits for its P4Runtime port.
    fn start(&mut self, node: &str) {
        let (grpc, device, ports) = self.switches[node].clone();
        let mut cmd = Command::new("simple_switch_grpc");
        cmd.args(["--device-id", &device.to_string(), "--no-p4"]);
        cmd.arg("--notifications-addr")
            .arg(format!("ipc://{}", self.ipc(device).display()));
        for (port, name) in &ports {
            cmd.arg("-i").arg(format!("{port}@{name}"));
        }
        cmd.args(["--", "--grpc-server-addr", &format!("127.0.0.1:{grpc}")]);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start simple_switch_grpc");
        self.running.insert(node.to_string(), KillOnDrop(child));
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", grpc)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{node}: simple_switch_grpc did not listen on {grpc}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self, node: &str) {
        self.running.remove(node);
    }
}

/// The entries of every writable table of `node`, read over P4Runtime
/// (`None` when the switch has no pipeline), sorted by their text.
async fn switch_entries(dir: &Path, node: &str) -> Option<Vec<String>> {
    let config = Config::from_compiled(dir).unwrap();
    let d = config.devices.iter().find(|d| d.name == node).unwrap();
    let inputs = DeviceInputs::load(&d.inputs).unwrap();
    let dev = Device::new(DeviceSpec::from_config(d), inputs, None, Metrics::default()).unwrap();
    let mut session = dev.open().await.unwrap();
    session.pipeline_cookie().await.ok().flatten()?;
    let tables: Vec<u32> = dev.info().writable_tables().collect();
    let entries: Vec<p4::TableEntry> = session.read_table_entries(&tables).await.unwrap();
    let mut out: Vec<String> = entries.iter().map(|e| dev.info().describe(e)).collect();
    out.sort();
    Some(out)
}

/// Every switch's entries.
fn switches(
    rt: &tokio::runtime::Runtime,
    net: &Net,
    dir: &Path,
) -> BTreeMap<String, Option<Vec<String>>> {
    net.switches
        .keys()
        .filter(|n| net.running.contains_key(*n))
        .map(|n| (n.clone(), rt.block_on(switch_entries(dir, n))))
        .collect()
}

/// The compiled entries of `node`, described as the switch's read-back is.
fn compiled_entries(dir: &Path, node: &str) -> Vec<String> {
    let config = Config::from_compiled(dir).unwrap();
    let d = config.devices.iter().find(|d| d.name == node).unwrap();
    let inputs = DeviceInputs::load(&d.inputs).unwrap();
    let info = clt_controller::P4InfoIndex::new(inputs.pipeline.p4info.clone());
    let mut out: Vec<String> = inputs.entries.iter().map(|e| info.describe(e)).collect();
    out.sort();
    out
}

/// The node ids of the IOAM trace of the next packet to `dst` leaving
/// `switch`'s port `port`, in path order (captured with tshark).
fn trace_at(net: &Net, switch: &str, port: u32, dst: &str) -> Vec<u32> {
    use clt_wire::{HbhHeader, HbhRepr, IpProtocol, Ipv6Packet};
    let veth = &net.switches[switch]
        .2
        .iter()
        .find(|(p, _)| *p == port)
        .unwrap()
        .1;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("capture.pcap");
    let mut tshark = Command::new("tshark")
        .args(["-q", "-i", veth, "-F", "pcap", "-c", "1"])
        .args(["-f", &format!("ip6 dst host {dst}"), "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tshark");
    let t0 = Instant::now();
    let done = loop {
        if let Ok(Some(_)) = tshark.try_wait() {
            break true;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = tshark.kill();
            let _ = tshark.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(done, "no packet to {dst} left {switch} port {port} in 20 s");
    let packets = clt_testkit::pcap::ipv6_packets(&pcap);
    let first = packets.first().expect("an IPv6 packet in the capture");
    let ipv6 = Ipv6Packet::new_checked(&first[..]).expect("IPv6");
    assert_eq!(
        ipv6.next_header(),
        IpProtocol::HopByHop,
        "no Hop-by-Hop header"
    );
    let header = HbhHeader::new_checked(ipv6.payload()).expect("hop-by-hop header");
    let repr = HbhRepr::parse(&header).expect("hop-by-hop options");
    let trace = repr.ioam_trace().expect("an IOAM trace");
    assert!(!trace.overflow());
    trace
        .nodes()
        .map(|n| n.hop_limit_node_id.expect("hop limit and node id").node_id)
        .collect()
}

fn linux_encap(c: &Compiled, node: &str, policy: &str) -> cltc::artifact::linux::EncapPolicy {
    match &c.nodes[node] {
        rollout::Artifact::Linux(p) => p
            .encap
            .iter()
            .find(|e| e.policy == policy)
            .cloned()
            .unwrap_or_else(|| panic!("{node} does not encapsulate {policy}")),
        other => panic!("{node} is not linux: {other:?}"),
    }
}

/// What every test starts from: the network of the leaf-spine variant with
/// its switches running; version 1 (the variant with [`WEB_STORE`]): its
/// source, p4c's cache (for the later versions) and its compiled directory.
fn setup() -> (
    Net,
    String,
    HashMap<String, Vec<u8>>,
    (tempfile::TempDir, Compiled),
) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The topology first (any port), then the source with free ports.
    let base = leaf_spine(
        &["spine1", "spine2", "leaf1", "leaf2", "leaf3"]
            .iter()
            .map(|n| (n.to_string(), 9559))
            .collect(),
    );
    let fabric = cltc::compile_source("leaf-spine.clt", &base)
        .unwrap()
        .fabric;
    let ports: BTreeMap<String, u16> = fabric
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Bmv2)
        .map(|n| (n.name.clone(), free_port()))
        .collect();
    let src = leaf_spine(&ports);
    let mut net = Net::new(&fabric, &ports, serial);
    let names: Vec<String> = net.switches.keys().cloned().collect();
    for n in names {
        net.start(&n);
    }
    let mut cache = HashMap::new();
    let v1_src = format!("{src}{WEB_STORE}");
    let (d1, v1) = compile(&v1_src, &mut cache);
    (net, v1_src, cache, (d1, v1))
}

#[test]
fn switches_and_hosts_roll_out_under_traffic_touching_only_what_changes() {
    clt_testkit::skip_if!(missing());
    let (net, v1_src, mut cache, (d1, v1)) = setup();
    let rt = rt();

    // 1. From scratch: pipelines and entries on five switches, plans on six
    //    hosts, in rollout.json order, each step read back.
    let t0 = Instant::now();
    let mut log = Vec::new();
    let out = rt.block_on(rollout::run(None, &v1, &net.hosts.options(), |d| {
        log.push(d.step.clone())
    }));
    assert!(out.failure.is_none(), "rollout failed:\n{out}");
    eprintln!(
        "from scratch in {:.2} s:\n{out}",
        t0.elapsed().as_secs_f64()
    );
    assert_encap_last(&log);
    let nodes: BTreeSet<String> = v1.nodes.keys().cloned().collect();
    assert_eq!(nodes.len(), 11);
    assert_eq!(out.touched(), nodes, "{out}");
    for (sw, entries) in switches(&rt, &net, d1.path()) {
        assert_eq!(entries, Some(compiled_entries(d1.path(), &sw)), "{sw}");
    }

    // 2. A new policy cache -> web (transit on leaf2, spine1, leaf1), rolled
    //    out while web -> store carries IOAM through leaf1, spine1, leaf3
    //    and cache -> web sends plain datagrams until the encap step of
    //    cache_web is verified, then with IOAM.
    let (d2, v2) = compile(&format!("{v1_src}{CACHE_WEB}"), &mut cache);
    let planned: BTreeSet<String> = rollout::steps(Some(&v1), &v2)
        .into_iter()
        .map(|s| s.node)
        .collect();
    for n in ["leaf1", "spine1", "leaf2", "cache"] {
        assert!(planned.contains(n), "{n} must change: {planned:?}");
    }
    let unchanged: Vec<&str> = ["spine2", "leaf3", "api", "db", "store", "backup"]
        .into_iter()
        .filter(|n| !planned.contains(*n))
        .collect();
    assert_eq!(unchanged.len(), 6, "planned: {planned:?}");
    let hosts_before = net.hosts.snapshot();
    let switches_before = switches(&rt, &net, d1.path());

    let stop = Arc::new(AtomicBool::new(false));
    let (rx1, rx2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (tx1, tx2) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let q1: Arc<Mutex<Vec<u64>>> = Arc::default();
    let q2: Arc<Mutex<Vec<u64>>> = Arc::default();
    let r1 = receiver(
        net.ns["store"].clone(),
        9000,
        stop.clone(),
        rx1.clone(),
        q1.clone(),
    );
    let r2 = receiver(
        net.ns["web"].clone(),
        9001,
        stop.clone(),
        rx2.clone(),
        q2.clone(),
    );
    let send_stop = Arc::new(AtomicBool::new(false));
    let cache_web_on = Arc::new(AtomicBool::new(false));
    let s1 = sender(
        net.ns["web"].clone(),
        SocketAddrV6::new("2001:db8:3:1::10".parse().unwrap(), 9000, 0, 0),
        linux_encap(&v1, "web", "web_store"),
        Arc::new(AtomicBool::new(true)),
        send_stop.clone(),
        tx1.clone(),
        SEND_EVERY,
    );
    let s2 = sender(
        net.ns["cache"].clone(),
        SocketAddrV6::new("2001:db8:1:1::10".parse().unwrap(), 9001, 0, 0),
        linux_encap(&v2, "cache", "cache_web"),
        cache_web_on.clone(),
        send_stop.clone(),
        tx2.clone(),
        SEND_EVERY,
    );
    let t0 = Instant::now();
    while (rx1.load(Ordering::Relaxed) == 0 || rx2.load(Ordering::Relaxed) == 0)
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first datagrams wait for neighbour discovery: count from here.
    std::thread::sleep(Duration::from_millis(300));
    let (base1, base2) = (tx1.load(Ordering::Relaxed), tx2.load(Ordering::Relaxed));
    let mut log = Vec::new();
    // Where each flow's sequence numbers were when each step was verified,
    // to place a loss in the rollout.
    let mut timeline = Vec::new();
    let t0 = Instant::now();
    let out = rt.block_on(rollout::run(Some(&v1), &v2, &net.hosts.options(), |d| {
        if d.step.role == "encap" && d.step.policies.iter().any(|p| p == "cache_web") {
            cache_web_on.store(true, Ordering::Relaxed);
        }
        timeline.push(format!(
            "{} at web->store {}, cache->web {}",
            d.step,
            tx1.load(Ordering::Relaxed),
            tx2.load(Ordering::Relaxed)
        ));
        log.push(d.step.clone());
    }));
    let took = t0.elapsed();
    let mark = tx2.load(Ordering::Relaxed);
    let t0 = Instant::now();
    while cache_web_on.load(Ordering::Relaxed)
        && tx2.load(Ordering::Relaxed) < mark + 20
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    // What the flows carry now, captured where the last switch hands them
    // to the host: the IOAM entries of every hop so far.
    let hops = clt_testkit::skip::find_tool("tshark").map(|_| {
        (
            trace_at(&net, "leaf1", 1, "2001:db8:1:1::10"),
            trace_at(&net, "leaf3", 1, "2001:db8:3:1::10"),
        )
    });
    send_stop.store(true, Ordering::Relaxed);
    let (web_store_on, cache_web_enabled) = (s1.join().unwrap(), s2.join().unwrap());
    // bmv2 forwards in software, slowly on a busy machine: wait until
    // nothing has arrived for half a second.
    let t0 = Instant::now();
    let mut last = (u64::MAX, u64::MAX);
    while t0.elapsed() < Duration::from_secs(10) {
        let now = (rx1.load(Ordering::Relaxed), rx2.load(Ordering::Relaxed));
        if now == last {
            break;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    r1.join().unwrap();
    r2.join().unwrap();
    assert!(out.failure.is_none(), "incremental rollout failed:\n{out}");
    eprintln!("incremental in {:.2} s:\n{out}", took.as_secs_f64());
    assert!(web_store_on && cache_web_enabled, "IOAM was not enabled");
    assert_encap_last(&log);
    assert!(out.touched().is_subset(&planned), "{:?}", out.touched());
    // Nothing is removed: the entries whose priority the new policy shifts
    // are replaced in each switch's apply step.
    assert!(
        log.iter().all(|s| s.phase == rollout::Phase::Apply),
        "{out}"
    );
    for (what, base, sent, seqs) in [
        ("web -> store (IOAM throughout)", base1, &tx1, &q1),
        ("cache -> web (IOAM from its encap step)", base2, &tx2, &q2),
    ] {
        let (sent, missing) = netns_util::lost(what, base, sent, seqs);
        assert!(sent > 100, "{what}: only {sent} sent");
        assert!(
            missing.is_empty(),
            "{what}: lost {} of {}: {missing:?}\nsteps verified:\n{}",
            missing.len(),
            sent,
            timeline.join("\n")
        );
    }
    match hops {
        Some((cache_web, web_store)) => {
            // Node ids: cache 22, leaf2 202, spine1 101, leaf1 201; web 11,
            // leaf3 203.
            assert_eq!(cache_web, [22, 202, 101, 201], "cache -> web's trace");
            assert_eq!(web_store, [11, 201, 101, 203], "web -> store's trace");
            eprintln!(
                "traces after the rollout: cache -> web {cache_web:?}, web -> store {web_store:?}"
            );
        }
        None => clt_testkit::report_skip("the IOAM traces on the wire: tshark not on PATH"),
    }
    // Untouched nodes read back as before; changed switches hold v2.
    let hosts_after = net.hosts.snapshot();
    let switches_after = switches(&rt, &net, d2.path());
    for n in &unchanged {
        match switches_before.get(*n) {
            Some(before) => assert_eq!(before, &switches_after[*n], "{n} was touched"),
            None => assert_eq!(hosts_before[*n], hosts_after[*n], "{n} was touched"),
        }
    }
    for (sw, entries) in &switches_after {
        assert_eq!(entries, &Some(compiled_entries(d2.path(), sw)), "{sw}");
    }
}

#[test]
fn a_failure_rolls_back_hosts_and_switches() {
    clt_testkit::skip_if!(missing());
    let (mut net, v1_src, mut cache, (d1, v1)) = setup();
    let rt = rt();

    // 1. From scratch, failing on the host db after every switch and two
    //    hosts were configured: db has no eth0.
    ip(&[
        "-n",
        &net.ns["db"],
        "link",
        "set",
        "dev",
        "eth0",
        "name",
        "wrong",
    ]);
    let hosts_before = net.hosts.snapshot();
    let out = rt.block_on(rollout::run(None, &v1, &net.hosts.options(), |_| {}));
    eprintln!("{out}");
    let failure = out.failure.as_ref().expect("the rollout should fail");
    assert_eq!(
        (failure.step.node.as_str(), failure.step.role.as_str()),
        ("db", "forwarding"),
        "{out}"
    );
    let undone: BTreeSet<&str> = failure.undone.iter().map(|s| s.node.as_str()).collect();
    let expected: BTreeSet<&str> = ["spine1", "spine2", "leaf1", "leaf2", "leaf3", "web", "api"]
        .into_iter()
        .collect();
    assert_eq!(undone, expected, "{out}");
    assert!(failure.undo_errors.is_empty(), "{out}");
    // Every host as before; every switch has its pipeline (a pushed program
    // stays) and no entry, as before the rollout.
    assert_eq!(
        hosts_before,
        net.hosts.snapshot(),
        "a host was not rolled back"
    );
    for (sw, entries) in switches(&rt, &net, d1.path()) {
        assert_eq!(entries, Some(vec![]), "{sw} was not rolled back");
    }
    ip(&[
        "-n",
        &net.ns["db"],
        "link",
        "set",
        "dev",
        "wrong",
        "name",
        "eth0",
    ]);
    let out = rt.block_on(rollout::run(None, &v1, &net.hosts.options(), |_| {}));
    assert!(out.failure.is_none(), "{out}");

    // 2. Incremental, failing on a switch: leaf2 stops answering once
    //    leaf1's first step is verified; spine1 and leaf1 already hold v2's
    //    entries (new policy, new priorities) and go back to v1's.
    let (_d2, v2) = compile(&format!("{v1_src}{CACHE_WEB}"), &mut cache);
    let hosts_before = net.hosts.snapshot();
    let switches_before = switches(&rt, &net, d1.path());
    let mut killed = false;
    let out = rt.block_on(rollout::run(Some(&v1), &v2, &net.hosts.options(), |d| {
        if d.step.node == "leaf1" && !killed {
            net.kill("leaf2");
            killed = true;
        }
    }));
    eprintln!("{out}");
    let failure = out.failure.as_ref().expect("the rollout should fail");
    assert_eq!(failure.step.node, "leaf2", "{out}");
    assert!(failure.cause.contains("unreachable"), "{}", failure.cause);
    let undone: BTreeSet<&str> = failure.undone.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(undone, BTreeSet::from(["spine1", "leaf1"]), "{out}");
    assert!(failure.undo_errors.is_empty(), "{out}");
    assert_eq!(hosts_before, net.hosts.snapshot(), "a host changed");
    let after = switches(&rt, &net, d1.path());
    for (sw, entries) in &after {
        assert_eq!(entries, &switches_before[sw], "{sw} was not rolled back");
        assert_eq!(entries, &Some(compiled_entries(d1.path(), sw)), "{sw}");
    }
    assert_eq!(after.len(), 4, "every switch but leaf2 read back");
}

/// Copies a compiled fabric's files into `to`, replacing what was there (as
/// `cltc compile -o` over an existing output does).
fn replace_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    rollout::snapshot(from, to).unwrap();
}

#[test]
fn the_daemon_rolls_out_each_version_to_the_switches() {
    clt_testkit::skip_if!(missing());
    let (net, v1_src, mut cache, (d1, _v1)) = setup();
    let rt = rt();
    let (d2, _v2) = compile(&format!("{v1_src}{CACHE_WEB}"), &mut cache);
    let work = tempfile::tempdir().unwrap();
    let fabric = work.path().join("fabric");
    replace_dir(d1.path(), &fabric);
    let netns: Vec<String> = net
        .ns
        .iter()
        .map(|(n, ns)| format!("{n} = \"{ns}\""))
        .collect();
    let toml = format!(
        "[rollout]\ncompiled = \"fabric\"\nnetns = {{ {} }}\npoll_secs = 1\nstate_dir = \"state\"\n",
        netns.join(", ")
    );
    let config = Config::parse(&toml, work.path()).unwrap();
    let wait = |rx: &mut tokio::sync::watch::Receiver<clt_controller::daemon::RolloutStatus>,
                n: u64| {
        rt.block_on(async {
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                rx.wait_for(|s| s.succeeded == n || s.failed > 0),
            )
            .await
            .map(|r| r.map(|s| s.clone()));
            match r {
                Ok(Ok(s)) => s,
                _ => panic!("timed out waiting for rollout {n}: {:?}", rx.borrow()),
            }
        })
    };
    let daemon = rt
        .block_on(clt_controller::daemon::Daemon::start(&config))
        .unwrap();
    let mut status = daemon.rollout.clone().unwrap();
    let s = wait(&mut status, 1);
    assert!(!s.failing, "{}", s.last_report);
    // The daemon manages the switches between rollouts; the next rollout
    // stops those sessions and opens its own.
    std::thread::sleep(Duration::from_secs(2));
    replace_dir(d2.path(), &fabric);
    let s = wait(&mut status, 2);
    assert!(!s.failing, "{}", s.last_report);
    eprintln!("the daemon's second rollout:\n{}", s.last_report);
    rt.block_on(daemon.shutdown());
    for (sw, entries) in switches(&rt, &net, d2.path()) {
        assert_eq!(entries, Some(compiled_entries(d2.path(), &sw)), "{sw}");
    }
    for n in ["web", "api", "db", "cache", "store", "backup"] {
        let Some(rollout::Artifact::Linux(plan)) =
            Compiled::load(d2.path()).unwrap().nodes.get(n).cloned()
        else {
            panic!("{n} is not linux")
        };
        let left = clt_linux::netns::run_in(Some(&net.ns[n]), move || {
            let nl = clt_linux::nl::Netlink::open()?;
            let r = clt_linux::plan::diff(&nl, &plan, &clt_linux::plan::Options::default())?;
            Ok(r.changes.len())
        })
        .unwrap();
        assert_eq!(left, 0, "{n} differs from v2");
    }
}
