//! The Hop-by-Hop headers CLT sends, written by hand from RFC 8200, RFC 9197,
//! RFC 9486 and docs/wire-format.md, one comment per byte: the builder must
//! produce them, `parse` must read them, `emit` must reproduce them.

use clt_wire::*;

/// hop_limit_node_id | interface_ids | queue_depth: 3 units per node.
fn trace_type() -> TraceType {
    TraceType::from_fields([
        TraceField::HopLimitNodeId,
        TraceField::InterfaceIds,
        TraceField::QueueDepth,
    ])
}

fn clt() -> CltRepr {
    CltRepr::from_ids(0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331)
}

fn encap_node() -> NodeRepr<'static> {
    NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 64,
            node_id: 1,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: 0xffff,
            egress: 11,
        }),
        queue_depth: Some(0),
        ..NodeRepr::default()
    }
}

fn transit_node() -> NodeRepr<'static> {
    NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 63,
            node_id: 2,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: 21,
            egress: 22,
        }),
        queue_depth: Some(1500),
        ..NodeRepr::default()
    }
}

/// CLT option + a 24-byte trace with the sender's entry filled.
#[rustfmt::skip]
static WITH_CLT: [u8; 64] = [
    0x3b, // next header: no next header (the kernel overwrites it)
    0x07, // hdr ext len: (7 + 1) * 8 = 64 bytes
    0x1e, // option type: clt (0x1e, skip if unknown, not changed en route)
    0x18, // opt data len: 24
    0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, // trace id, high half
    0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c, // trace id, low half
    0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31, // span id
    0x31, // offset 28 (4n): option type ioam
    0x22, // opt data len: 2 + 8 + 24 = 34
    0x00, // reserved
    0x00, // ioam type: pre-allocated trace
    0x00, 0x7b, // namespace id 123
    0x18, // node len 3 (0b00011), flags 0 (3 high bits)
    0x03, // flags 0 (low bit), remaining len 3 (12 bytes free)
    0xc2, 0x00, 0x00, // trace type: bits 0, 1, 6
    0x00, // reserved
    0x00, 0x00, 0x00, 0x00, // free
    0x00, 0x00, 0x00, 0x00, // free
    0x00, 0x00, 0x00, 0x00, // free
    0x40, 0x00, 0x00, 0x01, // sender: hop limit 64, node id 1
    0xff, 0xff, 0x00, 0x0b, // sender: ingress unavailable, egress 11
    0x00, 0x00, 0x00, 0x00, // sender: queue depth 0
];

/// The same trace without the CLT option: PadN puts IOAM at offset 4.
#[rustfmt::skip]
static WITHOUT_CLT: [u8; 40] = [
    0x3b, // next header: no next header
    0x04, // hdr ext len: (4 + 1) * 8 = 40 bytes
    0x01, // option type: padn
    0x00, // opt data len: 0 (2 bytes of padding in all)
    0x31, // offset 4 (4n): option type ioam
    0x22, // opt data len: 34
    0x00, // reserved
    0x00, // ioam type: pre-allocated trace
    0x00, 0x7b, // namespace id 123
    0x18, // node len 3, flags 0
    0x03, // remaining len 3
    0xc2, 0x00, 0x00, // trace type: bits 0, 1, 6
    0x00, // reserved
    0x00, 0x00, 0x00, 0x00, // free
    0x00, 0x00, 0x00, 0x00, // free
    0x00, 0x00, 0x00, 0x00, // free
    0x40, 0x00, 0x00, 0x01, // sender: hop limit 64, node id 1
    0xff, 0xff, 0x00, 0x0b, // sender: ingress unavailable, egress 11
    0x00, 0x00, 0x00, 0x00, // sender: queue depth 0
];

/// A 20-byte trace (not a multiple of 8) with the CLT option, empty: 4 bytes
/// of PadN at the end.
#[rustfmt::skip]
static PADDED: [u8; 64] = [
    0x3b, // next header: no next header
    0x07, // hdr ext len: 64 bytes
    0x1e, 0x18, // clt option, 24 bytes
    0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, // trace id, high half
    0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c, // trace id, low half
    0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31, // span id
    0x31, // option type ioam
    0x1e, // opt data len: 2 + 8 + 20 = 30
    0x00, 0x00, // reserved, pre-allocated trace
    0xff, 0xff, // namespace id 0xffff (default namespace)
    0x18, // node len 3, flags 0
    0x05, // remaining len 5: all 20 bytes free
    0xc2, 0x00, 0x00, 0x00, // trace type bits 0, 1, 6; reserved
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // free
    0x01, // option type padn
    0x02, // opt data len 2 (4 bytes of padding in all)
    0x00, 0x00, // padding
];

fn expected_with_clt(node_data: &[u8]) -> HbhRepr<'_> {
    let mut options = hbh::Options::new();
    options.push(OptionRepr::Clt(clt()));
    options.push(OptionRepr::Ioam(IoamRepr {
        reserved: 0,
        body: IoamBody::PreallocatedTrace(TraceRepr {
            namespace_id: 123,
            node_len: 3,
            flags: TraceFlags::default(),
            remaining_len: 3,
            trace_type: trace_type(),
            reserved: 0,
            node_data,
        }),
    }));
    HbhRepr {
        next_header: IpProtocol::NoNextHeader,
        options,
    }
}

#[test]
fn builder_writes_the_documented_layout_with_clt() {
    let built = HbhBuilder::new()
        .trace(123, trace_type(), 24)
        .encap_node(encap_node())
        .clt(clt())
        .build()
        .unwrap();
    assert_eq!(built, WITH_CLT);
}

#[test]
fn builder_writes_the_documented_layout_without_clt() {
    let built = HbhBuilder::new()
        .trace(123, trace_type(), 24)
        .encap_node(encap_node())
        .build()
        .unwrap();
    assert_eq!(built, WITHOUT_CLT);
}

#[test]
fn builder_pads_to_a_multiple_of_8() {
    let built = HbhBuilder::new()
        .trace(0xffff, trace_type(), 20)
        .clt(clt())
        .build()
        .unwrap();
    assert_eq!(built, PADDED);
}

#[test]
fn parse_then_emit_with_clt() {
    let header = HbhHeader::new_checked(&WITH_CLT[..]).unwrap();
    let repr = HbhRepr::parse(&header).unwrap();
    assert_eq!(repr, expected_with_clt(&WITH_CLT[40..]));
    assert_eq!(repr.clt(), Some(&clt()));
    let nodes: Vec<_> = repr.ioam_trace().unwrap().nodes().collect();
    assert_eq!(nodes, [encap_node()]);

    let mut out = [0u8; 64];
    repr.emit(&mut HbhHeader::new_unchecked(&mut out[..]))
        .unwrap();
    assert_eq!(out, WITH_CLT);
}

#[test]
fn parse_then_emit_without_clt_and_padded() {
    for raw in [&WITHOUT_CLT[..], &PADDED[..]] {
        let repr = HbhRepr::parse(&HbhHeader::new_checked(raw).unwrap()).unwrap();
        let mut out = vec![0u8; raw.len()];
        repr.emit(&mut HbhHeader::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, raw);
    }
    let repr = HbhRepr::parse(&HbhHeader::new_checked(&WITHOUT_CLT[..]).unwrap()).unwrap();
    assert_eq!(repr.clt(), None);
    assert_eq!(repr.options[0], OptionRepr::PadN(&[]));
    let trace = repr.ioam_trace().unwrap();
    assert_eq!((trace.namespace_id, trace.remaining_len), (123, 3));
    assert_eq!(trace.nodes().count(), 1);
}

#[test]
fn transit_fill_then_overflow() {
    let mut buf = WITH_CLT;
    let mut trace = TracePacket::new_checked(&mut buf[32..]).unwrap();
    assert_eq!(
        fill_node(&mut trace, &transit_node()).unwrap(),
        FillOutcome::Filled { offset: 0 }
    );
    assert_eq!(&buf[34..36], &[0x18, 0x00], "node len 3, remaining len 0");
    assert_eq!(
        &buf[40..52],
        &[
            0x3f, 0x00, 0x00, 0x02, 0x00, 0x15, 0x00, 0x16, 0x00, 0x00, 0x05, 0xdc
        ]
    );
    // The sender's entry is untouched.
    assert_eq!(&buf[52..64], &WITH_CLT[52..64]);

    let mut trace = TracePacket::new_checked(&mut buf[32..]).unwrap();
    assert_eq!(
        fill_node(&mut trace, &transit_node()).unwrap(),
        FillOutcome::Overflow
    );
    assert_eq!(
        buf[34], 0x1c,
        "node len 3, overflow flag (0b100 in this byte)"
    );
    let mut trace = TracePacket::new_checked(&mut buf[32..]).unwrap();
    assert_eq!(
        fill_node(&mut trace, &transit_node()).unwrap(),
        FillOutcome::AlreadyOverflowed
    );

    let repr = HbhRepr::parse(&HbhHeader::new_checked(&buf[..]).unwrap()).unwrap();
    let trace = repr.ioam_trace().unwrap();
    assert!(trace.overflow());
    let nodes: Vec<_> = trace.nodes().collect();
    assert_eq!(nodes, [encap_node(), transit_node()], "path order");
    let reversed: Vec<_> = trace.nodes().rev().collect();
    assert_eq!(reversed, [transit_node(), encap_node()]);
}
