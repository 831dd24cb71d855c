//! bmv2 against Linux, byte for byte: what a bmv2 transit hop writes must be
//! what a Linux transit hop writes for the same fields.
//!
//! One `.clt` fabric, entry -> router -> server, compiled twice: the router
//! as bmv2 (ports 1 and 2) and as Linux (eth0 and eth1), with the same node
//! ids (`id 2`, `id wide 0x2222222222`), interface ids (21, 22) and MACs.
//! Its domains are the matrix: every trace-type bit alone, all of them, the
//! wide ids and namespace data together, and namespace data and the opaque
//! state snapshot without a value (all-ones, `0x00ffffff`); one UDP policy
//! (`dport 6000 + i`) per domain. For every domain the entry host sends the
//! same three frames, built with clt-wire (the CLT option and the
//! pre-allocated trace, as the CLT socket API writes them) and injected raw
//! so both routers get identical bytes: an empty trace, a trace holding one
//! earlier hop, and a full one (the router must set Overflow).
//!
//! The bmv2 router is `simple_switch_grpc` (program by cltc and
//! `p4c-bm2-ss`, installed by `clt-controller install`); the Linux router is
//! a namespace configured only by its cltc plan, applied with clt-linux. A
//! capture at the server gives the packet each router forwarded; both are
//! compared with clt-wire's `fill_node` prediction (the sent packet, hop
//! limit - 1, the router's entry filled as Linux fills it) and with each
//! other. Only what legitimately differs by implementation or time is
//! masked: timestamps, transit delay, queue depth and buffer occupancy
//! values (their position and length are still checked, and a field one
//! side reports unavailable, all-ones, must be unavailable on the other
//! too, but for Linux's transit delay, which it never measures), and the
//! Ethernet header (only the IPv6 packets are compared).
//!
//! Needs root, `ip` with IOAM6 in the kernel, `simple_switch_grpc`,
//! `p4c-bm2-ss`, `dumpcap`, `python3` and the `clt-controller` binary; says
//! `skipped: ...` and returns otherwise.

use clt_linux::nl::Netlink;
use clt_linux::{Insertion, Options};
use clt_testkit::pcap::{Capture, ipv6_packets};
use clt_testkit::skip::{self, find_tool};
use clt_testkit::{KillOnDrop, Netns, free_port, ip, run_command, unique_ifname, veth};
use clt_wire::ioam::MAX_NODE_DATA;
use clt_wire::node::{NO_SCHEMA, UNAVAILABLE_U32};
use clt_wire::{
    CltRepr, FillOutcome, HbhBuilder, HbhHeader, HopLimitNodeId, HopLimitNodeIdWide, InterfaceIds,
    InterfaceIdsWide, IpProtocol, Ipv6Packet, Ipv6Repr, NodeRepr, OpaqueState, OptionType,
    TraceField, TraceFlags, TracePacket, fill_node,
};
use cltc::backend::p4::{self, Target};
use cltc::ir::{Domain, Fabric, NodeIdx};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv6Addr, TcpStream};
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ENTRY_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const ROUTER_MAC1: [u8; 6] = [2, 0, 0, 0, 2, 1];
const ROUTER_MAC2: [u8; 6] = [2, 0, 0, 0, 2, 2];
const ROUTER_ID: u32 = 2;
const ROUTER_ID_WIDE: u64 = 0x22_2222_2222;
const ROUTER_IN: u16 = 21;
const ROUTER_OUT: u16 = 22;
/// The hop limit the entry sends; the router writes (and forwards) one less.
const HOP_LIMIT: u8 = 64;
const BASE_PORT: u16 = 6000;
/// UDP ports no policy matches.
const OTHER_PORT: u16 = 7000;
const TRACE_ID: u128 = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;
const SPAN_ID: u64 = 0x1122_3344_5566_7788;

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    skip::netns_unavailable()
        .or_else(skip::ioam6_unavailable)
        .or_else(|| {
            skip::tools_missing(&["simple_switch_grpc", "p4c-bm2-ss", "dumpcap", "python3"])
        })
        .or_else(|| {
            clt_bmv2_tests::controller_bin()
                .is_none()
                .then(|| "clt-controller not built (cargo build -p clt-controller)".to_string())
        })
}

/// One domain of the matrix.
struct Case {
    name: String,
    fields: Vec<TraceField>,
    /// Whether the domain declares namespace data (and, with the opaque
    /// state, a schema).
    data: bool,
}

fn matrix() -> Vec<Case> {
    let mut cases: Vec<Case> = TraceField::ALL
        .into_iter()
        .map(|f| Case {
            name: format!("bit{}", f.bit()),
            fields: vec![f],
            data: true,
        })
        .collect();
    cases.push(Case {
        name: "all".into(),
        fields: TraceField::ALL.to_vec(),
        data: true,
    });
    cases.push(Case {
        name: "wide".into(),
        fields: vec![
            TraceField::HopLimitNodeIdWide,
            TraceField::InterfaceIdsWide,
            TraceField::NamespaceDataWide,
        ],
        data: true,
    });
    cases.push(Case {
        name: "nodata".into(),
        fields: vec![
            TraceField::NamespaceData,
            TraceField::NamespaceDataWide,
            TraceField::OpaqueState,
        ],
        data: false,
    });
    cases
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Router {
    Bmv2,
    Linux,
}

/// The fabric with the router as `router`; `grpc` is the switch's port.
fn source(cases: &[Case], router: Router, grpc: u16) -> String {
    let mut s = String::new();
    for (i, c) in cases.iter().enumerate() {
        let data = if c.data {
            format!(
                " data {:#010x} wide {:#018x}",
                0x0a00_0000 + i,
                0x0b00_0000_0000_0000u64 + i as u64
            )
        } else {
            String::new()
        };
        let fields: Vec<&str> = c.fields.iter().map(|f| f.name()).collect();
        let _ = writeln!(
            s,
            "domain {} {{\n    namespace {}{data}\n    trace {}",
            c.name,
            100 + i,
            fields.join(", ")
        );
        if c.data && c.fields.contains(&TraceField::OpaqueState) {
            // Three bytes: padded to four by cltc and by the kernel.
            let _ = writeln!(s, "    schema {} \"s{i:02}\"", 700 + i);
        }
        let _ = writeln!(s, "    context w3c\n    collector 127.0.0.1:7123\n}}");
    }
    s += "node entry linux {\n    id 1\n    interface eth0 { id 11 address db01::1/64 mac 02:00:00:00:01:01 }\n}\n";
    s += "node server linux {\n    id 3\n    interface eth0 { id 31 address db02::2/64 mac 02:00:00:00:03:01 }\n}\n";
    let (ports, (up, down)) = match router {
        Router::Bmv2 => (
            format!(
                "    p4runtime 127.0.0.1:{grpc} device 1\n    port 1 {{ id {ROUTER_IN} mac 02:00:00:00:02:01 }}\n    port 2 {{ id {ROUTER_OUT} mac 02:00:00:00:02:02 }}\n"
            ),
            ("1", "2"),
        ),
        Router::Linux => (
            format!(
                "    interface eth0 {{ id {ROUTER_IN} address db01::2/64 mac 02:00:00:00:02:01 }}\n    interface eth1 {{ id {ROUTER_OUT} address db02::1/64 mac 02:00:00:00:02:02 }}\n"
            ),
            ("eth0", "eth1"),
        ),
    };
    let kind = match router {
        Router::Bmv2 => "bmv2",
        Router::Linux => "linux",
    };
    let _ = writeln!(
        s,
        "node router {kind} {{\n    id {ROUTER_ID}\n    id wide {ROUTER_ID_WIDE:#x}\n{ports}}}"
    );
    let _ = writeln!(
        s,
        "link entry.eth0 -- router.{up}\nlink router.{down} -- server.eth0"
    );
    for (i, c) in cases.iter().enumerate() {
        let _ = writeln!(
            s,
            "policy p{i} {{\n    domain {}\n    from entry to server\n    match dst db02::/64 proto udp dport {}\n}}",
            c.name,
            BASE_PORT + i as u16
        );
    }
    s
}

fn compile(cases: &[Case], router: Router, grpc: u16) -> Fabric {
    let name = format!("conformance-{router:?}.clt");
    let src = source(cases, router, grpc);
    cltc::compile_source(&name, &src)
        .unwrap_or_else(|d| panic!("{}", d.render(&name, &src)))
        .fabric
}

fn node(fabric: &Fabric, name: &str) -> NodeIdx {
    let i = fabric
        .nodes
        .iter()
        .position(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"));
    NodeIdx(u32::try_from(i).expect("node index"))
}

/// What the trace holds when the router gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prior {
    /// Nothing: the router writes the last slot.
    Empty,
    /// One earlier hop: the router writes the slot before it.
    OneHop,
    /// Every slot: the router sets Overflow and writes nothing.
    Full,
    /// Nothing, sent with hop limit 2: the router writes 1 and forwards
    /// it (the last hop limit a router forwards).
    LastHop,
    /// Nothing, with the Loopback and Active flags (RFC 9322) set: the
    /// router writes the last slot and keeps the flags.
    Flagged,
    /// Nothing, but the Overflow flag is already set: the router writes
    /// nothing.
    Overflowed,
    /// Nothing, in a namespace neither router knows: both forward it
    /// untouched (but for the hop limit).
    Foreign,
    /// Nothing, in the domain's namespace, but a flow no policy matches
    /// (UDP port 7000 + i): a transit node fills it all the same.
    OtherFlow,
    /// Nothing, without the CLT option: the plain layout (PadN(2), then
    /// the IOAM option), as an encapsulating switch or Linux route writes.
    Plain,
    /// Nothing, in the domain's namespace and trace type but with room for
    /// one hop more (or less, past 244 bytes) than the domain pre-allocates,
    /// as another encapsulator may write it.
    OtherSize,
}

/// The namespace of [`Prior::Foreign`] probes.
const FOREIGN_NAMESPACE: u16 = 0x7777;

/// One packet of the matrix.
struct Probe {
    label: String,
    /// Index into the fabric's domains.
    domain: usize,
    prior: Prior,
    /// The IPv6 packet the entry sends.
    sent: Vec<u8>,
    /// Its UDP payload, which tells the captured packets apart.
    tag: Vec<u8>,
    /// Where the trace (its 8-byte header) is in `sent`, and its length.
    trace: Range<usize>,
}

/// The domain's opaque state snapshot, as every node of it writes it:
/// without a schema, an empty one with schema id 0xffffff.
fn snapshot(domain: &Domain) -> OpaqueState<'_> {
    domain.schema.as_ref().map_or(
        OpaqueState {
            schema_id: NO_SCHEMA,
            data: &[],
        },
        |s| OpaqueState {
            schema_id: s.id,
            data: &s.data,
        },
    )
}

/// An earlier hop's entry: distinctive values in every field, the domain's
/// snapshot (so the entry has the length the router expects).
fn prior_hop(domain: &Domain, n: u32) -> NodeRepr<'_> {
    NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 100 + n as u8,
            node_id: 0x0a_0000 + n,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: 0x0b00 + n as u16,
            egress: 0x0c00 + n as u16,
        }),
        timestamp_secs: Some(0x1000_0000 + n),
        timestamp_frac: Some(0x2000_0000 + n),
        transit_delay: Some(0x3000_0000 + n),
        namespace_data: Some(0x4000_0000 + n),
        queue_depth: Some(0x5000_0000 + n),
        checksum_complement: Some(0x6000_0000 + n),
        hop_limit_node_id_wide: Some(HopLimitNodeIdWide {
            hop_limit: 100 + n as u8,
            node_id: 0x0d_0000_0000 + u64::from(n),
        }),
        interface_ids_wide: Some(InterfaceIdsWide {
            ingress: 0x0e00_0000 + n,
            egress: 0x0f00_0000 + n,
        }),
        namespace_data_wide: Some(0x7000_0000_0000_0000 + u64::from(n)),
        buffer_occupancy: Some(0x8000_0000 + n),
        undefined: &[],
        opaque_state: Some(snapshot(domain)),
    }
}

/// Where the trace is in a Hop-by-Hop header: after the IOAM option's
/// header and its 2 bytes of reserved and IOAM type.
fn trace_in_hbh(hbh: &[u8]) -> Range<usize> {
    let header = HbhHeader::new_checked(hbh).expect("hop-by-hop header");
    for option in header.options_iter() {
        let (at, option) = option.expect("hop-by-hop option");
        if option.option_type() == OptionType::Ioam {
            let start = 2 + at + 4;
            return start..start + usize::from(option.data_len()) - 2;
        }
    }
    panic!("no IOAM option in {hbh:02x?}")
}

fn probe(domain: &Domain, index: usize, seq: usize, prior: Prior) -> Probe {
    let label = format!("{} {prior:?}", domain.name);
    let namespace = match prior {
        Prior::Foreign => FOREIGN_NAMESPACE,
        _ => domain.namespace,
    };
    let (size, per_hop) = (
        usize::from(domain.prealloc_len),
        usize::from(domain.per_hop_len),
    );
    let size = match prior {
        Prior::OtherSize if size + per_hop <= MAX_NODE_DATA => size + per_hop,
        Prior::OtherSize => size - per_hop,
        _ => size,
    };
    let mut builder =
        HbhBuilder::new()
            .next_header(IpProtocol::Udp)
            .trace(namespace, domain.trace_type, size);
    if prior != Prior::Plain {
        builder = builder.clt(CltRepr::from_ids(TRACE_ID + index as u128, SPAN_ID));
    }
    let mut hbh = builder.build().expect("build the hop-by-hop header");
    let trace = trace_in_hbh(&hbh);
    let hops = match prior {
        Prior::Empty
        | Prior::LastHop
        | Prior::Flagged
        | Prior::Overflowed
        | Prior::Foreign
        | Prior::OtherFlow
        | Prior::Plain
        | Prior::OtherSize => 0,
        Prior::OneHop => 1,
        Prior::Full => u32::from(domain.max_hops),
    };
    let mut view = TracePacket::new_checked(&mut hbh[trace.clone()]).expect("trace");
    for n in 0..hops {
        let outcome = fill_node(&mut view, &prior_hop(domain, n)).expect("an earlier hop");
        assert!(
            matches!(outcome, FillOutcome::Filled { .. }),
            "{label}: {outcome:?}"
        );
    }
    let flags = match prior {
        Prior::Flagged => Some(TraceFlags::LOOPBACK | TraceFlags::ACTIVE),
        Prior::Overflowed => Some(TraceFlags::OVERFLOW),
        _ => None,
    };
    if let Some(flags) = flags {
        view.set_flags(TraceFlags::from_bits(flags));
    }
    if prior == Prior::Full {
        assert!(
            usize::from(view.remaining_len()) * 4 < usize::from(domain.per_hop_len),
            "{label}: the trace is not full"
        );
    }
    // Same length for every probe: the captures are told apart by it.
    let tag = format!("clt-conformance {seq:04}").into_bytes();
    let (src, dst): (Ipv6Addr, Ipv6Addr) = (
        "db01::1".parse().expect("address"),
        "db02::2".parse().expect("address"),
    );
    let port = match prior {
        Prior::OtherFlow => OTHER_PORT,
        _ => BASE_PORT,
    } + index as u16;
    let udp_len = u16::try_from(8 + tag.len()).expect("UDP length");
    let mut udp = etherparse::UdpHeader {
        source_port: 5000,
        destination_port: port,
        length: udp_len,
        checksum: 0,
    };
    udp.checksum = udp
        .calc_checksum_ipv6_raw(src.octets(), dst.octets(), &tag)
        .expect("UDP checksum");
    let ipv6 = Ipv6Repr {
        traffic_class: 0x28,
        flow_label: 0x1_2345,
        payload_len: u16::try_from(hbh.len()).expect("header length") + udp_len,
        next_header: IpProtocol::HopByHop,
        hop_limit: if prior == Prior::LastHop {
            2
        } else {
            HOP_LIMIT
        },
        src_addr: src,
        dst_addr: dst,
    };
    let mut sent = vec![0u8; 40];
    ipv6.emit(&mut Ipv6Packet::new_unchecked(&mut sent[..]))
        .expect("IPv6 header");
    sent.extend_from_slice(&hbh);
    sent.extend_from_slice(&udp.to_bytes());
    sent.extend_from_slice(&tag);
    Probe {
        label,
        domain: index,
        prior,
        sent,
        tag,
        trace: 40 + trace.start..40 + trace.end,
    }
}

/// The Ethernet frame the entry host injects: to the router's port 1 MAC.
fn frame(ipv6: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ipv6.len());
    f.extend_from_slice(&ROUTER_MAC1);
    f.extend_from_slice(&ENTRY_MAC);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(ipv6);
    f
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// Sends raw frames from `dev` of `ns`, 5 ms apart (AF_PACKET, so the
/// router gets exactly these bytes).
const INJECT: &str = "import socket,sys,time\n\
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
s.bind((sys.argv[1],0))\n\
for line in sys.stdin:\n    \
    line=line.strip()\n    \
    if line:\n        \
        s.send(bytes.fromhex(line))\n        \
        time.sleep(0.005)\n";

fn inject(ns: &Netns, dev: &str, frames: &[Vec<u8>]) {
    let mut child = ns
        .command("python3")
        .args(["-c", INJECT, dev])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    {
        let mut stdin = child.stdin.take().expect("python3's stdin");
        for f in frames {
            let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(stdin, "{hex}").expect("write a frame to python3");
        }
    }
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "injecting frames in {}: {}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Injects every probe at the entry and returns, per probe, the first
/// packet with its payload captured at the server (`None` if none came
/// after three tries).
fn deliver(entry: &Netns, server: &Netns, dir: &Path, probes: &[Probe]) -> Vec<Option<Vec<u8>>> {
    let capture = Capture::start(server, "eth0", dir, Some("ip6 dst host db02::2"));
    let mut got: Vec<Option<Vec<u8>>> = vec![None; probes.len()];
    for _ in 0..3 {
        let missing: Vec<Vec<u8>> = probes
            .iter()
            .zip(&got)
            .filter(|(_, g)| g.is_none())
            .map(|(p, _)| frame(&p.sent))
            .collect();
        if missing.is_empty() {
            break;
        }
        inject(entry, "eth0", &missing);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for packet in ipv6_packets(capture.path()) {
                let Some(at) = packet.len().checked_sub(probes[0].tag.len()) else {
                    continue;
                };
                if let Some(i) = probes.iter().position(|p| packet[at..] == p.tag[..]) {
                    got[i].get_or_insert(packet);
                }
            }
            if got.iter().all(Option::is_some) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    got
}

/// Applies `node`'s cltc plan in `ns` with clt-linux.
fn apply_plan(ns: &Netns, fabric: &Fabric, node_name: &str) {
    let plan = cltc::backend::linux::plan(fabric, node(fabric, node_name));
    clt_linux::netns::run_in(Some(ns.name()), move || {
        let nl = Netlink::open()?;
        clt_linux::plan::apply(
            &nl,
            &plan,
            &Options {
                insertion: Insertion::Socket,
            },
        )
    })
    .unwrap_or_else(|e| panic!("apply {node_name}'s plan in {}: {e}", ns.name()));
}

/// The entry host's interface: up with its MAC, nothing else (it only
/// injects).
fn entry_up(entry: &Netns) {
    entry.sysctl("net.ipv6.conf.eth0.accept_dad", "0");
    entry.ip(&["link", "set", "eth0", "address", &mac_text(ENTRY_MAC), "up"]);
}

/// The Linux router in a namespace between the entry and the server, each
/// configured by its plan (the entry only injects); returns what the server
/// received.
fn run_linux(fabric: &Fabric, probes: &[Probe], dir: &Path) -> Vec<Option<Vec<u8>>> {
    let (entry, router, server) = (
        Netns::new("cltce"),
        Netns::new("cltcr"),
        Netns::new("cltcs"),
    );
    veth(&entry, "eth0", &router, "eth0");
    veth(&router, "eth1", &server, "eth0");
    entry_up(&entry);
    apply_plan(&router, fabric, "router");
    apply_plan(&server, fabric, "server");
    deliver(&entry, &server, dir, probes)
}

/// Root-namespace veth ends, deleted on drop (with their peers).
struct RootLinks(Vec<String>);

impl Drop for RootLinks {
    fn drop(&mut self) {
        for link in &self.0 {
            let _ = clt_testkit::try_ip(&["link", "del", link]);
        }
    }
}

/// The bmv2 router: simple_switch_grpc on two root-namespace veths whose
/// peers are the entry's and the server's eth0, programmed by
/// `clt-controller install`; returns what the server received.
fn run_bmv2(fabric: &Fabric, grpc: u16, probes: &[Probe], dir: &Path) -> Vec<Option<Vec<u8>>> {
    let router = node(fabric, "router");
    let artifacts = p4::compile(fabric, router, Target::V1Model);
    let file = |name: &str| dir.join(name);
    std::fs::write(file("router.p4"), &artifacts.program).expect("write program");
    std::fs::write(file("router.p4info.txtpb"), &artifacts.p4info).expect("write p4info");
    std::fs::write(file("router.entries.txtpb"), &artifacts.entries).expect("write entries");
    let p4c = find_tool("p4c-bm2-ss").expect("p4c-bm2-ss");
    clt_bmv2_tests::run_p4c(&p4c, Target::V1Model, &file("router.p4"), dir, "router")
        .unwrap_or_else(|e| panic!("p4c-bm2-ss compiles the router: {e}"));

    let (entry, server) = (Netns::new("cltbe"), Netns::new("cltbs"));
    let (port1, port2) = (unique_ifname("cbp1-"), unique_ifname("cbp2-"));
    // Declared after the namespaces: dropped (links deleted) before them,
    // and the switch before its links.
    let mut links = RootLinks(Vec::new());
    for (port, ns, mac) in [
        (&port1, &entry, ROUTER_MAC1),
        (&port2, &server, ROUTER_MAC2),
    ] {
        ip(&[
            "link",
            "add",
            "name",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ]);
        links.0.push(port.clone());
        ip(&["link", "set", port, "address", &mac_text(mac), "up"]);
    }
    entry_up(&entry);
    apply_plan(&server, fabric, "server");

    let switch = Command::new("simple_switch_grpc")
        .args(["--device-id", "1", "--no-p4"])
        .args(["-i", &format!("1@{port1}"), "-i", &format!("2@{port2}")])
        .args(["--", "--grpc-server-addr", &format!("127.0.0.1:{grpc}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start simple_switch_grpc");
    let _switch = KillOnDrop(switch);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", grpc)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "simple_switch_grpc did not listen on {grpc}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let config = file("controller.toml");
    std::fs::write(
        &config,
        format!(
            "[collector]\naddress = \"127.0.0.1:{}\"\n\n[[device]]\nname = \"router\"\naddress = \"127.0.0.1:{grpc}\"\ndevice_id = 1\np4info = \"router.p4info.txtpb\"\nentries = \"router.entries.txtpb\"\ndevice_config = \"router.json\"\nprogram = \"router.p4\"\n",
            free_port()
        ),
    )
    .expect("write the controller's config");
    run_command(
        Command::new(clt_bmv2_tests::controller_bin().expect("clt-controller"))
            .args(["install", "--config"])
            .arg(&config),
    );
    deliver(&entry, &server, dir, probes)
}

/// The fields whose values depend on the implementation or the time.
const MASKED: [TraceField; 5] = [
    TraceField::TimestampSecs,
    TraceField::TimestampFrac,
    TraceField::TransitDelay,
    TraceField::QueueDepth,
    TraceField::BufferOccupancy,
];

/// The router's entry as Linux's `__ioam6_fill_trace_data` writes it for a
/// packet received with `hop_limit`, with the masked values copied from
/// what the router `wrote`.
fn router_entry<'a>(domain: &'a Domain, hop_limit: u8, wrote: &NodeRepr<'_>) -> NodeRepr<'a> {
    let hop_limit = hop_limit - 1;
    NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit,
            node_id: ROUTER_ID,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: ROUTER_IN,
            egress: ROUTER_OUT,
        }),
        timestamp_secs: wrote.timestamp_secs,
        timestamp_frac: wrote.timestamp_frac,
        transit_delay: wrote.transit_delay,
        namespace_data: Some(domain.namespace_data.unwrap_or(UNAVAILABLE_U32)),
        queue_depth: wrote.queue_depth,
        checksum_complement: Some(UNAVAILABLE_U32),
        hop_limit_node_id_wide: Some(HopLimitNodeIdWide {
            hop_limit,
            node_id: ROUTER_ID_WIDE,
        }),
        interface_ids_wide: Some(InterfaceIdsWide {
            ingress: u32::from(ROUTER_IN),
            egress: u32::from(ROUTER_OUT),
        }),
        namespace_data_wide: Some(domain.namespace_data_wide.unwrap_or(u64::MAX)),
        buffer_occupancy: wrote.buffer_occupancy,
        undefined: &[],
        opaque_state: Some(snapshot(domain)),
    }
}

/// Where, in the forwarded packet, the router's entry is (`None` when it
/// must set Overflow instead, or leave the trace alone).
fn entry_at(probe: &Probe, domain: &Domain) -> Option<usize> {
    if matches!(probe.prior, Prior::Foreign | Prior::Overflowed) {
        return None;
    }
    let view = TracePacket::new_checked(&probe.sent[probe.trace.clone()]).expect("sent trace");
    let remaining = usize::from(view.remaining_len()) * 4;
    let per_hop = usize::from(domain.per_hop_len);
    (remaining >= per_hop).then(|| probe.trace.start + 8 + remaining - per_hop)
}

/// The byte ranges, in the forwarded packet, of the router's masked fields.
fn masked_ranges(probe: &Probe, domain: &Domain) -> Vec<(TraceField, Range<usize>)> {
    let Some(mut at) = entry_at(probe, domain) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in domain.trace_type.fields() {
        if MASKED.contains(&f) {
            out.push((f, at..at + f.len()));
        }
        at += f.len();
    }
    out
}

/// What byte `at` of a probe's packet is, for messages.
fn describe(probe: &Probe, domain: &Domain, at: usize) -> String {
    let t = probe.trace.clone();
    let hbh_end = 40 + (probe.sent.len() - 40 - 8 - probe.tag.len());
    match at {
        0..=3 => "IPv6 version/traffic class/flow label".into(),
        4..=5 => "IPv6 payload length".into(),
        6 => "IPv6 next header".into(),
        7 => "IPv6 hop limit".into(),
        8..=39 => "IPv6 addresses".into(),
        _ if at < t.start => format!("hop-by-hop header byte {}", at - 40),
        _ if at < t.start + 2 => "trace namespace".into(),
        _ if at < t.start + 4 => "trace NodeLen/flags/RemainingLen".into(),
        _ if at < t.start + 8 => "trace type/reserved".into(),
        _ if at < t.end => {
            let off = at - t.start - 8;
            match entry_at(probe, domain) {
                Some(e) if (e..e + usize::from(domain.per_hop_len)).contains(&at) => {
                    let mut field_at = e;
                    let mut name = "opaque state snapshot".to_string();
                    for f in domain.trace_type.fields() {
                        if f != TraceField::OpaqueState && at < field_at + f.len() {
                            name = f.name().to_string();
                            break;
                        }
                        field_at += f.len();
                    }
                    format!("router entry: {name} (node data +{off})")
                }
                _ => format!("node data +{off}, not the router's entry"),
            }
        }
        _ if at < hbh_end => "hop-by-hop padding".into(),
        _ if at < hbh_end + 8 => "UDP header".into(),
        _ => "UDP payload".into(),
    }
}

/// The differing bytes of two packets, one line each (at most 12).
fn differences(probe: &Probe, domain: &Domain, a: &[u8], b: &[u8]) -> Vec<String> {
    if a.len() != b.len() {
        return vec![format!("lengths {} and {}", a.len(), b.len())];
    }
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .take(12)
        .map(|(i, (x, y))| {
            format!(
                "byte {i} ({}): {x:#04x} vs {y:#04x}",
                describe(probe, domain, i)
            )
        })
        .collect()
}

/// Checks one router's forwarded packet against clt-wire's prediction;
/// returns the problems.
fn check_prediction(who: &str, probe: &Probe, domain: &Domain, got: &[u8]) -> Vec<String> {
    let mut predicted = probe.sent.clone();
    let hop_limit = probe.sent[7];
    predicted[7] = hop_limit - 1;
    let wrote = entry_at(probe, domain).and_then(|e| {
        got.get(e..e + usize::from(domain.per_hop_len))
            .and_then(|bytes| NodeRepr::parse(domain.trace_type, bytes).ok())
            .map(|(n, _)| n)
    });
    let expected = router_entry(domain, hop_limit, &wrote.unwrap_or_default());
    let want = match probe.prior {
        Prior::Foreign => None,
        Prior::Full => Some(FillOutcome::Overflow),
        Prior::Overflowed => Some(FillOutcome::AlreadyOverflowed),
        Prior::Empty
        | Prior::LastHop
        | Prior::Flagged
        | Prior::OneHop
        | Prior::OtherFlow
        | Prior::Plain
        | Prior::OtherSize => Some(FillOutcome::Filled {
            offset: entry_at(probe, domain).expect("room") - probe.trace.start - 8,
        }),
    };
    let mut problems = Vec::new();
    if let Some(want) = want {
        let mut view =
            TracePacket::new_checked(&mut predicted[probe.trace.clone()]).expect("predicted trace");
        let outcome = fill_node(&mut view, &expected).expect("clt-wire's fill");
        if outcome != want {
            problems.push(format!("clt-wire's fill: {outcome:?}, expected {want:?}"));
        }
    }
    problems.extend(
        differences(probe, domain, got, &predicted)
            .into_iter()
            .map(|d| format!("{who} vs clt-wire: {d}")),
    );
    problems
}

/// Compares the two routers' packets with the masked fields blanked, and
/// the masked fields' availability; returns the problems.
fn check_pair(probe: &Probe, domain: &Domain, bmv2: &[u8], linux: &[u8]) -> Vec<String> {
    let (mut b, mut l) = (bmv2.to_vec(), linux.to_vec());
    let mut problems = Vec::new();
    for (field, range) in masked_ranges(probe, domain) {
        let value = |p: &[u8]| {
            p.get(range.clone())
                .map(|v| u32::from_be_bytes(v.try_into().expect("4 bytes")))
        };
        let (vb, vl) = (value(&b), value(&l));
        // Linux never measures the transit delay (all-ones); bmv2 does.
        let documented =
            field == TraceField::TransitDelay && vl == Some(UNAVAILABLE_U32) && vb.is_some();
        if (vb == Some(UNAVAILABLE_U32)) != (vl == Some(UNAVAILABLE_U32)) && !documented {
            problems.push(format!(
                "{field}: bmv2 {vb:#x?}, linux {vl:#x?}: one reports it unavailable"
            ));
        }
        for p in [&mut b, &mut l] {
            if let Some(v) = p.get_mut(range.clone()) {
                v.fill(0);
            }
        }
    }
    problems.extend(
        differences(probe, domain, &b, &l)
            .into_iter()
            .map(|d| format!("bmv2 vs linux: {d}")),
    );
    problems
}

/// Known differences, each checked to be exactly what is described (the
/// test fails once a listed case matches Linux: then remove it here).
///
/// `OtherSize`: documented (`p4src/README.md`, "On the wire"): a P4
/// parser is specialised to the node's domain layouts, and a trace whose
/// option length is not one of them is forwarded untouched. Listed to check
/// that bmv2 does leave it alone rather than write at a wrong offset.
///
const KNOWN_GAPS: &[Prior] = &[Prior::OtherSize];

/// The verdict on one probe that both routers forwarded: `Ok` with the
/// word for the report, or the problems.
fn judge(
    probe: &Probe,
    domain: &Domain,
    bmv2: &[u8],
    linux: &[u8],
) -> Result<&'static str, Vec<String>> {
    let mut problems = check_prediction("linux", probe, domain, linux);
    let mut from_bmv2 = check_prediction("bmv2", probe, domain, bmv2);
    from_bmv2.extend(check_pair(probe, domain, bmv2, linux));
    let verdict = if !KNOWN_GAPS.contains(&probe.prior) {
        problems.extend(from_bmv2);
        "same"
    } else if from_bmv2.is_empty() {
        problems.push(format!(
            "bmv2 now writes what Linux writes: remove {:?} from KNOWN_GAPS",
            probe.prior
        ));
        "fixed"
    } else {
        // The known gap, and nothing else: bmv2 left the trace alone.
        let mut untouched = probe.sent.clone();
        untouched[7] -= 1;
        if bmv2 != untouched {
            problems.extend(from_bmv2);
        }
        "KNOWN-GAP"
    };
    if problems.is_empty() {
        Ok(verdict)
    } else {
        Err(problems)
    }
}

/// The router's entry in a forwarded packet, for the report.
fn entry_text(probe: &Probe, domain: &Domain, packet: &[u8]) -> String {
    entry_at(probe, domain)
        .and_then(|e| packet.get(e..e + usize::from(domain.per_hop_len)))
        .and_then(|bytes| NodeRepr::parse(domain.trace_type, bytes).ok())
        .map_or_else(|| "none".into(), |(n, _)| n.to_string())
}

#[test]
fn bmv2_and_linux_transit_hops_write_the_same_bytes() {
    clt_testkit::skip_if!(missing());
    let started = Instant::now();
    let cases = matrix();
    let grpc = free_port();
    let bmv2 = compile(&cases, Router::Bmv2, grpc);
    let linux = compile(&cases, Router::Linux, grpc);
    assert_eq!(
        bmv2.domains, linux.domains,
        "both fabrics have the same domains"
    );
    let mut probes = Vec::new();
    for (i, domain) in bmv2.domains.iter().enumerate() {
        for prior in [
            Prior::Empty,
            Prior::OneHop,
            Prior::Full,
            Prior::LastHop,
            Prior::Flagged,
            Prior::Overflowed,
            Prior::Foreign,
            Prior::OtherFlow,
            Prior::Plain,
            Prior::OtherSize,
        ] {
            probes.push(probe(domain, i, probes.len(), prior));
        }
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let from_linux = run_linux(&linux, &probes, dir.path());
    let from_bmv2 = run_bmv2(&bmv2, grpc, &probes, dir.path());

    let mut failures = Vec::new();
    let mut report = String::new();
    let mut entries = String::new();
    for ((probe, b), l) in probes.iter().zip(&from_bmv2).zip(&from_linux) {
        let domain = &bmv2.domains[probe.domain];
        let mut problems = Vec::new();
        let mut verdict = "DIFFERENT";
        match (b, l) {
            (Some(b), Some(l)) => {
                match judge(probe, domain, b, l) {
                    Ok(v) => verdict = v,
                    Err(p) => problems = p,
                }
                if probe.prior == Prior::Empty {
                    let _ = writeln!(
                        entries,
                        "  {:<7} bmv2  {}\n  {:<7} linux {}",
                        domain.name,
                        entry_text(probe, domain, b),
                        "",
                        entry_text(probe, domain, l)
                    );
                }
            }
            (None, None) => problems.push("forwarded by neither router".into()),
            (None, _) => problems.push("not forwarded by bmv2".into()),
            (_, None) => problems.push("not forwarded by linux".into()),
        }
        if probe.prior == Prior::Empty {
            let _ = write!(
                report,
                "  {:<7} type {:#08x} {:>2} B/hop x {}:",
                domain.name,
                domain.trace_type.bits(),
                domain.per_hop_len,
                domain.max_hops
            );
        }
        let _ = write!(report, " {:?} {verdict}", probe.prior);
        if probe.prior == Prior::OtherSize {
            report.push('\n');
        }
        failures.extend(
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", probe.label)),
        );
    }
    report += "the router's entry in an empty trace (masked fields included):\n";
    report += &entries;
    // Past libtest's capture: the matrix is the test's report.
    let _ = writeln!(
        std::io::stderr(),
        "bmv2 vs linux transit, {} packets in {:.1} s:\n{report}",
        probes.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
