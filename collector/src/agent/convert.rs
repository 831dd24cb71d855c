//! From a captured IPv6 packet to a CLT report, with clt-wire.

use clt_proto::clt_api::CltTrace;
use clt_proto::ioam_api::{IoamNode, IoamTrace, Opaque};
use clt_wire::{NodeRepr, PacketRepr, TraceField, TraceRepr};

use super::sink::Key;

/// What one packet gave.
#[derive(Debug)]
pub enum Parsed {
    /// An IOAM trace (with or without CLT ids).
    Trace(Box<CltTrace>),
    /// A valid packet without an IOAM pre-allocated trace.
    NoTrace,
}

/// Decodes the filled entries of `trace` (`count` of them, as
/// [`TraceRepr::check_entries`] counted) into API nodes, the most recent
/// hop first as the API carries them, with one
/// [`TraceRepr::for_each_field`] walk (the opaque state through
/// [`TraceRepr::entries`]).
pub fn nodes(trace: &TraceRepr<'_>, count: usize) -> Vec<IoamNode> {
    let mut out = vec![IoamNode::default(); count];
    let t = trace.trace_type;
    let narrow_hop_limit = t.contains(TraceField::HopLimitNodeId);
    trace.for_each_field(|hop, field, v| {
        // Path order in, most recent first out.
        let Some(o) = count.checked_sub(hop + 1).and_then(|i| out.get_mut(i)) else {
            return;
        };
        match field {
            TraceField::HopLimitNodeId => {
                o.hop_limit = (v >> 24) as u32;
                o.id = (v & 0xff_ffff) as u32;
            }
            TraceField::InterfaceIds => {
                o.ingress_id = (v >> 16) as u32;
                o.egress_id = (v & 0xffff) as u32;
            }
            TraceField::TimestampSecs => o.timestamp_secs = v as u32,
            TraceField::TimestampFrac => o.timestamp_frac = v as u32,
            TraceField::TransitDelay => o.transit_delay = v as u32,
            TraceField::NamespaceData => o.namespace_data = (v as u32).to_be_bytes().to_vec(),
            TraceField::QueueDepth => o.queue_depth = v as u32,
            TraceField::ChecksumComplement => o.csum_comp = v as u32,
            TraceField::HopLimitNodeIdWide => {
                if !narrow_hop_limit {
                    o.hop_limit = (v >> 56) as u32;
                }
                o.id_wide = v & 0x00ff_ffff_ffff_ffff;
            }
            TraceField::InterfaceIdsWide => {
                o.ingress_id_wide = (v >> 32) as u32;
                o.egress_id_wide = v as u32;
            }
            TraceField::NamespaceDataWide => o.namespace_data_wide = v.to_be_bytes().to_vec(),
            TraceField::BufferOccupancy => o.buffer_occupancy = v as u32,
            TraceField::OpaqueState => {}
        }
    });
    if t.has_opaque_state() {
        for (hop, e) in trace.entries().enumerate() {
            let slot = count.checked_sub(hop + 1).and_then(|i| out.get_mut(i));
            if let (Some(o), Some(s)) = (slot, e.opaque_state()) {
                o.oss = Some(Opaque {
                    schema_id: s.schema_id,
                    data: s.data.to_vec(),
                });
            }
        }
    }
    out
}

/// One hop through `NodeRepr` (the straightforward per-hop conversion):
/// the oracle [`nodes`] is tested against and the baseline it is
/// benchmarked against (`benches/agent.rs`).
#[doc(hidden)]
pub fn node_from_repr(n: &NodeRepr<'_>) -> IoamNode {
    let mut o = IoamNode::default();
    if let Some(h) = n.hop_limit_node_id {
        o.hop_limit = h.hop_limit.into();
        o.id = h.node_id;
    }
    if let Some(i) = n.interface_ids {
        o.ingress_id = i.ingress.into();
        o.egress_id = i.egress.into();
    }
    o.timestamp_secs = n.timestamp_secs.unwrap_or(0);
    o.timestamp_frac = n.timestamp_frac.unwrap_or(0);
    o.transit_delay = n.transit_delay.unwrap_or(0);
    if let Some(d) = n.namespace_data {
        o.namespace_data = d.to_be_bytes().to_vec();
    }
    o.queue_depth = n.queue_depth.unwrap_or(0);
    o.csum_comp = n.checksum_complement.unwrap_or(0);
    if let Some(w) = n.hop_limit_node_id_wide {
        if n.hop_limit_node_id.is_none() {
            o.hop_limit = w.hop_limit.into();
        }
        o.id_wide = w.node_id;
    }
    if let Some(i) = n.interface_ids_wide {
        o.ingress_id_wide = i.ingress;
        o.egress_id_wide = i.egress;
    }
    if let Some(d) = n.namespace_data_wide {
        o.namespace_data_wide = d.to_be_bytes().to_vec();
    }
    o.buffer_occupancy = n.buffer_occupancy.unwrap_or(0);
    if let Some(s) = n.opaque_state {
        o.oss = Some(Opaque {
            schema_id: s.schema_id,
            data: s.data.to_vec(),
        });
    }
    o
}

/// Parses a packet that starts at its IPv6 header.
pub fn parse_packet(
    bytes: &[u8],
    capture_time_ns: u64,
    reporter: &str,
    interface: &str,
) -> Result<Parsed, clt_wire::Error> {
    parse_packet_keyed(bytes, capture_time_ns, reporter, interface, None)
}

/// [`parse_packet`], also filling `key` (when given and the packet has a
/// trace) with what the node's own trace event is matched on.
pub fn parse_packet_keyed(
    bytes: &[u8],
    capture_time_ns: u64,
    reporter: &str,
    interface: &str,
    key: Option<&mut Key>,
) -> Result<Parsed, clt_wire::Error> {
    let p = PacketRepr::parse(bytes)?;
    let Some(hbh) = &p.hbh else {
        return Ok(Parsed::NoTrace);
    };
    let Some(trace) = hbh.ioam_trace() else {
        return Ok(Parsed::NoTrace);
    };
    if let Some(k) = key {
        k.namespace = trace.namespace_id;
        k.trace_type = trace.trace_type.bits();
        k.filled.clear();
        k.filled.extend_from_slice(trace.filled());
    }
    let count = trace.check_entries()?;
    let (high, low, span) = match hbh.clt() {
        Some(c) => {
            let (h, l) = c.trace_id_high_low();
            (h, l, c.span_id_u64())
        }
        None => (0, 0, 0),
    };
    let ioam = IoamTrace {
        trace_id_high: high,
        trace_id_low: low,
        span_id: span,
        namespace_id: trace.namespace_id.into(),
        bit_field: trace.trace_type.bits() << 8,
        nodes: nodes(trace, count),
    };
    Ok(Parsed::Trace(Box::new(CltTrace {
        trace: Some(ioam),
        src_addr: p.ipv6.src_addr.octets().to_vec(),
        dst_addr: p.ipv6.dst_addr.octets().to_vec(),
        src_port: p.upper.src_port.unwrap_or(0).into(),
        dst_port: p.upper.dst_port.unwrap_or(0).into(),
        protocol: u8::from(p.upper.protocol).into(),
        capture_time_unix_nano: capture_time_ns,
        reporter: reporter.to_owned(),
        interface: interface.to_owned(),
    })))
}

/// One JSON line for `--output json`.
pub fn to_json(t: &CltTrace) -> serde_json::Value {
    let r = crate::model::IoamReport::from_clt(t.clone());
    let nodes: Vec<serde_json::Value> = t
        .trace
        .as_ref()
        .map(|tr| {
            tr.nodes
                .iter()
                .map(|n| {
                    serde_json::json!({
                        "hop_limit": n.hop_limit, "node_id": n.id,
                        "ingress_if_id": n.ingress_id, "egress_if_id": n.egress_id,
                        "timestamp_secs": n.timestamp_secs, "timestamp_frac": n.timestamp_frac,
                        "transit_delay": n.transit_delay, "queue_depth": n.queue_depth,
                        "checksum_complement": n.csum_comp, "buffer_occupancy": n.buffer_occupancy,
                        "node_id_wide": n.id_wide, "ingress_if_id_wide": n.ingress_id_wide,
                        "egress_if_id_wide": n.egress_id_wide,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "trace_id": r.key.map(|k| format!("{:032x}", k.trace_id)),
        "span_id": r.key.map(|k| format!("{:016x}", k.span_id)),
        "namespace_id": r.namespace_id,
        "trace_type": format!("{:#08x}", r.trace_type),
        "flow": r.flow,
        "capture_time_ns": r.capture_time_ns,
        "reporter": r.reporter,
        "nodes": nodes,
    })
}

/// A human-readable line per trace, then one per node (last hop first, as
/// carried).
pub fn to_human(t: &CltTrace) -> String {
    let r = crate::model::IoamReport::from_clt(t.clone());
    let ids = match r.key {
        Some(k) => format!("trace {:032x} span {:016x}", k.trace_id, k.span_id),
        None => "plain ioam".to_owned(),
    };
    let flow = r.flow.map_or(String::new(), |f| {
        format!(
            " [{}]:{} -> [{}]:{} proto {}",
            f.src, f.src_port, f.dst, f.dst_port, f.protocol
        )
    });
    let mut s = format!(
        "{ids} ns {} type {:#08x}{flow} on {}\n",
        r.namespace_id, r.trace_type, r.reporter
    );
    for (i, n) in r.nodes.iter().enumerate() {
        s.push_str(&format!(
            "  node {i}: id {} hlim {} if {}/{} ts {}.{:06} queue {} delay {}\n",
            n.id,
            n.hop_limit,
            n.ingress_id,
            n.egress_id,
            n.timestamp_secs,
            n.timestamp_frac,
            n.queue_depth,
            n.transit_delay
        ));
    }
    s
}

/// Builds a whole IPv6/HBH/UDP packet as the agent captures it (for tests
/// and benchmarks): an IOAM trace of `size` bytes with the encapsulating
/// node's entry `node`, the CLT option when `ids` is given.
pub fn build_packet(
    ids: Option<(u128, u64)>,
    trace_type: u32,
    size: usize,
    node: NodeRepr<'_>,
    payload: &[u8],
) -> Result<Vec<u8>, clt_wire::Error> {
    use clt_wire::{CltRepr, HbhBuilder, IpProtocol, TraceType};
    let mut b = HbhBuilder::new().next_header(IpProtocol::Udp).trace(
        123,
        TraceType::from_bits(trace_type),
        size,
    );
    if let Some((t, s)) = ids {
        b = b.clt(CltRepr {
            trace_id: t.to_be_bytes(),
            span_id: s.to_be_bytes(),
        });
    }
    let hbh = b.encap_node(node).build()?;
    let udp_len = 8 + payload.len();
    let plen = hbh.len() + udp_len;
    let mut p = Vec::with_capacity(40 + plen);
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(plen as u16).to_be_bytes());
    p.extend_from_slice(&[0, 64]); // next header: hop-by-hop; hop limit
    p.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .map_or([0; 16], |a| a.octets()),
    );
    p.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .map_or([0; 16], |a| a.octets()),
    );
    p.extend_from_slice(&hbh);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clt_wire::{HopLimitNodeId, InterfaceIds};

    fn node() -> NodeRepr<'static> {
        NodeRepr {
            hop_limit_node_id: Some(HopLimitNodeId {
                hop_limit: 64,
                node_id: 1,
            }),
            interface_ids: Some(InterfaceIds {
                ingress: 0xffff,
                egress: 11,
            }),
            queue_depth: Some(9),
            ..NodeRepr::default()
        }
    }

    fn trace(p: &Parsed) -> &CltTrace {
        match p {
            Parsed::Trace(t) => t,
            Parsed::NoTrace => panic!("no trace"),
        }
    }

    #[test]
    fn packet_with_ids_becomes_a_clt_trace() {
        let pkt = build_packet(Some((7, 9)), 0xc2_0000, 24, node(), b"GET /").unwrap();
        let parsed = parse_packet(&pkt, 5, "sink", "eth0").unwrap();
        let t = trace(&parsed);
        let ioam = t.trace.as_ref().unwrap();
        assert_eq!(
            (ioam.trace_id_high, ioam.trace_id_low, ioam.span_id),
            (0, 7, 9)
        );
        assert_eq!((ioam.namespace_id, ioam.bit_field), (123, 0xc2_0000 << 8));
        assert_eq!(ioam.nodes.len(), 1);
        let n = &ioam.nodes[0];
        assert_eq!(
            (n.hop_limit, n.id, n.ingress_id, n.egress_id, n.queue_depth),
            (64, 1, 0xffff, 11, 9)
        );
        assert_eq!(
            (t.src_port, t.dst_port, t.protocol, t.capture_time_unix_nano),
            (40000, 443, 17, 5)
        );
        assert_eq!(t.dst_addr[15], 2);
        let j = to_json(t);
        assert_eq!(j["span_id"], "0000000000000009");
        assert!(to_human(t).contains("node 0: id 1"));
    }

    #[test]
    fn plain_packet_has_no_ids_and_truncations_are_errors() {
        let pkt = build_packet(None, 0x80_0000, 12, node(), b"").unwrap();
        let parsed = parse_packet(&pkt, 0, "", "").unwrap();
        assert_eq!(trace(&parsed).trace.as_ref().unwrap().span_id, 0);
        // every truncation is an error or a packet without trace, never a panic
        for len in 0..pkt.len() {
            let _ = parse_packet(&pkt[..len], 0, "", "");
        }
        assert!(parse_packet(&pkt[..50], 0, "", "").is_err());
        let mut bad = pkt.clone();
        bad[0] = 0x40;
        assert!(parse_packet(&bad, 0, "", "").is_err());
    }

    #[test]
    fn malformed_packets_are_counted_and_skipped() {
        let stats = super::super::report::AgentStats::default();
        let sink = super::super::Sink::Print(super::super::Output::Json);
        let good = build_packet(None, 0x80_0000, 12, node(), b"").unwrap();
        super::super::handle_packet(&good[..45], 0, "", "", &stats, &sink);
        super::super::handle_packet(&[0u8; 3], 0, "", "", &stats, &sink);
        let l = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            (l(&stats.packets), l(&stats.malformed), l(&stats.traces)),
            (2, 2, 0)
        );
    }

    #[test]
    fn nodes_decode_every_field_of_every_trace_type_like_node_repr() {
        use clt_wire::{
            HopLimitNodeIdWide, InterfaceIdsWide, OpaqueState, TracePacket, TraceType, fill_node,
        };
        // Every subset of the 13 known fields (2^13 trace types), three hops
        // with distinct values in every field.
        let snapshot = [1u8, 2, 3, 4, 5, 6, 7, 8];
        for mask in 0u32..(1 << 13) {
            let fields = TraceField::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, f)| f);
            let t = TraceType::from_fields(fields);
            let hop = |i: u32| NodeRepr {
                hop_limit_node_id: Some(HopLimitNodeId {
                    hop_limit: 64 - i as u8,
                    node_id: 0x10_0000 + i,
                }),
                interface_ids: Some(InterfaceIds {
                    ingress: 100 + i as u16,
                    egress: 200 + i as u16,
                }),
                timestamp_secs: Some(1_700_000_000 + i),
                timestamp_frac: Some(10 + i),
                transit_delay: Some(20 + i),
                namespace_data: Some(0xdead_0000 + i),
                queue_depth: Some(30 + i),
                checksum_complement: Some(40 + i),
                hop_limit_node_id_wide: Some(HopLimitNodeIdWide {
                    hop_limit: 32 - i as u8,
                    node_id: 0x00ab_cdef_0123_4500 + u64::from(i),
                }),
                interface_ids_wide: Some(InterfaceIdsWide {
                    ingress: 0x1_0000 + i,
                    egress: 0x2_0000 + i,
                }),
                namespace_data_wide: Some(0x0102_0304_0506_0700 + u64::from(i)),
                buffer_occupancy: Some(50 + i),
                undefined: &[],
                opaque_state: Some(OpaqueState {
                    schema_id: 7 + i,
                    data: &snapshot[..4 * (i as usize % 3)],
                }),
            };
            let per_hop = usize::from(t.node_len()) * 4 + if t.has_opaque_state() { 12 } else { 0 };
            let size = (per_hop * 3).clamp(4, 244);
            let mut buf = vec![0u8; 8 + size];
            let mut view = TracePacket::new_checked(&mut buf[..]).unwrap();
            TraceRepr::new(9, t, size).unwrap().emit(&mut view).unwrap();
            for i in 0..3 {
                fill_node(&mut view, &hop(i)).unwrap();
            }
            let view = TracePacket::new_checked(&buf[..]).unwrap();
            let trace = TraceRepr::parse(&view).unwrap();
            let count = trace.check_entries().unwrap();
            let want: Vec<IoamNode> = trace.nodes().rev().map(|n| node_from_repr(&n)).collect();
            assert_eq!(nodes(&trace, count), want, "trace type {:#08x}", t.bits());
        }
    }
}
