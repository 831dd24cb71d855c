//! Arbitrary bytes into every parser and the printer of clt-wire: nothing may
//! panic, and whatever parses must be emitted back byte for byte.
#![no_main]

use clt_wire::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The whole packet and its printer.
    let _ = Printer(data).to_string();
    if let Ok(packet) = PacketRepr::parse(data) {
        let _ = packet.to_string();
        if let Some(trace) = packet.hbh.as_ref().and_then(|h| h.ioam_trace()) {
            assert_eq!(trace.nodes().count(), trace.check_entries().unwrap_or(0));
        }
    }

    // The Hop-by-Hop header alone: emit(parse(x)) == x.
    if let Ok(header) = HbhHeader::new_checked(data) {
        if let Ok(repr) = HbhRepr::parse(&header) {
            let _ = repr.to_string();
            let len = header.header_len();
            let mut out = vec![0u8; repr.buffer_len()];
            repr.emit(&mut HbhHeader::new_unchecked(&mut out[..]))
                .expect("a parsed header emits");
            assert_eq!(&out[..], &data[..len]);
        }
    }

    // The trace alone, and a transit fill on a copy.
    if let Ok(trace) = TracePacket::new_checked(data) {
        if let Ok(repr) = TraceRepr::parse(&trace) {
            let _ = repr.to_string();
            let forward: Vec<_> = repr.nodes().collect();
            let mut backward: Vec<_> = repr.nodes().rev().collect();
            backward.reverse();
            assert_eq!(forward, backward);
            let views: Vec<_> = repr.entries().map(|e| e.to_repr()).collect();
            assert_eq!(forward, views);
            assert_eq!(forward.len(), repr.check_entries().unwrap_or(usize::MAX));
            // The visitor walks the same entries.
            let mut last_hop = None;
            let hops = repr.for_each_field(|hop, _, _| last_hop = Some(hop));
            assert_eq!(hops, forward.len());
            assert!(last_hop.is_none_or(|h| h < hops));
        }
        let mut copy = data.to_vec();
        let mut view = TracePacket::new_unchecked(&mut copy[..]);
        let _ = fill_node(&mut view, &NodeRepr::default());
    }

    if data.len() >= 3 {
        let trace_type = TraceType::from_bits(u32::from_be_bytes([0, data[0], data[1], data[2]]));
        if let Ok((node, len)) = NodeRepr::parse(trace_type, &data[3..]) {
            let mut out = vec![0u8; node.buffer_len(trace_type)];
            assert_eq!(node.emit(trace_type, &mut out), Ok(len));
            assert_eq!(&out[..], &data[3..3 + len]);
        }
    }
});
