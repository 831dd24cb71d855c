//! Wireshark's IOAM dissector as an independent oracle: a packet built by
//! this crate (CLT option, then a pre-allocated trace filled by three nodes)
//! is written to a pcap file and dissected by `tshark`; every field it reads
//! must be what `clt-wire` parses. Skips when tshark is not installed.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used)]

use clt_testkit::tshark::{self, numbers};
use clt_wire::*;
use std::process::Command;

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

#[test]
fn tshark_reads_what_we_parse() {
    clt_testkit::skip_if!(clt_testkit::skip::tools_missing(&["tshark"]));
    let packet = packet();
    let file = clt_testkit::TempFile::new("clt-wire-tshark-", ".pcap");
    std::fs::write(file.path(), clt_testkit::pcap::write_raw(&[&packet])).unwrap();

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
    let rows = tshark::fields(file.path(), None, &names);
    assert_eq!(rows.len(), 1, "one packet: {rows:?}");
    assert_eq!(rows[0].len(), names.len(), "one column per field");
    let col = |name: &str| {
        let i = names.iter().position(|n| *n == name).unwrap();
        rows[0][i].as_str()
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
        .arg(file.path())
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
