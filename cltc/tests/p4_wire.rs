//! The P4 backend's wire layout against clt-wire, which mirrors what Linux
//! writes (net/ipv6/ioam6.c): the entry a switch writes must be, byte for
//! byte, the entry Linux writes for the same values, and the Hop-by-Hop
//! header the switch parses must be the one the CLT socket API builds.

mod p4_support;

use clt_wire::node::{
    HopLimitNodeId, HopLimitNodeIdWide, InterfaceIds, InterfaceIdsWide, NO_SCHEMA, NodeRepr,
    OpaqueState,
};
use clt_wire::{CltRepr, HbhBuilder, IpProtocol, TraceField};
use cltc::backend::p4::layout::{self, DomainLayout, FieldSource};
use cltc::ir::Domain;
use p4_support::{examples, fabric};

/// The values one hop records.
struct Hop {
    hop_limit: u8,
    node_id: u32,
    node_id_wide: u64,
    ingress_if: u16,
    egress_if: u16,
    ts_secs: u32,
    ts_frac: u32,
    transit_delay: u32,
    queue_depth: u32,
}

const HOP: Hop = Hop {
    hop_limit: 61,
    node_id: 0x00ab_cdef,
    node_id_wide: 0x0012_3456_789a_bcde,
    ingress_if: 21,
    egress_if: 0x1234,
    ts_secs: 1_764_208_000,
    ts_frac: 999_999,
    transit_delay: 0x0102_0304,
    queue_depth: 7,
};

/// Appends the low `bits` bits of `value` (big-endian bit order).
fn push_bits(out: &mut Vec<bool>, bits: u32, bytes: &[u8]) {
    let all: Vec<bool> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
        .collect();
    let skip = all.len() - bits as usize;
    out.extend_from_slice(&all[skip..]);
}

/// The entry the generated P4 writes: its fields in declaration order, each
/// assigned as `field_value` in program.rs does.
fn p4_entry(l: &DomainLayout, hop: &Hop) -> Vec<u8> {
    let mut bits = Vec::new();
    for f in &l.fields {
        let value: Vec<u8> = match &f.source {
            FieldSource::HopLimit => vec![hop.hop_limit],
            FieldSource::NodeId => hop.node_id.to_be_bytes().to_vec(),
            FieldSource::NodeIdWide => hop.node_id_wide.to_be_bytes().to_vec(),
            FieldSource::IngressIf => hop.ingress_if.to_be_bytes().to_vec(),
            FieldSource::EgressIf => hop.egress_if.to_be_bytes().to_vec(),
            FieldSource::IngressIfWide => u32::from(hop.ingress_if).to_be_bytes().to_vec(),
            FieldSource::EgressIfWide => u32::from(hop.egress_if).to_be_bytes().to_vec(),
            FieldSource::TsSecs => hop.ts_secs.to_be_bytes().to_vec(),
            FieldSource::TsFrac => hop.ts_frac.to_be_bytes().to_vec(),
            FieldSource::TransitDelay => hop.transit_delay.to_be_bytes().to_vec(),
            FieldSource::QueueDepth => hop.queue_depth.to_be_bytes().to_vec(),
            FieldSource::Unavailable => vec![0xff; f.bits.div_ceil(8) as usize],
            FieldSource::Const(bytes) => bytes.clone(),
        };
        push_bits(&mut bits, f.bits, &value);
    }
    assert_eq!(bits.len() % 8, 0, "entry of {} bits", bits.len());
    bits.chunks(8)
        .map(|c| c.iter().fold(0u8, |acc, b| acc << 1 | u8::from(*b)))
        .collect()
}

/// The entry Linux writes for the same values, through clt-wire.
fn linux_entry(domain: &Domain, hop: &Hop) -> Vec<u8> {
    let t = domain.trace_type;
    let unavailable = u32::MAX;
    let schema = domain.schema.as_ref();
    let node = NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: hop.hop_limit,
            node_id: hop.node_id,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: hop.ingress_if,
            egress: hop.egress_if,
        }),
        timestamp_secs: Some(hop.ts_secs),
        timestamp_frac: Some(hop.ts_frac),
        // Linux cannot measure these: all-ones. The switch can, so the
        // comparison below replaces them where the switch writes a value.
        transit_delay: Some(unavailable),
        namespace_data: Some(domain.namespace_data.unwrap_or(unavailable)),
        queue_depth: Some(hop.queue_depth),
        checksum_complement: Some(unavailable),
        hop_limit_node_id_wide: Some(HopLimitNodeIdWide {
            hop_limit: hop.hop_limit,
            node_id: hop.node_id_wide,
        }),
        interface_ids_wide: Some(InterfaceIdsWide {
            ingress: u32::from(hop.ingress_if),
            egress: u32::from(hop.egress_if),
        }),
        namespace_data_wide: Some(domain.namespace_data_wide.unwrap_or(u64::MAX)),
        buffer_occupancy: Some(unavailable),
        undefined: &[],
        opaque_state: Some(match schema {
            Some(s) => OpaqueState {
                schema_id: s.id,
                data: &s.data,
            },
            None => OpaqueState {
                schema_id: NO_SCHEMA,
                data: &[],
            },
        }),
    }
    .for_trace_type(t);
    let mut buf = vec![0u8; node.buffer_len(t)];
    node.emit(t, &mut buf).expect("emit");
    buf
}

/// A synthetic domain of the given fields, compiled (so the IR sizes are
/// the compiler's).
fn domain(fields: &[TraceField], max_hops: u8) -> Domain {
    let trace: Vec<_> = fields.iter().map(|f| f.name()).collect();
    let src = format!(
        "domain all {{ namespace 7 data 0xc0ffee00 trace {} max_hops {max_hops} collector 127.0.0.1:1 }}",
        trace.join(", ")
    );
    cltc::compile_source("all.clt", &src)
        .map(|c| c.fabric.domains[0].clone())
        .unwrap_or_else(|d| panic!("{}", d.render("all.clt", &src)))
}

/// The domains of the examples, and synthetic ones covering every field.
fn domains() -> Vec<Domain> {
    let mut out: Vec<Domain> = examples().iter().flat_map(|p| fabric(p).domains).collect();
    let every: Vec<TraceField> = TraceField::ALL
        .into_iter()
        .filter(|f| *f != TraceField::OpaqueState)
        .collect();
    out.push(domain(&every, 2));
    for f in TraceField::ALL {
        out.push(domain(&[f], 3));
    }
    out
}

#[test]
fn a_switch_entry_is_the_linux_entry() {
    for d in domains() {
        let l = layout::layout(&d, 0);
        let p4 = p4_entry(&l, &HOP);
        let mut linux = linux_entry(&d, &HOP);
        assert_eq!(
            p4.len(),
            linux.len(),
            "domain {} ({})",
            d.name,
            d.trace_type
        );
        // Transit delay is the one field a switch measures and Linux does
        // not: put the switch's value in Linux's bytes before comparing.
        if d.trace_type.contains(TraceField::TransitDelay) {
            let at = l
                .fields
                .iter()
                .take_while(|f| f.name != "transit_delay")
                .map(|f| f.bits as usize / 8)
                .sum::<usize>();
            linux[at..at + 4].copy_from_slice(&HOP.transit_delay.to_be_bytes());
        }
        assert_eq!(p4, linux, "domain {} ({})", d.name, d.trace_type);
    }
}

#[test]
fn layouts_agree_with_the_ir() {
    for d in domains() {
        let l = layout::layout(&d, 0);
        assert_eq!(
            u32::from(l.per_hop_words) * 4,
            u32::from(d.per_hop_len),
            "{}",
            d.name
        );
        assert_eq!(l.data_len(), u32::from(d.prealloc_len), "{}", d.name);
    }
}

#[test]
fn the_parsed_header_is_the_one_clt_wire_builds() {
    for d in domains() {
        let l = layout::layout(&d, 0);
        let size = l.data_len() as usize;
        if size > 244 {
            continue;
        }
        let opt_len = u8::try_from(l.ioam_opt_len()).expect("option length");

        let plain = HbhBuilder::new()
            .next_header(IpProtocol::Tcp)
            .trace(d.namespace, d.trace_type, size)
            .build()
            .expect("plain header");
        assert_eq!(plain.len() as u32, l.hbh_len_plain(), "{}", d.name);
        assert_eq!(
            u32::from(plain[1]),
            DomainLayout::hdr_ext_len(l.hbh_len_plain())
        );
        // PadN(2), then the option the parser selects on.
        assert_eq!(plain[2..6], [0x01, 0x00, 0x31, opt_len], "{}", d.name);
        assert_eq!(plain[7], 0, "pre-allocated trace");
        assert_eq!(plain[8..10], d.namespace.to_be_bytes());
        let tail = &plain[plain.len() - l.tail_pad() as usize..];
        assert!(
            tail.is_empty() || tail == [0x01, 0x02, 0, 0],
            "{}: tail {tail:?}",
            d.name
        );

        let with_ids = HbhBuilder::new()
            .next_header(IpProtocol::Udp)
            .trace(d.namespace, d.trace_type, size)
            .clt(CltRepr::from_ids(1, 2))
            .build()
            .expect("header with ids");
        assert_eq!(with_ids.len() as u32, l.hbh_len_clt(), "{}", d.name);
        assert_eq!(
            u32::from(with_ids[1]),
            DomainLayout::hdr_ext_len(l.hbh_len_clt())
        );
        assert_eq!(with_ids[2..4], [0x1e, 0x18], "the CLT option first");
        assert_eq!(with_ids[28..30], [0x31, opt_len], "then the IOAM option");
        assert_eq!(with_ids[31], 0, "pre-allocated trace");
        let tail = &with_ids[with_ids.len() - l.tail_pad() as usize..];
        assert!(
            tail.is_empty() || tail == [0x01, 0x02, 0, 0],
            "{}: tail {tail:?}",
            d.name
        );
    }
}
