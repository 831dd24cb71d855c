//! The benchmark packet and the decoders measured on it, shared by the
//! criterion benchmark (`benches/parse.rs`) and the instruction counter
//! (`examples/icount.rs`).
#![allow(dead_code)]

use clt_wire::*;
use std::hint::black_box;

pub fn packet() -> Vec<u8> {
    let trace_type = TraceType::from_fields([
        TraceField::HopLimitNodeId,
        TraceField::InterfaceIds,
        TraceField::QueueDepth,
    ]);
    let node = |i: u32| NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 64 - i as u8,
            node_id: 100 + i,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: i as u16,
            egress: i as u16 + 1,
        }),
        queue_depth: Some(i * 1000),
        ..NodeRepr::default()
    };
    let mut hbh = HbhBuilder::new()
        .next_header(IpProtocol::Udp)
        .trace(0x1234, trace_type, 8 * 12)
        .encap_node(node(0))
        .clt(CltRepr::from_ids(
            0x0af7651916cd43dd8448eb211c80319c,
            0xb7ad6b7169203331,
        ))
        .build()
        .expect("the benchmark header builds");
    for i in 1..8 {
        // The trace starts at offset 32: CLT option (26 bytes) after the
        // 2-byte header, then the IOAM option's 4 bytes.
        let mut trace = TracePacket::new_checked(&mut hbh[32..]).expect("trace view");
        fill_node(&mut trace, &node(i)).expect("room for 8 hops");
    }
    let udp = [0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00];
    let ipv6 = Ipv6Repr {
        traffic_class: 0,
        flow_label: 0x12345,
        payload_len: (hbh.len() + udp.len()) as u16,
        next_header: IpProtocol::HopByHop,
        hop_limit: 57,
        src_addr: "2001:db8::1".parse().expect("address"),
        dst_addr: "2001:db8::2".parse().expect("address"),
    };
    let mut packet = vec![0u8; 40];
    ipv6.emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]))
        .expect("ipv6 header emits");
    packet.extend_from_slice(&hbh);
    packet.extend_from_slice(&udp);
    packet
}

#[inline(always)]
pub fn parsed(packet: &[u8]) -> Option<PacketRepr<'_>> {
    PacketRepr::parse(packet).ok()
}

/// Headers, and a full `NodeRepr` for every hop.
pub fn clt_repr(packet: &[u8]) -> u64 {
    let Some(p) = parsed(packet) else { return 0 };
    let Some(hbh) = &p.hbh else { return 0 };
    let mut n = u64::from(p.upper.src_port.unwrap_or(0));
    n += hbh.clt().map_or(0, |c| c.span_id_u64());
    if let Some(trace) = hbh.ioam_trace() {
        for node in trace.nodes() {
            black_box(&node);
            n += 1;
        }
    }
    n
}

/// Headers, and the fields the trace type has, read through views.
pub fn clt_entries(packet: &[u8]) -> u64 {
    let Some(p) = parsed(packet) else { return 0 };
    let Some(hbh) = &p.hbh else { return 0 };
    let mut n = u64::from(p.upper.src_port.unwrap_or(0));
    n += hbh.clt().map_or(0, |c| c.span_id_u64());
    if let Some(trace) = hbh.ioam_trace() {
        for e in trace.entries() {
            n += e
                .hop_limit_node_id()
                .map_or(0, |h| u64::from(h.hop_limit) + u64::from(h.node_id));
            n += e
                .interface_ids()
                .map_or(0, |i| u64::from(i.ingress) + u64::from(i.egress));
            n += u64::from(e.queue_depth().unwrap_or(0));
        }
    }
    n
}

/// Headers, and every fixed field of every hop through
/// `TraceRepr::for_each_field`, each split into its parts as `NodeEntry`
/// does.
pub fn clt_visit(packet: &[u8]) -> u64 {
    let Some(p) = parsed(packet) else { return 0 };
    let Some(hbh) = &p.hbh else { return 0 };
    let mut n = u64::from(p.upper.src_port.unwrap_or(0));
    n += hbh.clt().map_or(0, |c| c.span_id_u64());
    if let Some(trace) = hbh.ioam_trace() {
        trace.for_each_field(|hop, field, v| {
            n += hop as u64
                + match field {
                    TraceField::HopLimitNodeId => (v >> 24) + (v & 0x00ff_ffff),
                    TraceField::InterfaceIds => (v >> 16) + (v & 0xffff),
                    _ => v,
                };
        });
    }
    n
}

/// Headers only.
pub fn clt_headers(packet: &[u8]) -> u64 {
    let Some(p) = parsed(packet) else { return 0 };
    let trace = p.hbh.as_ref().and_then(|h| h.ioam_trace());
    u64::from(p.upper.src_port.unwrap_or(0)) + trace.map_or(0, |t| u64::from(t.remaining_len))
}

pub fn etherparse_slice(packet: &[u8]) -> usize {
    match etherparse::Ipv6Slice::from_slice(packet) {
        Ok(slice) => slice.extensions().slice().len() + slice.payload().payload.len(),
        Err(_) => 0,
    }
}
