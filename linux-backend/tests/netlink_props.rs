//! Property tests of the netlink codecs: arbitrary bytes never panic a
//! parser, and generated values round-trip through emit and parse.

use clt_linux::nl::ioam6::{Cmd, NamespaceRepr, SchemaRepr, TraceEventRepr};
use clt_linux::nl::route::{
    AddrRepr, Encap, Ioam6EncapRepr, LinkRepr, NeighRepr, RouteRepr, TraceHdr,
};
use clt_wire::TraceType;
use ipnet::Ipv6Net;
use proptest::prelude::*;
use std::net::Ipv6Addr;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(ns) = NamespaceRepr::parse(&data) {
            prop_assert_eq!(NamespaceRepr::parse(&ns.emit(Cmd::DumpNamespaces)).unwrap(), ns);
        }
        if let Ok(sc) = SchemaRepr::parse(&data) {
            prop_assert_eq!(SchemaRepr::parse(&sc.emit(Cmd::DumpSchemas)).unwrap(), sc);
        }
        if let Ok(ev) = TraceEventRepr::parse(&data) {
            let bytes = ev.emit();
            prop_assert_eq!(TraceEventRepr::parse(&bytes).unwrap(), ev);
        }
        let _ = RouteRepr::parse(&data);
        let _ = AddrRepr::parse(&data);
        let _ = LinkRepr::parse(&data);
        let _ = NeighRepr::parse(&data);
    }

    #[test]
    fn namespaces_round_trip(id: u16, data: Option<u32>, wide: Option<u64>, schema: Option<u32>) {
        let ns = NamespaceRepr { id, data, data_wide: wide, schema };
        prop_assert_eq!(NamespaceRepr::parse(&ns.emit(Cmd::DumpNamespaces)).unwrap(), ns);
    }

    #[test]
    fn schemas_round_trip(id: u32, words in proptest::collection::vec(any::<[u8; 4]>(), 0..20), ns: Option<u16>) {
        let sc = SchemaRepr { id, data: words.concat(), namespace: ns };
        prop_assert_eq!(SchemaRepr::parse(&sc.emit(Cmd::DumpSchemas)).unwrap(), sc);
    }

    #[test]
    fn trace_events_round_trip(ns: u16, node_len: u8, t: u32, data in proptest::collection::vec(any::<u8>(), 0..244)) {
        let ev = TraceEventRepr { namespace: ns, node_len, trace_type: t, data: &data };
        let bytes = ev.emit();
        prop_assert_eq!(TraceEventRepr::parse(&bytes).unwrap(), ev);
    }

    #[test]
    fn routes_round_trip(
        addr: u128, len in 0u8..=128, oif: Option<u32>, gw: Option<u128>,
        ns: u16, bits in 0u32..0x100_0000, rem in 0u8..128, flags in 0u8..16,
        mode in proptest::option::of(1u8..=3), k: Option<u32>, n: Option<u32>, dst: Option<u128>,
        encap: bool,
    ) {
        let dst_net = Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap().trunc();
        let r = RouteRepr {
            dst: dst_net,
            table: 254,
            protocol: 0xc1,
            scope: 0,
            kind: 1,
            oif,
            gateway: gw.map(Ipv6Addr::from),
            priority: None,
            encap: encap.then(|| Encap::Ioam6(Ioam6EncapRepr {
                mode,
                tundst: dst.map(Ipv6Addr::from),
                tunsrc: None,
                trace: TraceHdr {
                    namespace: ns,
                    node_len: TraceType::from_bits(bits).node_len(),
                    flags,
                    rem_len: rem,
                    trace_type: TraceType::from_bits(bits),
                },
                freq_k: k,
                freq_n: n,
            })),
        };
        let back = RouteRepr::parse(&r.emit().unwrap()).unwrap().unwrap();
        prop_assert_eq!(back, r);
    }
}
