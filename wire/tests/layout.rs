//! The Hop-by-Hop headers CLT sends, written by hand from RFC 8200, RFC 9197,
//! RFC 9486 and docs/wire-format.md, one comment per byte: the builder must
//! produce them, `parse` must read them, `emit` must reproduce them.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used)]

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

fn expected_options(node_data: &[u8]) -> [OptionRepr<'_>; 2] {
    [
        OptionRepr::Clt(clt()),
        OptionRepr::Ioam(IoamRepr {
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
        }),
    ]
}

#[test]
fn builder_writes_the_documented_layouts_with_and_without_clt() {
    let without = HbhBuilder::new()
        .trace(123, trace_type(), 24)
        .encap_node(encap_node());
    assert_eq!(without.build().unwrap(), WITHOUT_CLT);
    assert_eq!(without.clt(clt()).build().unwrap(), WITH_CLT);
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
    let options = expected_options(&WITH_CLT[40..]);
    assert_eq!(repr, HbhRepr::new(IpProtocol::NoNextHeader, &options));
    assert_eq!(repr.options().collect::<Vec<_>>(), options);
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
    assert_eq!(repr.options().next(), Some(OptionRepr::PadN(&[])));
    assert_eq!(repr.options().count(), 2);
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

#[test]
fn printer_shows_every_option_and_node() {
    let mut buf = WITH_CLT;
    let mut trace = TracePacket::new_checked(&mut buf[32..]).unwrap();
    fill_node(&mut trace, &transit_node()).unwrap();
    let repr = HbhRepr::parse(&HbhHeader::new_checked(&buf[..]).unwrap()).unwrap();
    assert_eq!(
        repr.to_string(),
        "hop-by-hop next=no-next-header len=64\n\
         \x20 clt trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331\n\
         \x20 ioam pre-allocated trace ns=123 type=0xc20000 \
         [hop_limit_node_id,interface_ids,queue_depth] node_len=3 remaining_len=0 flags=0x0 nodes=2\n\
         \x20   hop 0: hop_limit=64 node_id=1 ingress_if=65535 egress_if=11 queue_depth=0\n\
         \x20   hop 1: hop_limit=63 node_id=2 ingress_if=21 egress_if=22 queue_depth=1500"
    );
    assert_eq!(
        Printer(&buf[..3]).to_string(),
        "malformed packet (3 bytes): truncated ipv6 header: need 40 bytes, have 3"
    );
}

/// A trace with opaque state snapshots: entries of different lengths.
#[rustfmt::skip]
static OPAQUE: [u8; 40] = [
    0x00, 0x01, // namespace id 1
    0x08, // node len 1 (bit 0 only; the snapshot is not counted), flags 0
    0x02, // remaining len 2: 8 bytes free
    0x80, 0x00, 0x02, // trace type: bits 0 and 22
    0x00, // reserved
    0x00, 0x00, 0x00, 0x00, // free
    0x00, 0x00, 0x00, 0x00, // free
    0x3f, 0x00, 0x00, 0x02, // hop 2: hop limit 63, node id 2
    0x00, 0xff, 0xff, 0xff, // hop 2: empty snapshot, no schema (as Linux writes it)
    0x40, 0x00, 0x00, 0x01, // hop 1: hop limit 64, node id 1
    0x02, 0x00, 0x00, 0x07, // hop 1: snapshot of 2 words, schema 7
    0x11, 0x22, 0x33, 0x44, // hop 1: snapshot data
    0x55, 0x66, 0x77, 0x88, // hop 1: snapshot data
];

#[test]
fn opaque_state_entries_in_path_order() {
    let trace_type = TraceType::from_fields([TraceField::HopLimitNodeId, TraceField::OpaqueState]);
    let hop1 = NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 64,
            node_id: 1,
        }),
        opaque_state: Some(OpaqueState {
            schema_id: 7,
            data: &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
        }),
        ..NodeRepr::default()
    };
    let hop2 = NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 63,
            node_id: 2,
        }),
        ..NodeRepr::default()
    };

    // Built the way the sender and a transit node fill it.
    let empty = TraceRepr::new(1, trace_type, 32).unwrap();
    let mut buf = [0u8; 40];
    empty
        .emit(&mut TracePacket::new_unchecked(&mut buf[..]))
        .unwrap();
    let mut view = TracePacket::new_checked(&mut buf[..]).unwrap();
    assert_eq!(
        fill_node(&mut view, &hop1).unwrap(),
        FillOutcome::Filled { offset: 16 }
    );
    assert_eq!(
        fill_node(&mut view, &hop2).unwrap(),
        FillOutcome::Filled { offset: 8 }
    );
    assert_eq!(buf, OPAQUE);

    let repr = TraceRepr::parse(&TracePacket::new_checked(&OPAQUE[..]).unwrap()).unwrap();
    assert_eq!(repr.check_entries(), Ok(2));
    let nodes: Vec<_> = repr.nodes().collect();
    assert_eq!(nodes, [hop1, hop2.for_trace_type(trace_type)]);
    assert_eq!(
        nodes[1].opaque_state,
        Some(OpaqueState {
            schema_id: 0xff_ffff,
            data: &[]
        })
    );

    // An entry cut in the middle is an error, not a shorter list.
    let mut cut = OPAQUE;
    cut[28] = 0x03; // hop 1's snapshot now claims 3 words
    assert_eq!(
        TraceRepr::parse(&TracePacket::new_checked(&cut[..]).unwrap()),
        Err(Error::PartialNode { filled: 24 })
    );
}

#[test]
fn node_len_must_match_the_trace_type() {
    let mut raw = OPAQUE;
    raw[2] = 0x10; // node len 2 for a type that needs 1
    assert_eq!(
        TraceRepr::parse(&TracePacket::new_checked(&raw[..]).unwrap()),
        Err(Error::NodeLenMismatch {
            trace_type: TraceType::from_bits(0x80_0002),
            found: 2,
            expected: 1
        })
    );
    // Remaining length beyond the node data: Linux drops it, so do we.
    let mut raw = OPAQUE;
    raw[3] = 0x0b;
    assert!(matches!(
        TracePacket::new_checked(&raw[..]),
        Err(Error::Truncated { need: 52, .. })
    ));
}

#[test]
fn whole_packet_with_ports() {
    #[rustfmt::skip]
    let mut packet = vec![
        0x60, 0x00, 0x00, 0x00, // version 6, traffic class 0, flow label 0
        0x00, 0x30, // payload length 48: 40 (hop-by-hop) + 8 (udp)
        0x00, // next header: hop-by-hop
        0x3d, // hop limit 61
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst 2001:db8::2
    ];
    let mut hbh = WITHOUT_CLT;
    hbh[0] = 0x11; // next header: udp
    packet.extend_from_slice(&hbh);
    packet.extend_from_slice(&[
        0xc3, 0x50, // udp source port 50000
        0x01, 0xbb, // udp destination port 443
        0x00, 0x08, 0x00, 0x00, // udp length 8, checksum (not checked)
    ]);
    let parsed = PacketRepr::parse(&packet).unwrap();
    assert_eq!(parsed.ipv6.hop_limit, 61);
    assert_eq!(parsed.upper.protocol, IpProtocol::Udp);
    assert_eq!(parsed.upper.offset, 40);
    assert_eq!(
        (parsed.upper.src_port, parsed.upper.dst_port),
        (Some(50000), Some(443))
    );
    let hbh = parsed.hbh.as_ref().unwrap();
    assert_eq!(hbh.next_header, IpProtocol::Udp);
    assert_eq!(hbh.ioam_trace().unwrap().nodes().count(), 1);
    assert!(Printer(&packet).to_string().ends_with("\nudp 50000 -> 443"));

    // The same packet cut inside the trace: an error naming what is short.
    packet.truncate(60);
    packet[5] = 20;
    assert!(matches!(
        PacketRepr::parse(&packet),
        Err(Error::Truncated {
            what: "hop-by-hop header",
            need: 40,
            have: 20
        })
    ));
}
