//! Properties of the two-variant IOAM codec: it never panics on any bytes,
//! and every message of either variant decodes back to what was encoded.

use clt_proto::codec::{IoamVariant, classify, decode_any};
use clt_proto::ioam_api::{IoamNode, IoamTrace, Opaque, legacy};
use proptest::prelude::*;
use prost::Message;

fn node() -> impl Strategy<Value = IoamNode> {
    (
        any::<[u32; 12]>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..8),
        any::<Option<(u32, Vec<u8>)>>(),
    )
        .prop_map(|(v, wide, data, oss)| IoamNode {
            hop_limit: v[0] & 0xff,
            id: v[1] & 0xff_ffff,
            ingress_id: v[2] & 0xffff,
            egress_id: v[3] & 0xffff,
            timestamp_secs: v[4],
            timestamp_frac: v[5],
            transit_delay: v[6],
            queue_depth: v[7],
            csum_comp: v[8],
            buffer_occupancy: v[9],
            ingress_id_wide: v[10],
            egress_id_wide: v[11],
            id_wide: wide,
            namespace_data: data.clone(),
            namespace_data_wide: data,
            oss: oss.map(|(schema_id, data)| Opaque { schema_id, data }),
        })
}

proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = classify(&bytes);
        let _ = decode_any(&bytes);
    }

    #[test]
    fn with_ids_round_trips(
        ids in any::<(u64, u64, u64)>(),
        ns in 0u32..=0xffff,
        tt in 0u32..=0xff_ffff,
        nodes in proptest::collection::vec(node(), 0..6),
    ) {
        let t = IoamTrace {
            trace_id_high: ids.0, trace_id_low: ids.1, span_id: ids.2,
            namespace_id: ns, bit_field: tt << 8, nodes,
        };
        let (v, back) = decode_any(&t.encode_to_vec()).unwrap();
        prop_assert_eq!(back, t.clone());
        // all-zero ids and no other fields is the one case both variants share
        if t != IoamTrace::default() {
            prop_assert_eq!(v, IoamVariant::WithIds);
        }
    }

    #[test]
    fn legacy_round_trips(
        ns in 1u32..=0xffff,
        tt in 0u32..=0xff_ffff,
        nodes in proptest::collection::vec(node(), 0..6),
    ) {
        let old = legacy::IoamTrace { namespace_id: ns, bit_field: tt << 8, nodes };
        let (v, back) = decode_any(&old.encode_to_vec()).unwrap();
        prop_assert_eq!(v, IoamVariant::Legacy);
        prop_assert_eq!((back.trace_id_high, back.trace_id_low, back.span_id), (0, 0, 0));
        prop_assert_eq!(back.namespace_id, ns);
        prop_assert_eq!(back.bit_field, tt << 8);
        prop_assert_eq!(back.nodes, old.nodes);
    }
}
