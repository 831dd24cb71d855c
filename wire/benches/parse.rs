//! Full decode of a CLT packet against etherparse's slicing of the same
//! bytes, in the same process.
//!
//! The packet: IPv6 header, a Hop-by-Hop header with the CLT option and an
//! IOAM pre-allocated trace of 8 hops x 12 bytes (hop_limit_node_id |
//! interface_ids | queue_depth), all 8 hops filled, then a UDP header.
//!
//! * `clt-wire full decode`: `PacketRepr::parse` (IPv6 header, every option,
//!   ports) and every field of every node read through `TraceRepr::nodes`.
//! * `etherparse slice`: `Ipv6Slice::from_slice`, which only finds the
//!   header and extension-header boundaries.
//!
//! Criterion measures both; a summary after it prints the two medians and
//! their ratio (goal: under 2).

use clt_wire::*;
use criterion::Criterion;
use std::hint::black_box;
use std::time::Instant;

fn packet() -> Vec<u8> {
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

/// Reads every field of a node, as the agent does when it converts it.
#[inline]
fn consume(node: &NodeRepr<'_>) -> u64 {
    let short = |v: Option<u32>| u64::from(v.unwrap_or(0));
    node.hop_limit_node_id
        .map_or(0, |h| u64::from(h.hop_limit) + u64::from(h.node_id))
        + node
            .interface_ids
            .map_or(0, |i| u64::from(i.ingress) + u64::from(i.egress))
        + short(node.timestamp_secs)
        + short(node.timestamp_frac)
        + short(node.transit_delay)
        + short(node.namespace_data)
        + short(node.queue_depth)
        + short(node.checksum_complement)
        + node
            .hop_limit_node_id_wide
            .map_or(0, |h| u64::from(h.hop_limit) + h.node_id)
        + node
            .interface_ids_wide
            .map_or(0, |i| u64::from(i.ingress) + u64::from(i.egress))
        + node.namespace_data_wide.unwrap_or(0)
        + short(node.buffer_occupancy)
        + node.undefined.len() as u64
        + node
            .opaque_state
            .map_or(0, |o| u64::from(o.schema_id) + o.data.len() as u64)
}

fn clt_full_decode(packet: &[u8]) -> u64 {
    let Ok(parsed) = PacketRepr::parse(packet) else {
        return 0;
    };
    let Some(hbh) = &parsed.hbh else { return 0 };
    let mut sum = u64::from(parsed.upper.src_port.unwrap_or(0));
    if let Some(clt) = hbh.clt() {
        sum += clt.span_id_u64();
    }
    if let Some(trace) = hbh.ioam_trace() {
        for node in trace.nodes() {
            sum += consume(&node);
        }
    }
    sum
}

fn clt_hbh_only(packet: &[u8]) -> u64 {
    let Ok(header) = HbhHeader::new_checked(&packet[40..]) else {
        return 0;
    };
    let Ok(hbh) = HbhRepr::parse(&header) else {
        return 0;
    };
    let mut sum = 0;
    if let Some(trace) = hbh.ioam_trace() {
        for node in trace.nodes() {
            sum += consume(&node);
        }
    }
    sum
}

fn etherparse_slice(packet: &[u8]) -> usize {
    match etherparse::Ipv6Slice::from_slice(packet) {
        Ok(slice) => slice.extensions().slice().len() + slice.payload().payload.len(),
        Err(_) => 0,
    }
}

/// Median nanoseconds per call over `rounds` rounds of `iters` calls.
fn median_ns<R>(rounds: usize, iters: u32, mut f: impl FnMut() -> R) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let packet = packet();
    // Sanity: both sides see the same packet, and ours decodes all 8 hops.
    assert!(
        etherparse_slice(&packet) > 0,
        "etherparse slices the packet"
    );
    let parsed = PacketRepr::parse(&packet).expect("the packet parses");
    let nodes = parsed
        .hbh
        .as_ref()
        .and_then(|h| h.ioam_trace())
        .map(|t| t.nodes().count());
    assert_eq!(nodes, Some(8), "8 hops decoded");

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("hbh-8x12");
    group.bench_function("clt-wire full decode", |b| {
        b.iter(|| clt_full_decode(black_box(&packet)))
    });
    group.bench_function("clt-wire hbh only", |b| {
        b.iter(|| clt_hbh_only(black_box(&packet)))
    });
    group.bench_function("etherparse slice", |b| {
        b.iter(|| etherparse_slice(black_box(&packet)))
    });
    group.finish();
    c.final_summary();

    // The summary, interleaved rounds so both see the same machine state.
    let iters = 200_000;
    let mut ours = Vec::new();
    let mut hbh = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..7 {
        ours.push(median_ns(5, iters, || clt_full_decode(black_box(&packet))));
        hbh.push(median_ns(5, iters, || clt_hbh_only(black_box(&packet))));
        theirs.push(median_ns(5, iters, || etherparse_slice(black_box(&packet))));
    }
    for v in [&mut ours, &mut hbh, &mut theirs] {
        v.sort_by(f64::total_cmp);
    }
    let (ours, hbh, theirs) = (ours[3], hbh[3], theirs[3]);
    println!();
    println!(
        "summary ({} byte packet, 8 hops x 12 bytes + clt option):",
        packet.len()
    );
    println!("  clt-wire full decode (ipv6 + hbh + every node field + ports): {ours:8.1} ns");
    println!("  clt-wire hbh repr + every node field:                         {hbh:8.1} ns");
    println!("  etherparse Ipv6Slice::from_slice (slicing only):              {theirs:8.1} ns");
    println!(
        "  ratio full decode / etherparse: {:.2}x (goal < 2x: {})",
        ours / theirs,
        if ours < 2.0 * theirs {
            "met"
        } else {
            "not met"
        }
    );
    println!("  ratio hbh only / etherparse:    {:.2}x", hbh / theirs);
}
