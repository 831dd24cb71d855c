//! bmv2 end to end: `examples/login.clt`'s router as simple_switch_grpc
//! between two network namespaces (entry, server), its program compiled by
//! cltc and p4c-bm2-ss, installed by clt-controller over P4Runtime. The
//! entry host sends a TCP SYN carrying the CLT Hop-by-Hop header (what the
//! CLT socket API writes); the capture at the server must show it forwarded
//! (MACs rewritten, hop limit decremented) with the router's entry filled.
//!
//! Needs root, `ip`, `simple_switch_grpc`, `p4c-bm2-ss`, `tshark`, `python3`
//! and the `clt-controller` binary (built by `cargo test --workspace`, or
//! named by `CLT_CONTROLLER`); says `skipped: ...` and returns otherwise.

use clt_bmv2_tests::find_tool;
use clt_wire::node::NodeRepr;
use clt_wire::{CltRepr, HbhBuilder, HbhHeader, HbhRepr, IpProtocol, Ipv6Packet, TraceType};
use cltc::backend::p4::{self, Target};
use cltc::ir::NodeIdx;
use std::net::{Ipv6Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Some("not root".to_string());
    }
    for tool in [
        "ip",
        "simple_switch_grpc",
        "p4c-bm2-ss",
        "tshark",
        "python3",
    ] {
        if find_tool(tool).is_none() {
            return Some(format!("{tool} not on PATH"));
        }
    }
    if controller_bin().is_none() {
        return Some("clt-controller not built (cargo build -p clt-controller)".to_string());
    }
    None
}

/// The clt-controller binary: `$CLT_CONTROLLER`, or beside this test's
/// target directory.
fn controller_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLT_CONTROLLER") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("clt-controller");
    candidate.is_file().then_some(candidate)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

fn in_ns(ns: &str, args: &[&str]) {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args));
}

/// Everything the test created, removed on drop (also when it fails).
struct Fabric {
    namespaces: Vec<String>,
    links: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Fabric {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for link in &self.links {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A link-local address from a MAC (modified EUI-64), as cltc derives it.
fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first packet of a classic pcap file (link type Ethernet).
fn first_packet(pcap: &Path) -> Vec<u8> {
    let bytes = std::fs::read(pcap).expect("read capture");
    assert!(bytes.len() > 24 + 16, "empty capture");
    let little = bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let word = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let caplen = word(24 + 8) as usize;
    bytes[40..40 + caplen].to_vec()
}

#[test]
fn a_transit_switch_forwards_and_fills_its_entry() {
    if let Some(why) = missing() {
        clt_bmv2_tests::report_skip("a_transit_switch_forwards_and_fills_its_entry", &why);
        return;
    }

    // cltc: the router's program, P4Info and entries; p4c: its bmv2 JSON.
    let src = std::fs::read_to_string(clt_bmv2_tests::examples_dir().join("login.clt"))
        .expect("login.clt");
    let fabric = cltc::compile_source("login.clt", &src)
        .expect("login.clt compiles")
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

    // Namespaces and links, with login.clt's addresses and MACs.
    let n = format!(
        "{}{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let (entry_ns, server_ns) = (format!("clt-e{n}"), format!("clt-s{n}"));
    let (port1, port2) = (format!("cp1-{n}"), format!("cp2-{n}"));
    let (entry_if, server_if) = (format!("ce-{n}"), format!("cs-{n}"));
    let mut net = Fabric {
        namespaces: vec![],
        links: vec![],
        children: vec![],
    };
    let entry_mac = [2, 0, 0, 0, 1, 1];
    let router_mac1 = [2, 0, 0, 0, 2, 1];
    let router_mac2 = [2, 0, 0, 0, 2, 2];
    let server_mac = [2, 0, 0, 0, 3, 1];
    for ns in [&entry_ns, &server_ns] {
        ip(&["netns", "add", ns]);
        net.namespaces.push(ns.clone());
    }
    for (host_if, port, ns, host_mac, port_mac) in [
        (&entry_if, &port1, &entry_ns, entry_mac, router_mac1),
        (&server_if, &port2, &server_ns, server_mac, router_mac2),
    ] {
        ip(&["link", "add", host_if, "type", "veth", "peer", "name", port]);
        net.links.push(port.clone());
        ip(&["link", "set", port, "address", &mac_text(port_mac), "up"]);
        ip(&["link", "set", host_if, "netns", ns]);
        in_ns(
            ns,
            &[
                "ip",
                "link",
                "set",
                host_if,
                "address",
                &mac_text(host_mac),
                "up",
            ],
        );
        in_ns(ns, &["ip", "link", "set", "lo", "up"]);
        in_ns(
            ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{host_if}.accept_dad=0"),
            ],
        );
    }
    let routes = [
        (&entry_ns, &entry_if, "db01::1/64", "db02::/64", router_mac1),
        (
            &server_ns,
            &server_if,
            "db02::2/64",
            "db01::/64",
            router_mac2,
        ),
    ];
    for (ns, dev, address, remote, gw_mac) in routes {
        let gw = link_local(gw_mac).to_string();
        in_ns(
            ns,
            &["ip", "-6", "addr", "add", address, "dev", dev, "nodad"],
        );
        in_ns(
            ns,
            &[
                "ip",
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
            ],
        );
        in_ns(
            ns,
            &["ip", "-6", "route", "add", remote, "via", &gw, "dev", dev],
        );
    }

    // The switch, then the controller installs the pipeline and entries.
    let grpc = free_port();
    let switch = Command::new("simple_switch_grpc")
        .args(["--device-id", "1", "--no-p4"])
        .args(["-i", &format!("1@{port1}"), "-i", &format!("2@{port2}")])
        .args(["--", "--grpc-server-addr", &format!("127.0.0.1:{grpc}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start simple_switch_grpc");
    net.children.push(switch);
    wait_for("simple_switch_grpc", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", grpc)).is_ok()
    });
    let config = format!(
        "[collector]\naddress = \"127.0.0.1:{}\"\n\n[[device]]\nname = \"router\"\naddress = \"127.0.0.1:{grpc}\"\ndevice_id = 1\np4info = \"router.p4info.txtpb\"\nentries = \"router.entries.txtpb\"\ndevice_config = \"router.json\"\nprogram = \"router.p4\"\n",
        free_port()
    );
    std::fs::write(file("controller.toml"), config).expect("write config");
    run(Command::new(controller_bin().expect("controller"))
        .args(["install", "--config"])
        .arg(file("controller.toml")));

    // Capture the first packet to the server on its interface (a BPF "tcp"
    // would not look past the Hop-by-Hop header).
    let pcap = file("server.pcap");
    let capture = Command::new("ip")
        .args([
            "netns", "exec", &server_ns, "tshark", "-q", "-i", &server_if, "-F", "pcap",
        ])
        .args(["-c", "1", "-f", "ip6 dst host db02::2", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tshark");
    net.children.push(capture);
    wait_for("the capture to start", Duration::from_secs(20), || {
        pcap.exists()
    });
    std::thread::sleep(Duration::from_millis(500));

    // The entry host sends a SYN with the CLT header (empty trace + ids).
    let trace_type = fabric.domains[0].trace_type;
    let size = usize::from(fabric.domains[0].prealloc_len);
    let (trace_id, span_id) = (
        0x0123_4567_89ab_cdef_0011_2233_4455_6677_u128,
        0x1122_3344_5566_7788_u64,
    );
    let hbh = HbhBuilder::new()
        .next_header(IpProtocol::Tcp)
        .trace(fabric.domains[0].namespace, trace_type, size)
        .clt(CltRepr::from_ids(trace_id, span_id))
        .build()
        .expect("build the hop-by-hop header");
    let hex: String = hbh.iter().map(|b| format!("{b:02x}")).collect();
    let script = "import socket,sys\n\
s=socket.socket(socket.AF_INET6,socket.SOCK_STREAM)\n\
s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_HOPOPTS,bytes.fromhex(sys.argv[1]))\n\
s.settimeout(2)\n\
try:\n    s.connect(('db02::2',443))\nexcept OSError:\n    pass\n";
    let _ = Command::new("ip")
        .args(["netns", "exec", &entry_ns, "python3", "-c", script, &hex])
        .output()
        .expect("run python3");

    let tshark = net.children.last_mut().expect("tshark");
    wait_for("the capture", Duration::from_secs(10), || {
        matches!(tshark.try_wait(), Ok(Some(_)))
    });
    let frame = first_packet(&pcap);

    // Forwarded: MACs rewritten, hop limit decremented.
    assert_eq!(frame[..6], server_mac, "destination MAC");
    assert_eq!(frame[6..12], router_mac2, "source MAC");
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
}
