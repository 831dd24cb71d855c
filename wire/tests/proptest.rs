//! Property tests, run by the normal `cargo test`: no parser, iterator or
//! printer panics on arbitrary bytes; valid representations round-trip
//! through `emit` and `parse`; bytes that parse are emitted back unchanged.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used)]

use clt_wire::*;
use proptest::prelude::*;

/// Every entry point that takes bytes; must never panic.
fn exercise(bytes: &[u8]) {
    let _ = Printer(bytes).to_string();
    if let Ok(packet) = PacketRepr::parse(bytes) {
        let _ = packet.to_string();
    }
    if let Ok(packet) = Ipv6Packet::new_checked(bytes) {
        let _ = Ipv6Repr::parse(&packet);
        let _ = upper_layer(packet.next_header(), packet.payload());
    }
    if let Ok(header) = HbhHeader::new_checked(bytes) {
        for (_, option) in header.options_iter().flatten() {
            let _ = OptionRepr::parse(&option);
        }
        if let Ok(repr) = HbhRepr::parse(&header) {
            let _ = repr.to_string();
            let _ = repr.options().count();
            if let Some(trace) = repr.ioam_trace() {
                let _ = trace.nodes().count();
                let _ = trace.nodes().rev().count();
            }
        }
    }
    let _ = IoamRepr::parse(bytes);
    let _ = CltRepr::parse(bytes);
    if let Ok(trace) = TracePacket::new_checked(bytes) {
        let _ = trace.filled();
        if let Ok(repr) = TraceRepr::parse(&trace) {
            let _ = repr.to_string();
            let _ = repr.nodes().collect::<Vec<_>>();
            assert_eq!(fields_visited(&repr), fields_via_entries(&repr));
        }
        // A hand-built repr over the same bytes, unchecked: iterating must
        // stop, not panic.
        let loose = TraceRepr {
            namespace_id: 0,
            node_len: trace.node_len(),
            flags: trace.flags(),
            remaining_len: trace.remaining_len(),
            trace_type: trace.trace_type(),
            reserved: 0,
            node_data: trace.node_data(),
        };
        let _ = loose.nodes().count();
        assert_eq!(fields_visited(&loose), fields_via_entries(&loose));
        let _ = loose.check_entries();
        let mut copy = bytes.to_vec();
        let mut view = TracePacket::new_unchecked(&mut copy[..]);
        let _ = fill_node(&mut view, &NodeRepr::default());
    }
    if bytes.len() >= 3 {
        let trace_type =
            TraceType::from_bits(u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]));
        let _ = NodeRepr::parse(trace_type, &bytes[3..]);
        let _ = NodeRepr::entry_len(trace_type, &bytes[3..]);
    }
}

/// Every fixed field of every entry as `TraceRepr::for_each_field` gives it.
fn fields_visited(trace: &TraceRepr<'_>) -> Vec<(usize, TraceField, u64)> {
    let mut out = Vec::new();
    let hops = trace.for_each_field(|hop, field, value| out.push((hop, field, value)));
    assert_eq!(
        hops,
        trace.entries().count(),
        "for_each_field visits every entry"
    );
    out
}

/// The same read through the `NodeEntry` views, put back together into the
/// wire values.
fn fields_via_entries(trace: &TraceRepr<'_>) -> Vec<(usize, TraceField, u64)> {
    let mut out = Vec::new();
    for (hop, e) in trace.entries().enumerate() {
        for field in trace.trace_type.fields() {
            let value = match field {
                TraceField::HopLimitNodeId => e
                    .hop_limit_node_id()
                    .map(|h| (u64::from(h.hop_limit) << 24) | u64::from(h.node_id)),
                TraceField::InterfaceIds => e
                    .interface_ids()
                    .map(|i| (u64::from(i.ingress) << 16) | u64::from(i.egress)),
                TraceField::TimestampSecs => e.timestamp_secs().map(u64::from),
                TraceField::TimestampFrac => e.timestamp_frac().map(u64::from),
                TraceField::TransitDelay => e.transit_delay().map(u64::from),
                TraceField::NamespaceData => e.namespace_data().map(u64::from),
                TraceField::QueueDepth => e.queue_depth().map(u64::from),
                TraceField::ChecksumComplement => e.checksum_complement().map(u64::from),
                TraceField::HopLimitNodeIdWide => e
                    .hop_limit_node_id_wide()
                    .map(|h| (u64::from(h.hop_limit) << 56) | h.node_id),
                TraceField::InterfaceIdsWide => e
                    .interface_ids_wide()
                    .map(|i| (u64::from(i.ingress) << 32) | u64::from(i.egress)),
                TraceField::NamespaceDataWide => e.namespace_data_wide(),
                TraceField::BufferOccupancy => e.buffer_occupancy().map(u64::from),
                TraceField::OpaqueState => continue,
            };
            out.push((hop, field, value.expect("the trace type has the field")));
        }
    }
    out
}

/// The owned material a node entry is built from.
#[derive(Debug, Clone)]
struct NodeSpec {
    words: [u32; 20],
    undefined: Vec<u8>,
    opaque: Option<(u32, Vec<u8>)>,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        any::<[u32; 20]>(),
        proptest::collection::vec(any::<u8>(), 40),
        proptest::option::of((0u32..=0xff_ffff, 0usize..4, any::<u8>())),
    )
        .prop_map(|(words, undefined, opaque)| NodeSpec {
            words,
            undefined,
            opaque: opaque.map(|(id, n, b)| (id, vec![b; n * 4])),
        })
}

fn node_of(spec: &NodeSpec, trace_type: TraceType) -> NodeRepr<'_> {
    let w = &spec.words;
    let wide = |i: usize| (u64::from(w[i]) << 32) | u64::from(w[i + 1]);
    let full = NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: (w[0] >> 24) as u8,
            node_id: w[0] & 0xff_ffff,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: (w[1] >> 16) as u16,
            egress: w[1] as u16,
        }),
        timestamp_secs: Some(w[2]),
        timestamp_frac: Some(w[3]),
        transit_delay: Some(w[4]),
        namespace_data: Some(w[5]),
        queue_depth: Some(w[6]),
        checksum_complement: Some(w[7]),
        hop_limit_node_id_wide: Some(HopLimitNodeIdWide {
            hop_limit: (w[8] >> 24) as u8,
            node_id: wide(8) & 0x00ff_ffff_ffff_ffff,
        }),
        interface_ids_wide: Some(InterfaceIdsWide {
            ingress: w[10],
            egress: w[11],
        }),
        namespace_data_wide: Some(wide(12)),
        buffer_occupancy: Some(w[14]),
        undefined: &spec.undefined[..trace_type.undefined_count() as usize * 4],
        opaque_state: spec.opaque.as_ref().map(|(id, data)| OpaqueState {
            schema_id: *id,
            data,
        }),
    };
    full.for_trace_type(trace_type)
}

#[derive(Debug, Clone)]
struct TraceSpec {
    namespace_id: u16,
    flags: u8,
    reserved: u8,
    trace_type: TraceType,
    nodes: Vec<NodeSpec>,
    free: Vec<u8>,
}

fn trace_spec() -> impl Strategy<Value = TraceSpec> {
    (
        any::<u16>(),
        0u8..16,
        any::<u8>(),
        0u32..=0xff_ffff,
        proptest::collection::vec(node_spec(), 0..8),
        0usize..20,
        any::<u8>(),
    )
        .prop_map(
            |(namespace_id, flags, reserved, bits, nodes, free_words, fill)| TraceSpec {
                namespace_id,
                flags,
                reserved,
                trace_type: TraceType::from_bits(bits),
                nodes,
                free: vec![fill; free_words * 4],
            },
        )
}

/// Node data for a trace spec (entries most recent first, as on the wire),
/// trimmed to what fits in an IOAM option; and the nodes in path order.
fn node_data(spec: &TraceSpec) -> (Vec<u8>, Vec<NodeRepr<'_>>) {
    let mut path = Vec::new();
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut len = spec.free.len();
    let entry_size_zero = spec.trace_type.node_len() == 0 && !spec.trace_type.has_opaque_state();
    for n in &spec.nodes {
        if entry_size_zero {
            break;
        }
        let node = node_of(n, spec.trace_type);
        let mut entry = vec![0u8; node.buffer_len(spec.trace_type)];
        if node.emit(spec.trace_type, &mut entry).is_err() {
            break;
        }
        if len + entry.len() > 244 {
            break;
        }
        len += entry.len();
        entries.push(entry);
        path.push(node);
    }
    let mut data = spec.free.clone();
    for entry in entries.iter().rev() {
        data.extend_from_slice(entry);
    }
    if data.len() > 244 {
        data.truncate(244 / 4 * 4);
    }
    (data, path)
}

#[derive(Debug, Clone)]
enum OptSpec {
    Pad1,
    PadN(Vec<u8>),
    Clt([u8; 16], [u8; 8]),
    Trace,
    OtherIoam(u8, Vec<u8>),
    Unknown(u8, Vec<u8>),
}

fn opt_spec() -> impl Strategy<Value = OptSpec> {
    prop_oneof![
        Just(OptSpec::Pad1),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(OptSpec::PadN),
        (any::<[u8; 16]>(), any::<[u8; 8]>()).prop_map(|(t, s)| OptSpec::Clt(t, s)),
        Just(OptSpec::Trace),
        (1u8..=255, proptest::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(t, d)| OptSpec::OtherIoam(t, d)),
        (
            any::<u8>().prop_filter("unknown option type", |t| matches!(
                OptionType::from(*t),
                OptionType::Unknown(_)
            )),
            proptest::collection::vec(any::<u8>(), 0..12)
        )
            .prop_map(|(t, d)| OptSpec::Unknown(t, d)),
    ]
}

fn options_of<'a>(opts: &'a [OptSpec], trace: &'a TraceRepr<'a>) -> Vec<OptionRepr<'a>> {
    let mut options: Vec<OptionRepr<'a>> = opts
        .iter()
        .map(|o| match o {
            OptSpec::Pad1 => OptionRepr::Pad1,
            OptSpec::PadN(d) => OptionRepr::PadN(d),
            OptSpec::Clt(t, s) => OptionRepr::Clt(CltRepr {
                trace_id: *t,
                span_id: *s,
            }),
            OptSpec::Trace => OptionRepr::Ioam(IoamRepr {
                reserved: 0,
                body: IoamBody::PreallocatedTrace(*trace),
            }),
            OptSpec::OtherIoam(t, d) => OptionRepr::Ioam(IoamRepr {
                reserved: 7,
                body: IoamBody::Other {
                    ioam_type: IoamType::from(*t),
                    data: d,
                },
            }),
            OptSpec::Unknown(t, d) => OptionRepr::Unknown {
                option_type: *t,
                data: d,
            },
        })
        .collect();
    let len = 2 + options.iter().map(|o| o.buffer_len()).sum::<usize>();
    match (8 - len % 8) % 8 {
        0 => {}
        1 => options.push(OptionRepr::Pad1),
        n => options.push(OptionRepr::padn(n - 2)),
    }
    options
}

/// Emits a header; `None` if it would exceed 2048 bytes.
fn emit_hbh(repr: &HbhRepr<'_>) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut HbhHeader::new_unchecked(&mut bytes[..]))
        .ok()?;
    Some(bytes)
}

/// A trace repr over node data built from a spec.
fn trace_of<'a>(spec: &TraceSpec, data: &'a [u8]) -> TraceRepr<'a> {
    TraceRepr {
        namespace_id: spec.namespace_id,
        node_len: spec.trace_type.node_len(),
        flags: TraceFlags::from_bits(spec.flags),
        remaining_len: (spec.free.len().min(data.len()) / 4) as u8,
        trace_type: spec.trace_type,
        reserved: spec.reserved,
        node_data: data,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&bytes);
    }

    #[test]
    fn ipv6_like_bytes_never_panic(
        hbh in proptest::collection::vec(any::<u8>(), 0..300),
        next in prop_oneof![Just(0u8), Just(60), Just(43), Just(44), Just(17), any::<u8>()],
        hel in any::<u8>(),
    ) {
        // An IPv6 header whose payload is the arbitrary bytes, so the walk
        // gets past the fixed header.
        let mut packet = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        packet.extend_from_slice(&[0u8; 32]);
        let mut payload = hbh.clone();
        if payload.len() >= 2 {
            payload[1] = hel % 40;
        }
        let len = payload.len() as u16;
        packet[4..6].copy_from_slice(&len.to_be_bytes());
        packet.extend_from_slice(&payload);
        exercise(&packet);
    }

    #[test]
    fn node_round_trip(spec in node_spec(), bits in 0u32..=0xff_ffff) {
        let trace_type = TraceType::from_bits(bits);
        let node = node_of(&spec, trace_type);
        let mut buf = vec![0u8; node.buffer_len(trace_type)];
        let n = node.emit(trace_type, &mut buf).unwrap();
        prop_assert_eq!(n, buf.len());
        prop_assert_eq!(NodeRepr::parse(trace_type, &buf).unwrap(), (node, n));
        prop_assert_eq!(NodeRepr::entry_len(trace_type, &buf).unwrap(), n);
    }

    #[test]
    fn trace_and_header_round_trip(
        trace in trace_spec(),
        opts in proptest::collection::vec(opt_spec(), 0..6),
        next_header in any::<u8>(),
    ) {
        let (data, path) = node_data(&trace);
        let repr = trace_of(&trace, &data);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TracePacket::new_unchecked(&mut buf[..])).unwrap();
        let parsed = TraceRepr::parse(&TracePacket::new_checked(&buf[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
        if data.len() == trace.free.len() + path.iter().map(|n| n.buffer_len(trace.trace_type)).sum::<usize>() {
            let nodes: Vec<_> = parsed.nodes().collect();
            prop_assert_eq!(&nodes, &path);
            // The views read the same values, field by field.
            let views: Vec<_> = parsed.entries().collect();
            prop_assert_eq!(views.len(), nodes.len());
            for (view, node) in views.iter().zip(&nodes) {
                prop_assert_eq!(view.hop_limit_node_id(), node.hop_limit_node_id);
                prop_assert_eq!(view.interface_ids(), node.interface_ids);
                prop_assert_eq!(view.queue_depth(), node.queue_depth);
                prop_assert_eq!(view.hop_limit_node_id_wide(), node.hop_limit_node_id_wide);
                prop_assert_eq!(view.namespace_data_wide(), node.namespace_data_wide);
                prop_assert_eq!(view.opaque_state(), node.opaque_state);
                prop_assert_eq!(&view.to_repr(), node);
            }
            // The visitor reads the same fields, in path order.
            let visited = fields_visited(&parsed);
            prop_assert_eq!(&visited, &fields_via_entries(&parsed));
            let per_hop = parsed.trace_type.fields().filter(|f| *f != TraceField::OpaqueState).count();
            prop_assert_eq!(visited.len(), per_hop * nodes.len());
        }


        let options = options_of(&opts, &repr);
        let hbh = HbhRepr::new(IpProtocol::from(next_header), &options);
        let Some(bytes) = emit_hbh(&hbh) else { return Ok(()) };
        let back = HbhRepr::parse(&HbhHeader::new_checked(&bytes[..]).unwrap()).unwrap();
        prop_assert_eq!(&back, &hbh);
        prop_assert_eq!(back.options().collect::<Vec<_>>(), options.clone());
        prop_assert_eq!(back.clt(), options.iter().find_map(|o| match o {
            OptionRepr::Clt(c) => Some(c),
            _ => None,
        }));
        exercise(&bytes);
    }

    #[test]
    fn bytes_that_parse_emit_unchanged(
        trace in trace_spec(),
        opts in proptest::collection::vec(opt_spec(), 0..6),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let (data, _) = node_data(&trace);
        let repr = trace_of(&trace, &data);
        let options = options_of(&opts, &repr);
        let hbh = HbhRepr::new(IpProtocol::Udp, &options);
        let Some(mut bytes) = emit_hbh(&hbh) else { return Ok(()) };
        // Corrupt a few bytes (not the length byte, which would only
        // truncate); whatever still parses must be emitted back unchanged.
        for (at, value) in flips {
            let at = at % bytes.len();
            if at != 1 {
                bytes[at] = value;
            }
        }
        exercise(&bytes);
        if let Ok(parsed) = HbhRepr::parse(&HbhHeader::new_checked(&bytes[..]).unwrap()) {
            let mut out = vec![0u8; parsed.buffer_len()];
            parsed.emit(&mut HbhHeader::new_unchecked(&mut out[..])).unwrap();
            prop_assert_eq!(&out, &bytes);
        }
    }

    #[test]
    fn fill_matches_the_kernel_algorithm(
        trace in trace_spec(),
        extra in node_spec(),
    ) {
        // Filling one more node writes at RemainingLen*4 - entry length, or
        // sets Overflow when it does not fit, and leaves everything else.
        let (data, _) = node_data(&trace);
        let repr = trace_of(&trace, &data);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TracePacket::new_unchecked(&mut buf[..])).unwrap();
        let before = buf.clone();
        let node = node_of(&extra, trace.trace_type);
        let entry = node.buffer_len(trace.trace_type);
        let remaining = usize::from(repr.remaining_len) * 4;
        let outcome = fill_node(&mut TracePacket::new_checked(&mut buf[..]).unwrap(), &node).unwrap();
        let after = TraceRepr::parse(&TracePacket::new_checked(&buf[..]).unwrap());
        if repr.overflow() {
            prop_assert_eq!(outcome, FillOutcome::AlreadyOverflowed);
            prop_assert_eq!(&buf, &before);
        } else if remaining == 0 || remaining < entry {
            prop_assert_eq!(outcome, FillOutcome::Overflow);
            prop_assert!(after.unwrap().overflow());
            prop_assert_eq!(&buf[8..], &before[8..]);
        } else {
            prop_assert_eq!(outcome, FillOutcome::Filled { offset: remaining - entry });
            let after = after.unwrap();
            prop_assert_eq!(usize::from(after.remaining_len) * 4, remaining - entry);
            if entry > 0 {
                prop_assert_eq!(after.nodes().next_back(), Some(node), "the newest entry");
            }
            prop_assert_eq!(&buf[8 + remaining..], &before[8 + remaining..]);
            prop_assert_eq!(&buf[8..8 + remaining - entry], &before[8..8 + remaining - entry]);
        }
    }
}
