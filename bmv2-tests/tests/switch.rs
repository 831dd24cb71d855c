//! bmv2 end to end: `examples/login.clt`'s router as simple_switch_grpc
//! between two network namespaces (entry, server), its program compiled by
//! cltc and p4c-bm2-ss, installed by clt-controller over P4Runtime. The
//! entry host sends a TCP SYN carrying the CLT Hop-by-Hop header (what the
//! CLT socket API writes); the capture at the server must show it forwarded
//! (MACs rewritten, hop limit decremented) with the router's entry filled.
//! With the policy ending at the router, the switch decapsulates: the packet
//! leaves without the Hop-by-Hop header and `clt-controller run` forwards the
//! digest's trace to an in-test IOAM API receiver. With the policy starting
//! at the router, the switch encapsulates a plain SYN: the IOAM trace with
//! its own entry and no CLT option, read by clt-wire and by tshark's IOAM
//! dissector. A switch killed and
//! restarted under the daemon forwards again once the daemon has reinstalled
//! it.
//!
//! Needs root, `ip`, `simple_switch_grpc`, `p4c-bm2-ss`, `tshark`, `python3`
//! and the `clt-controller` binary (built by `cargo test --workspace`, or
//! named by `CLT_CONTROLLER`); says `skipped: ...` and returns otherwise.

use clt_bmv2_tests::controller_bin;
use clt_proto::ioam_api::IoamTrace;
use clt_proto::ioam_api::ioam_service_server::{IoamService, IoamServiceServer};
use clt_testkit::skip::{self, find_tool};
use clt_testkit::{KillOnDrop, Netns, free_port, ip, run_command, tshark, unique_ifname};
use clt_wire::node::NodeRepr;
use clt_wire::{CltRepr, HbhBuilder, HbhHeader, HbhRepr, IpProtocol, Ipv6Packet, TraceType};
use cltc::backend::p4::{self, Target};
use cltc::ir::NodeIdx;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !skip::is_root() {
        return Some("not root".to_string());
    }
    if let Some(why) = skip::tools_missing(&[
        "ip",
        "simple_switch_grpc",
        "p4c-bm2-ss",
        "tshark",
        "python3",
    ]) {
        return Some(why);
    }
    if controller_bin().is_none() {
        return Some("clt-controller not built (cargo build -p clt-controller)".to_string());
    }
    None
}

/// Everything the test created, removed on drop (also when it fails).
struct Fabric {
    entry: Netns,
    server: Netns,
    /// Root-namespace veth ends (deleting one end deletes the pair).
    links: Vec<String>,
    /// The switch's ports (`1@ports[0]`, `2@ports[1]`).
    ports: Vec<String>,
    switch: Option<KillOnDrop>,
    children: Vec<KillOnDrop>,
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // The processes, then the links; the namespaces go with the fields.
        self.children.clear();
        self.switch = None;
        for link in &self.links {
            let _ = clt_testkit::try_ip(&["link", "del", link]);
        }
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first frame of a classic pcap file (link type Ethernet).
fn first_packet(pcap: &Path) -> Vec<u8> {
    let frames = clt_testkit::pcap::ethernet_frames(pcap);
    frames.into_iter().next().expect("empty capture")
}

/// A linux host, a bmv2 switch and a linux server as in `login.clt`, with
/// the switch running (no pipeline yet) and the compiled files in `dir`.
struct Topology {
    // Declared first so the processes and namespaces go before the files.
    net: Fabric,
    dir: tempfile::TempDir,
    fabric: cltc::ir::Fabric,
    server_if: String,
    grpc: u16,
}

const ENTRY_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const ROUTER_MAC1: [u8; 6] = [2, 0, 0, 0, 2, 1];
const ROUTER_MAC2: [u8; 6] = [2, 0, 0, 0, 2, 2];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 3, 1];

impl Topology {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Compiles `src`'s `router` (cltc, then p4c), builds the namespaces and
    /// starts simple_switch_grpc.
    /// The source's `p4runtime 127.0.0.1:9559` is replaced by the switch's
    /// port; `cltc compile`'s output goes to `compiled/` (with p4c's JSON
    /// as `nodes/router/program.json`).
    fn new(name: &str, src: &str) -> Topology {
        let grpc = free_port();
        let src = &src.replace("127.0.0.1:9559", &format!("127.0.0.1:{grpc}"));
        let fabric = cltc::compile_source(name, src)
            .unwrap_or_else(|d| panic!("{}", d.render(name, src)))
            .fabric;
        let router = fabric
            .nodes
            .iter()
            .position(|n| n.name == "router")
            .expect("router");
        let artifacts = p4::compile(&fabric, NodeIdx(router as u32), Target::V1Model);
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = |name: &str| dir.path().join(name);
        std::fs::write(file("router.p4"), &artifacts.program).expect("write program");
        std::fs::write(file("router.p4info.txtpb"), &artifacts.p4info).expect("write p4info");
        std::fs::write(file("router.entries.txtpb"), &artifacts.entries).expect("write entries");
        let p4c = find_tool("p4c-bm2-ss").expect("p4c");
        clt_bmv2_tests::run_p4c(
            &p4c,
            Target::V1Model,
            &file("router.p4"),
            dir.path(),
            "router",
        )
        .expect("p4c-bm2-ss compiles the router");
        for out in cltc::output::files(name, &fabric) {
            let path = file("compiled").join(&out.path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("create directory");
            std::fs::write(&path, &out.contents).expect("write compile output");
        }
        std::fs::copy(
            file("router.json"),
            file("compiled/nodes/router/program.json"),
        )
        .expect("copy the bmv2 JSON");

        // Namespaces and links, with login.clt's addresses and MACs.
        let (port1, port2) = (unique_ifname("cp1-"), unique_ifname("cp2-"));
        let (entry_if, server_if) = (unique_ifname("ce-"), unique_ifname("cs-"));
        let mut net = Fabric {
            entry: Netns::new("clt-e"),
            server: Netns::new("clt-s"),
            links: vec![],
            ports: vec![],
            switch: None,
            children: vec![],
        };
        for (host_if, port, ns, host_mac, port_mac) in [
            (&entry_if, &port1, &net.entry, ENTRY_MAC, ROUTER_MAC1),
            (&server_if, &port2, &net.server, SERVER_MAC, ROUTER_MAC2),
        ] {
            ip(&[
                "link", "add", "name", host_if, "type", "veth", "peer", "name", port,
            ]);
            net.links.push(port.clone());
            ip(&["link", "set", port, "address", &mac_text(port_mac), "up"]);
            ip(&["link", "set", host_if, "netns", ns.name()]);
            ns.ip(&["link", "set", host_if, "address", &mac_text(host_mac), "up"]);
            ns.sysctl(&format!("net.ipv6.conf.{host_if}.accept_dad"), "0");
        }
        let routes = [
            (
                &net.entry,
                &entry_if,
                "db01::1/64",
                "db02::/64",
                ROUTER_MAC1,
            ),
            (
                &net.server,
                &server_if,
                "db02::2/64",
                "db01::/64",
                ROUTER_MAC2,
            ),
        ];
        for (ns, dev, address, remote, gw_mac) in routes {
            // The router's link-local address, as cltc derives it.
            let gw = cltc::model::link_local(gw_mac).to_string();
            ns.ip(&["-6", "addr", "add", address, "dev", dev, "nodad"]);
            ns.ip(&[
                "-6",
                "neigh",
                "add",
                &gw,
                "lladdr",
                &mac_text(gw_mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
            ns.ip(&["-6", "route", "add", remote, "via", &gw, "dev", dev]);
        }
        let mut topology = Topology {
            net,
            dir,
            fabric,
            server_if,
            grpc,
        };
        topology.net.ports = vec![port1, port2];
        topology.start_switch();
        topology
    }

    /// Starts simple_switch_grpc (no pipeline) and waits for its gRPC port.
    fn start_switch(&mut self) {
        let grpc = self.grpc;
        let switch = Command::new("simple_switch_grpc")
            .args(["--device-id", "1", "--no-p4"])
            .args([
                "-i",
                &format!("1@{}", self.net.ports[0]),
                "-i",
                &format!("2@{}", self.net.ports[1]),
            ])
            .args(["--", "--grpc-server-addr", &format!("127.0.0.1:{grpc}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start simple_switch_grpc");
        self.net.switch = Some(KillOnDrop(switch));
        wait_for("simple_switch_grpc", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", grpc)).is_ok()
        });
    }

    /// Kills simple_switch_grpc and waits until it is gone.
    fn kill_switch(&mut self) {
        self.net.switch = None;
    }

    /// Writes `controller.toml` for the router, with `collector`.
    fn controller_config(&self, collector: u16) -> PathBuf {
        let config = format!(
            "[collector]\naddress = \"127.0.0.1:{collector}\"\n\n[[device]]\nname = \"router\"\naddress = \"127.0.0.1:{}\"\ndevice_id = 1\np4info = \"router.p4info.txtpb\"\nentries = \"router.entries.txtpb\"\ndevice_config = \"router.json\"\nprogram = \"router.p4\"\n",
            self.grpc
        );
        let path = self.file("controller.toml");
        std::fs::write(&path, config).expect("write config");
        path
    }

    /// Installs the router's pipeline and entries once, with
    /// `clt-controller install` (its collector is a port nothing listens on).
    fn install(&self) {
        let config = self.controller_config(free_port());
        run_command(
            Command::new(controller_bin().expect("controller"))
                .args(["install", "--config"])
                .arg(&config),
        );
    }

    /// Starts capturing the first packet to the server on its interface (a
    /// BPF "tcp" would not look past the Hop-by-Hop header); returns the
    /// capture's file and process.
    fn capture(&self, name: &str) -> (PathBuf, KillOnDrop) {
        let pcap = self.file(name);
        let capture = (self.net.server.command("tshark"))
            .args(["-q", "-i", &self.server_if, "-F", "pcap"])
            .args(["-c", "1", "-f", "ip6 dst host db02::2", "-w"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tshark");
        let capture = KillOnDrop(capture);
        wait_for("the capture to start", Duration::from_secs(20), || {
            pcap.exists()
        });
        std::thread::sleep(Duration::from_millis(500));
        (pcap, capture)
    }

    /// Sends TCP SYNs to the server from the entry host, with `hbh` as
    /// their Hop-by-Hop header (none if empty), until `capture` has its
    /// packet; returns the captured frame.
    fn send_until_captured(&self, hbh: &[u8], pcap: &Path, mut capture: KillOnDrop) -> Vec<u8> {
        let hex: String = hbh.iter().map(|b| format!("{b:02x}")).collect();
        let script = "import socket,sys\n\
s=socket.socket(socket.AF_INET6,socket.SOCK_STREAM)\n\
h=bytes.fromhex(sys.argv[1])\n\
if h:\n    s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_HOPOPTS,h)\n\
s.settimeout(1)\n\
try:\n    s.connect(('db02::2',443))\nexcept OSError:\n    pass\n";
        let start = Instant::now();
        loop {
            let _ = (self.net.entry.command("python3"))
                .args(["-c", script, &hex])
                .output()
                .expect("run python3");
            if let Ok(Some(_)) = capture.try_wait() {
                break;
            }
            assert!(
                start.elapsed() <= Duration::from_secs(30),
                "no packet reached the server in 30 s"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        first_packet(pcap)
    }
}

/// The CLT Hop-by-Hop header the CLT socket API writes: an empty trace of
/// the fabric's first domain and the request's ids.
fn clt_hbh(fabric: &cltc::ir::Fabric, trace_id: u128, span_id: u64) -> Vec<u8> {
    HbhBuilder::new()
        .next_header(IpProtocol::Tcp)
        .trace(
            fabric.domains[0].namespace,
            fabric.domains[0].trace_type,
            usize::from(fabric.domains[0].prealloc_len),
        )
        .clt(CltRepr::from_ids(trace_id, span_id))
        .build()
        .expect("build the hop-by-hop header")
}

/// `examples/login.clt`: entry -> router (bmv2) -> server, one policy from
/// entry to server.
fn login_clt() -> String {
    std::fs::read_to_string(clt_bmv2_tests::examples_dir().join("login.clt")).expect("login.clt")
}

const TRACE_ID: u128 = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;
const SPAN_ID: u64 = 0x1122_3344_5566_7788;

#[test]
fn a_transit_switch_forwards_and_fills_its_entry() {
    clt_testkit::skip_if!(missing());
    let src = login_clt();
    let topo = Topology::new("login.clt", &src);
    topo.install();

    let (pcap, capture) = topo.capture("server.pcap");
    let fabric = &topo.fabric;
    let hbh = clt_hbh(fabric, TRACE_ID, SPAN_ID);
    let frame = topo.send_until_captured(&hbh, &pcap, capture);
    let trace_type = fabric.domains[0].trace_type;
    let size = usize::from(fabric.domains[0].prealloc_len);
    let (trace_id, span_id) = (TRACE_ID, SPAN_ID);
    // Forwarded: MACs rewritten, hop limit decremented.
    assert_eq!(frame[..6], SERVER_MAC, "destination MAC");
    assert_eq!(frame[6..12], ROUTER_MAC2, "source MAC");
    let ipv6 = Ipv6Packet::new_checked(&frame[14..]).expect("IPv6");
    assert_eq!(ipv6.hop_limit(), 63);
    assert_eq!(ipv6.next_header(), IpProtocol::HopByHop);
    let header = HbhHeader::new_checked(ipv6.payload()).expect("hop-by-hop header");
    let repr = HbhRepr::parse(&header).expect("hop-by-hop options");
    assert_eq!(repr.clt().map(|c| c.trace_id_u128()), Some(trace_id));
    assert_eq!(repr.clt().map(|c| c.span_id_u64()), Some(span_id));
    let trace = repr.ioam_trace().expect("IOAM trace");
    assert!(!trace.overflow());

    // The router's entry: the last one, as Linux would have written it.
    let per_hop = usize::from(trace_type.node_len()) * 4;
    assert_eq!(usize::from(trace.remaining_len) * 4, size - per_hop);
    let (node, _) = NodeRepr::parse(TraceType::from_bits(trace_type.bits()), trace.filled())
        .expect("the router's entry");
    let id = node.hop_limit_node_id.expect("hop limit and node id");
    assert_eq!((id.hop_limit, id.node_id), (63, 2));
    let ifs = node.interface_ids.expect("interface ids");
    assert_eq!((ifs.ingress, ifs.egress), (21, 22));
    let depth = node.queue_depth.expect("queue depth");
    assert_ne!(depth, u32::MAX, "bmv2 knows its queue depth");

    // tshark's IOAM dissector reads the same entry, after the CLT option.
    let options = dissect_router_entry(&pcap, fabric.domains[0].namespace);
    assert!(options.contains(&0x1e), "the CLT option: {options:?}");
}

/// An IOAM API receiver (`ioam_api.IOAMService/Report`) on 127.0.0.1: the
/// traces the controller forwards arrive on `traces`.
struct Receiver {
    port: u16,
    traces: std::sync::mpsc::Receiver<IoamTrace>,
    // Dropped last: stops the server.
    _runtime: tokio::runtime::Runtime,
}

struct Collect(std::sync::Mutex<std::sync::mpsc::Sender<IoamTrace>>);

#[tonic::async_trait]
impl IoamService for Collect {
    async fn report(
        &self,
        request: tonic::Request<tonic::Streaming<IoamTrace>>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        let mut stream = request.into_inner();
        while let Some(trace) = stream.message().await? {
            let _ = self.0.lock().expect("sender").send(trace);
        }
        Ok(tonic::Response::new(()))
    }
}

impl Receiver {
    fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        let (tx, traces) = std::sync::mpsc::channel();
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(IoamServiceServer::new(Collect(std::sync::Mutex::new(tx))))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Receiver {
            port,
            traces,
            _runtime: runtime,
        }
    }
}

/// `login.clt` with the policy ending at the router: the switch decapsulates.
fn decap_clt() -> String {
    let login = login_clt();
    let decap = login.replacen("from entry to server", "from entry to router", 1);
    assert_ne!(decap, login, "login.clt's policy goes from entry to server");
    decap
}

#[test]
fn a_decapsulating_switch_removes_the_header_and_reports_the_trace() {
    clt_testkit::skip_if!(missing());
    let mut topo = Topology::new("decap.clt", &decap_clt());
    let receiver = Receiver::start();
    let daemon = Command::new(controller_bin().expect("controller"))
        .args(["run", "--compiled"])
        .arg(topo.file("compiled"))
        .args(["--collector", &format!("127.0.0.1:{}", receiver.port)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clt-controller run");
    topo.net.children.push(KillOnDrop(daemon));

    let (pcap, capture) = topo.capture("server.pcap");
    let hbh = clt_hbh(&topo.fabric, TRACE_ID, SPAN_ID);
    let frame = topo.send_until_captured(&hbh, &pcap, capture);

    // Forwarded without the Hop-by-Hop header: next header and payload
    // length restored.
    assert_eq!(frame[..6], SERVER_MAC, "destination MAC");
    assert_eq!(frame[6..12], ROUTER_MAC2, "source MAC");
    let ipv6 = Ipv6Packet::new_checked(&frame[14..]).expect("IPv6");
    assert_eq!(ipv6.hop_limit(), 63);
    assert_eq!(
        ipv6.next_header(),
        IpProtocol::Tcp,
        "hop-by-hop header removed"
    );
    assert_eq!(
        usize::from(ipv6.payload_len()),
        frame.len() - 14 - 40,
        "payload length restored"
    );

    // The digest's trace at the collector: the request's ids and the
    // router's entry.
    let trace = receiver
        .traces
        .recv_timeout(Duration::from_secs(20))
        .expect("a trace at the collector");
    assert_eq!(
        trace.namespace_id,
        u32::from(topo.fabric.domains[0].namespace)
    );
    assert_eq!(
        (u128::from(trace.trace_id_high) << 64) | u128::from(trace.trace_id_low),
        TRACE_ID
    );
    assert_eq!(trace.span_id, SPAN_ID);
    assert_eq!(
        trace.nodes.len(),
        1,
        "only the router filled: {:?}",
        trace.nodes
    );
    let node = &trace.nodes[0];
    assert_eq!(node.id, 2);
    assert_eq!(node.ingress_id, 21);
}

/// The router's entry in a forwarded frame's trace: node 2, interfaces 21
/// and 22.
fn assert_router_entry(frame: &[u8], fabric: &cltc::ir::Fabric) {
    let ipv6 = Ipv6Packet::new_checked(&frame[14..]).expect("IPv6");
    assert_eq!(ipv6.hop_limit(), 63);
    assert_eq!(ipv6.next_header(), IpProtocol::HopByHop);
    let header = HbhHeader::new_checked(ipv6.payload()).expect("hop-by-hop header");
    let repr = HbhRepr::parse(&header).expect("hop-by-hop options");
    let trace = repr.ioam_trace().expect("IOAM trace");
    let bits = fabric.domains[0].trace_type.bits();
    let (node, _) =
        NodeRepr::parse(TraceType::from_bits(bits), trace.filled()).expect("the router's entry");
    let id = node.hop_limit_node_id.expect("hop limit and node id");
    assert_eq!((id.hop_limit, id.node_id), (63, 2));
    let ifs = node.interface_ids.expect("interface ids");
    assert_eq!((ifs.ingress, ifs.egress), (21, 22));
}

#[test]
fn the_daemon_reinstalls_a_restarted_switch() {
    clt_testkit::skip_if!(missing());
    let src = login_clt();
    let mut topo = Topology::new("login.clt", &src);
    let receiver = Receiver::start();
    let config = topo.controller_config(receiver.port);
    let daemon = Command::new(controller_bin().expect("controller"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clt-controller run");
    topo.net.children.push(KillOnDrop(daemon));
    let hbh = clt_hbh(&topo.fabric, TRACE_ID, SPAN_ID);

    let (pcap, capture) = topo.capture("before.pcap");
    let frame = topo.send_until_captured(&hbh, &pcap, capture);
    assert_router_entry(&frame, &topo.fabric);

    // A restarted switch has no pipeline (`--no-p4`): it forwards again
    // only once the daemon has pushed the pipeline and the entries.
    topo.kill_switch();
    topo.start_switch();
    let (pcap, capture) = topo.capture("after.pcap");
    let frame = topo.send_until_captured(&hbh, &pcap, capture);
    assert_router_entry(&frame, &topo.fabric);
    let daemon = topo.net.children.last_mut().expect("daemon");
    assert!(
        matches!(daemon.try_wait(), Ok(None)),
        "the daemon is still running"
    );
}

/// `login.clt` with the policy starting at the router: the switch
/// encapsulates.
fn encap_clt() -> String {
    // The router grows packets by the Hop-by-Hop header: cltc requires room.
    login_clt()
        .replace("from entry to server", "from router to server")
        .replace(
            "mac 02:00:00:00:01:01 }",
            "mac 02:00:00:00:01:01 mtu 1460 }",
        )
}

#[test]
fn an_encapsulating_switch_inserts_the_trace_with_its_entry() {
    clt_testkit::skip_if!(missing());
    let topo = Topology::new("encap.clt", &encap_clt());
    topo.install();

    // A plain SYN (no Hop-by-Hop header) matching the policy.
    let (pcap, capture) = topo.capture("server.pcap");
    let frame = topo.send_until_captured(&[], &pcap, capture);

    assert_eq!(frame[..6], SERVER_MAC, "destination MAC");
    assert_eq!(frame[6..12], ROUTER_MAC2, "source MAC");
    let ipv6 = Ipv6Packet::new_checked(&frame[14..]).expect("IPv6");
    assert_eq!(usize::from(ipv6.payload_len()), frame.len() - 14 - 40);
    let header = HbhHeader::new_checked(ipv6.payload()).expect("hop-by-hop header");
    let repr = HbhRepr::parse(&header).expect("hop-by-hop options");
    assert!(
        repr.clt().is_none(),
        "a switch cannot know the request's ids"
    );
    let trace = repr.ioam_trace().expect("IOAM trace");
    let domain = &topo.fabric.domains[0];
    assert_eq!(trace.namespace_id, domain.namespace);
    assert!(!trace.overflow());
    let per_hop = usize::from(domain.trace_type.node_len()) * 4;
    assert_eq!(
        usize::from(trace.remaining_len) * 4,
        usize::from(domain.prealloc_len) - per_hop,
        "one entry filled"
    );
    assert_router_entry(&frame, &topo.fabric);

    // tshark's IOAM dissector agrees.
    let options = dissect_router_entry(&pcap, domain.namespace);
    assert!(!options.contains(&0x1e), "no CLT option: {options:?}");
}

/// Checks tshark's dissection of the first packet of `pcap` against the
/// router's entry (node 2, interfaces 21 and 22, hop limit 63) in
/// `namespace`, and returns the Hop-by-Hop option types tshark saw.
fn dissect_router_entry(pcap: &Path, namespace: u16) -> Vec<u64> {
    let rows = tshark::fields(
        pcap,
        None,
        &[
            "ipv6.nxt",
            "ipv6.opt.ioam.trace.ns",
            "ipv6.opt.ioam.trace.node.hlim",
            "ipv6.opt.ioam.trace.node.id",
            "ipv6.opt.ioam.trace.node.iif",
            "ipv6.opt.ioam.trace.node.eif",
            "ipv6.opt.type",
            "tcp.dstport",
        ],
    );
    let fields = rows.first().expect("tshark dissected no packet");
    assert_eq!(fields.len(), 8, "tshark fields: {fields:?}");
    // tshark prints some of these in hex (`0x000002`).
    let numbers: Vec<u64> = fields[..6]
        .iter()
        .flat_map(|f| tshark::numbers(f))
        .collect();
    assert_eq!(
        numbers,
        [0, u64::from(namespace), 63, 2, 21, 22],
        "next header, namespace, hop limit, node id, interfaces"
    );
    let options = tshark::numbers(&fields[6]);
    assert!(options.contains(&0x31), "an IOAM option: {options:?}");
    assert_eq!(fields[7], "443");
    options
}
