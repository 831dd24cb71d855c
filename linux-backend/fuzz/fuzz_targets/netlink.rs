//! Arbitrary bytes as every netlink payload the kernel sends us: parsing
//! never panics, and whatever parses emits bytes that parse to the same value.
#![no_main]

use clt_linux::nl::ioam6::{Cmd, NamespaceRepr, SchemaRepr};
use clt_linux::nl::nflog::NflogPacket;
use clt_linux::nl::route::{AddrRepr, LinkRepr, NeighRepr, RouteRepr};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(ns) = NamespaceRepr::parse(data) {
        assert_eq!(
            NamespaceRepr::parse(&ns.emit(Cmd::DumpNamespaces)).ok(),
            Some(ns)
        );
    }
    if let Ok(sc) = SchemaRepr::parse(data) {
        assert_eq!(SchemaRepr::parse(&sc.emit(Cmd::DumpSchemas)).ok(), Some(sc));
    }
    if let Ok(Some(r)) = RouteRepr::parse(data) {
        if let Ok(bytes) = r.emit() {
            let _ = RouteRepr::parse(&bytes);
        }
    }
    if let Ok(p) = NflogPacket::parse(data) {
        let mut bytes = Vec::new();
        p.emit(&mut bytes);
        assert_eq!(NflogPacket::parse(&bytes).ok(), Some(p));
    }
    let _ = AddrRepr::parse(data);
    let _ = LinkRepr::parse(data);
    let _ = NeighRepr::parse(data);
});
