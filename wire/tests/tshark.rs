//! Wireshark's IOAM dissector as an independent oracle: a packet built by
//! this crate (CLT option, then a pre-allocated trace filled by three nodes)
//! is written to a pcap file and dissected by `tshark`; every field it reads
//! must be what `clt-wire` parses. Skips when tshark is not installed.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used)]

use clt_wire::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temporary file removed on drop, unique per process and call.
struct TempFile(PathBuf);

impl TempFile {
    fn new(suffix: &str) -> TempFile {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        TempFile(std::env::temp_dir().join(format!(
            "clt-wire-tshark-{}-{n}{suffix}",
            std::process::id()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A pcap file with one packet of link type RAW (101: starts at the IP
/// header).
fn pcap(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // timezone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    out.extend_from_slice(&1u32.to_le_bytes()); // ts seconds
    out.extend_from_slice(&0u32.to_le_bytes()); // ts microseconds
    out.extend_from_slice(&(packet.len() as u32).to_le_bytes()); // captured
    out.extend_from_slice(&(packet.len() as u32).to_le_bytes()); // on the wire
    out.extend_from_slice(packet);
    out
}

fn trace_type() -> TraceType {
    TraceType::from_fields([
        TraceField::HopLimitNodeId,
        TraceField::InterfaceIds,
        TraceField::TimestampSecs,
        TraceField::TimestampFrac,
        TraceField::QueueDepth,
        TraceField::HopLimitNodeIdWide,
    ])
}

fn node(i: u32) -> NodeRepr<'static> {
    NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 64 - i as u8,
            node_id: 0x10 + i,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: 100 + i as u16,
            egress: 200 + i as u16,
        }),
        timestamp_secs: Some(1_700_000_000 + i),
        timestamp_frac: Some(1000 * i),
        queue_depth: Some(1500 * i),
        hop_limit_node_id_wide: Some(HopLimitNodeIdWide {
            hop_limit: 64 - i as u8,
            node_id: 0x1_0000_0000 + u64::from(i),
        }),
        ..NodeRepr::default()
    }
}

fn packet() -> Vec<u8> {
    // 3 nodes of 8 units (32 bytes) filled in a 4-node (128-byte) trace.
    let mut hbh = HbhBuilder::new()
        .next_header(IpProtocol::Udp)
        .trace(0x0abc, trace_type(), 128)
        .encap_node(node(0))
        .clt(CltRepr::from_ids(
            0x0af7651916cd43dd8448eb211c80319c,
            0xb7ad6b7169203331,
        ))
        .build()
        .unwrap();
    for i in 1..3 {
        let mut trace = TracePacket::new_checked(&mut hbh[32..]).unwrap();
        assert!(matches!(
            fill_node(&mut trace, &node(i)).unwrap(),
            FillOutcome::Filled { .. }
        ));
    }
    let udp = [0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00];
    let ipv6 = Ipv6Repr {
        traffic_class: 0,
        flow_label: 0,
        payload_len: (hbh.len() + udp.len()) as u16,
        next_header: IpProtocol::HopByHop,
        hop_limit: 61,
        src_addr: "2001:db8::1".parse().unwrap(),
        dst_addr: "2001:db8::2".parse().unwrap(),
    };
    let mut packet = vec![0u8; 40];
    ipv6.emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]))
        .unwrap();
    packet.extend_from_slice(&hbh);
    packet.extend_from_slice(&udp_with_checksum(&ipv6, udp));
    packet
}

/// Sets the UDP checksum (mandatory over IPv6, RFC 8200 section 8.1).
fn udp_with_checksum(ipv6: &Ipv6Repr, mut udp: [u8; 8]) -> [u8; 8] {
    let mut sum = 0u32;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    add(&ipv6.src_addr.octets());
    add(&ipv6.dst_addr.octets());
    add(&(udp.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 17]);
    add(&udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    udp[6..8].copy_from_slice(&(if checksum == 0 { 0xffff } else { checksum }).to_be_bytes());
    udp
}

/// The fields tshark reads from the file, in `names` order; a field's
/// occurrences split on commas.
fn fields(file: &TempFile, names: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(&file.0).args([
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        "-E",
        "separator=/t",
    ]);
    for name in names {
        cmd.args(["-e", name]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().next().unwrap_or("");
    let columns: Vec<Vec<String>> = line
        .split('\t')
        .map(|c| {
            c.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect();
    assert_eq!(columns.len(), names.len(), "one column per field: {line}");
    columns
}

fn numbers(values: Vec<String>) -> Vec<u64> {
    values
        .iter()
        .map(|v| {
            v.strip_prefix("0x")
                .map(|h| u64::from_str_radix(h, 16))
                .unwrap_or_else(|| v.parse())
                .unwrap_or_else(|e| panic!("not a number: {v}: {e}"))
        })
        .collect()
}

#[test]
fn tshark_reads_what_we_parse() {
    if Command::new("tshark").arg("--version").output().is_err() {
        println!("skipped: tshark not found (scripts/install-test-deps installs it)");
        return;
    }
    let packet = packet();
    let file = TempFile::new(".pcap");
    std::fs::write(&file.0, pcap(&packet)).unwrap();

    let parsed = PacketRepr::parse(&packet).unwrap();
    let hbh = parsed.hbh.as_ref().unwrap();
    let trace = hbh.ioam_trace().unwrap();
    // tshark lists entries as on the wire: the most recent node first.
    let wire_order: Vec<NodeRepr<'_>> = trace.nodes().rev().collect();
    assert_eq!(wire_order.len(), 3);

    let names = [
        "ipv6.opt.ioam.trace.ns",
        "ipv6.opt.ioam.trace.nodelen",
        "ipv6.opt.ioam.trace.remlen",
        "ipv6.opt.ioam.trace.type",
        "ipv6.opt.ioam.trace.node.hlim",
        "ipv6.opt.ioam.trace.node.id",
        "ipv6.opt.ioam.trace.node.id_wide",
        "ipv6.opt.ioam.trace.node.iif",
        "ipv6.opt.ioam.trace.node.eif",
        "ipv6.opt.ioam.trace.node.qdepth",
        "ipv6.opt.ioam.trace.node.tsf",
        "ipv6.opt.type",
        "udp.dstport",
    ];
    let columns = fields(&file, &names);
    let col = |name: &str| {
        let i = names.iter().position(|n| *n == name).unwrap();
        columns[i].clone()
    };
    assert_eq!(numbers(col("ipv6.opt.ioam.trace.ns")), [0x0abc]);
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.nodelen")),
        [u64::from(trace.node_len)]
    );
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.remlen")),
        [u64::from(trace.remaining_len)]
    );
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.type")),
        [u64::from(trace.trace_type.bits())]
    );
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.node.hlim")),
        wire_order
            .iter()
            .flat_map(|n| {
                [
                    u64::from(n.hop_limit_node_id.unwrap().hop_limit),
                    u64::from(n.hop_limit_node_id_wide.unwrap().hop_limit),
                ]
            })
            .collect::<Vec<_>>()
    );
    let ids = numbers(col("ipv6.opt.ioam.trace.node.id"));
    assert_eq!(
        ids,
        wire_order
            .iter()
            .map(|n| u64::from(n.hop_limit_node_id.unwrap().node_id))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.node.id_wide")),
        wire_order
            .iter()
            .map(|n| n.hop_limit_node_id_wide.unwrap().node_id)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.node.iif")),
        wire_order
            .iter()
            .map(|n| u64::from(n.interface_ids.unwrap().ingress))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.node.eif")),
        wire_order
            .iter()
            .map(|n| u64::from(n.interface_ids.unwrap().egress))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.node.qdepth")),
        wire_order
            .iter()
            .map(|n| u64::from(n.queue_depth.unwrap()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(col("ipv6.opt.ioam.trace.node.tsf")),
        wire_order
            .iter()
            .map(|n| u64::from(n.timestamp_frac.unwrap()))
            .collect::<Vec<_>>()
    );
    // No complaint about NodeLen, RemainingLen or the trace type.
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file.0)
        .args([
            "-Y",
            "ipv6.opt.ioam.trace.invalid_nodelen || ipv6.opt.ioam.trace.invalid_remlen \
             || ipv6.opt.ioam.trace.invalid_type || _ws.malformed || _ws.expert.severity >= warning",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "tshark complains: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The CLT option is seen as an option of type 0x1e, and UDP is reached.
    assert!(numbers(col("ipv6.opt.type")).contains(&0x1e));
    assert_eq!(numbers(col("udp.dstport")), [53]);
}
