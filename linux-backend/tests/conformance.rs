//! The kernel conformance matrix: what a stock Linux transit node (B) writes
//! into traces the CLT socket API inserts at A, received at C, against
//! clt-wire's parse and clt-wire's transit fill (`fill_node`) prediction,
//! byte for byte.
//!
//! Cases: every supported trace bit alone and all together; every size from
//! 4 to 244 bytes; the Overflow flag when the trace is full; a namespace B
//! does not know; IOAM disabled on B's ingress interface. C's own IOAM
//! processing is switched off so that what C's socket receives is exactly
//! what left B.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clt_linux::socket::{self, EnableOptions};
use clt_wire::node::UNAVAILABLE_U32;
use clt_wire::{
    FillOutcome, HbhHeader, HbhRepr, HopLimitNodeId, HopLimitNodeIdWide, InterfaceIds,
    InterfaceIdsWide, NodeRepr, OpaqueState, OptionType, TraceField, TracePacket, TraceType,
    fill_node,
};
use cltc::artifact::linux::EncapPolicy;
use common::{Netns, NetnsExt, abc_policy, plans, require_root, veth};
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The domain of the test; the fabric and policy are `common::abc_policy`'s.
const DOMAIN: &str = r#"
domain d {
    namespace 123 data 0xdeadbeef wide 0x0102030405060708
    trace hop_limit_node_id
    schema 777 "something"
    context w3c
    collector 127.0.0.1:7123
}
"#;

const SCHEMA_DATA: &[u8; 12] = b"something\0\0\0";

/// B's entry as the kernel writes it on forwarding (input: hop limit 64 - 1;
/// egress queue: the veth's noqueue backlog, 0), with the timestamps it
/// wrote (which no one can predict) copied in.
fn b_entry(trace_type: TraceType, secs: u32, frac: u32) -> NodeRepr<'static> {
    let has = |f| trace_type.contains(f);
    NodeRepr {
        hop_limit_node_id: has(TraceField::HopLimitNodeId).then_some(HopLimitNodeId {
            hop_limit: 63,
            node_id: 2,
        }),
        interface_ids: has(TraceField::InterfaceIds).then_some(InterfaceIds {
            ingress: 21,
            egress: 22,
        }),
        timestamp_secs: has(TraceField::TimestampSecs).then_some(secs),
        timestamp_frac: has(TraceField::TimestampFrac).then_some(frac),
        transit_delay: has(TraceField::TransitDelay).then_some(UNAVAILABLE_U32),
        namespace_data: has(TraceField::NamespaceData).then_some(0xdeadbeef),
        queue_depth: has(TraceField::QueueDepth).then_some(0),
        checksum_complement: has(TraceField::ChecksumComplement).then_some(UNAVAILABLE_U32),
        hop_limit_node_id_wide: has(TraceField::HopLimitNodeIdWide).then_some(HopLimitNodeIdWide {
            hop_limit: 63,
            node_id: 0x2222222222,
        }),
        interface_ids_wide: has(TraceField::InterfaceIdsWide).then_some(InterfaceIdsWide {
            ingress: 21,
            egress: 22,
        }),
        namespace_data_wide: has(TraceField::NamespaceDataWide).then_some(0x0102030405060708),
        buffer_occupancy: has(TraceField::BufferOccupancy).then_some(UNAVAILABLE_U32),
        undefined: &[],
        opaque_state: has(TraceField::OpaqueState).then_some(OpaqueState {
            schema_id: 777,
            data: SCHEMA_DATA,
        }),
    }
}

/// Where the trace (its 8-byte header) starts in a Hop-by-Hop header.
fn trace_offset(hbh: &[u8]) -> usize {
    let h = HbhHeader::new_checked(hbh).unwrap();
    for o in h.options_iter() {
        let (at, o) = o.unwrap();
        if o.option_type() == OptionType::Ioam {
            return 2 + at + 4;
        }
    }
    panic!("no ioam option in {hbh:02x?}")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// B fills its entry.
    Filled,
    /// B has no room: Overflow set, nothing written.
    Overflow,
    /// B leaves the trace alone.
    Untouched,
}

struct Rig {
    a: Netns,
    b: Netns,
    _c: Netns,
    sender: Option<UdpSocket>,
    receiver: UdpSocket,
    base: EncapPolicy,
    seq: u32,
}

impl Rig {
    /// Sends one datagram from A with `policy` and checks what C receives.
    fn case(&mut self, name: &str, policy: EncapPolicy, expect: Expect) {
        self.seq += 1;
        let payload = format!("{name} #{}", self.seq).into_bytes();
        let sock = self.sender.take().unwrap();
        let (p, body) = (policy.clone(), payload.clone());
        let (sock, sent) = self
            .a
            .run(move || {
                let opts = EnableOptions {
                    no_timestamps: true,
                    ..Default::default()
                };
                let hdr = socket::header(&sock, &p, [7; 16], [9; 8], &opts)?;
                socket::enable_with(&sock, &p, [7; 16], [9; 8], &opts)?;
                sock.send(&body).unwrap();
                Ok((sock, hdr))
            })
            .unwrap();
        self.sender = Some(sock);

        let mut buf = [0u8; 2048];
        let (n, got) = loop {
            let (n, got) = socket::recv_with_hopopts(&self.receiver, &mut buf)
                .unwrap_or_else(|e| panic!("{name}: nothing received: {e}"));
            if buf[..n] == payload[..] {
                break (n, got);
            }
        };
        assert_eq!(&buf[..n], &payload[..]);
        let got = got.unwrap_or_else(|| panic!("{name}: no hop-by-hop header arrived"));
        assert_eq!(
            got.len(),
            sent.len(),
            "{name}: header length changed en route"
        );

        // What clt-wire parses out of the kernel's bytes.
        let sent_hbh = HbhRepr::parse(&HbhHeader::new_checked(&sent[..]).unwrap()).unwrap();
        let sent_trace = *sent_hbh.ioam_trace().unwrap();
        let hbh = HbhRepr::parse(&HbhHeader::new_checked(&got[..]).unwrap())
            .unwrap_or_else(|e| panic!("{name}: clt-wire rejects what the kernel wrote: {e}"));
        let trace = hbh.ioam_trace().unwrap();
        let clt = hbh.clt().unwrap();
        assert_eq!((clt.trace_id, clt.span_id), ([7; 16], [9; 8]), "{name}");
        assert_eq!(trace.namespace_id, policy.namespace, "{name}");
        assert_eq!(trace.trace_type, policy.trace_type, "{name}");
        let sent_nodes = sent_trace.nodes().count();
        let nodes: Vec<_> = trace.nodes().collect();

        // The prediction: clt-wire's transit fill applied to what A sent,
        // whose Next Header the kernel set to UDP on transmit.
        assert_eq!(got[0], 17, "{name}: next header");
        let mut predicted = sent.clone();
        predicted[0] = 17;
        let at = trace_offset(&predicted);
        let mut view = TracePacket::new_checked(&mut predicted[at..]).unwrap();
        let outcome = match expect {
            Expect::Untouched => None,
            _ => {
                let (secs, frac) = match nodes.last() {
                    Some(b) if nodes.len() > sent_nodes => {
                        (b.timestamp_secs.unwrap_or(0), b.timestamp_frac.unwrap_or(0))
                    }
                    _ => (0, 0),
                };
                Some(fill_node(&mut view, &b_entry(policy.trace_type, secs, frac)).unwrap())
            }
        };
        match expect {
            Expect::Filled => {
                assert!(
                    matches!(outcome, Some(FillOutcome::Filled { .. })),
                    "{name}: {outcome:?}"
                );
                assert_eq!(nodes.len(), sent_nodes + 1, "{name}: B did not fill");
                assert!(!trace.overflow(), "{name}");
                let b = nodes.last().unwrap();
                if let Some(s) = b.timestamp_secs {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    assert!(
                        u64::from(s).abs_diff(now) < 60,
                        "{name}: timestamp {s} vs {now}"
                    );
                }
                if let Some(f) = b.timestamp_frac {
                    assert!(f < 1_000_000, "{name}: fraction {f} is not microseconds");
                }
            }
            Expect::Overflow => {
                assert_eq!(outcome, Some(FillOutcome::Overflow), "{name}");
                assert!(trace.overflow(), "{name}: kernel did not set Overflow");
                assert_eq!(nodes.len(), sent_nodes, "{name}");
            }
            Expect::Untouched => {
                assert!(!trace.overflow(), "{name}");
                assert_eq!(nodes.len(), sent_nodes, "{name}");
            }
        }
        assert_eq!(
            got, predicted,
            "{name}: the kernel's bytes differ from clt-wire's prediction\n kernel {got:02x?}\n wire   {predicted:02x?}"
        );
    }
}

fn policy(base: &EncapPolicy, ns: u16, t: TraceType, size: usize) -> EncapPolicy {
    EncapPolicy {
        namespace: ns,
        trace_type: t,
        size: size as u8,
        ..base.clone()
    }
}

/// One entry's size in bytes for `t` on these nodes (schema 777: 12 bytes).
fn per_hop(t: TraceType) -> usize {
    usize::from(t.node_len()) * 4
        + if t.contains(TraceField::OpaqueState) {
            4 + SCHEMA_DATA.len()
        } else {
            0
        }
}

#[test]
fn the_kernel_fills_as_clt_wire_predicts() {
    require_root!();
    let (a, b, c) = (Netns::new("clta"), Netns::new("cltb"), Netns::new("cltc"));
    veth(&a, "eth0", &b, "eth0");
    veth(&b, "eth1", &c, "eth0");
    let p = plans(
        &abc_policy(DOMAIN, "dst db02::/64 proto udp"),
        &["a", "b", "c"],
    );
    for (ns, plan) in [(&a, &p[0]), (&b, &p[1]), (&c, &p[2])] {
        ns.apply(plan, clt_linux::Insertion::Socket).unwrap();
    }
    // C only receives: its own fill is not under test here.
    c.sysctl("net.ipv6.conf.eth0.ioam6_enabled", "0");

    let receiver = c
        .run(|| {
            let s = UdpSocket::bind("[::]:6000").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            socket::receive_hopopts(&s)?;
            Ok(s)
        })
        .unwrap();
    let sender = a
        .run(|| {
            let s = UdpSocket::bind("[::]:0").unwrap();
            s.connect("[db02::2]:6000").unwrap();
            Ok(s)
        })
        .unwrap();
    let base = p[0].encap[0].clone();
    let mut rig = Rig {
        a,
        b,
        _c: c,
        sender: Some(sender),
        receiver,
        base: base.clone(),
        seq: 0,
    };

    // Every supported bit alone, room for A's and B's entries.
    for f in TraceField::ALL {
        let t = TraceType::from_fields([f]);
        let pol = policy(&base, 123, t, 2 * per_hop(t));
        rig.case(&format!("bit {} ({f})", f.bit()), pol, Expect::Filled);
    }
    // All together.
    let all = TraceType::from_fields(TraceField::ALL);
    rig.case(
        "all bits",
        policy(&base, 123, all, 2 * per_hop(all)),
        Expect::Filled,
    );

    // Every size from 4 to 244 bytes with 4-byte entries: A takes 4 bytes,
    // B fills when 4 more remain, else sets Overflow.
    let bit0 = TraceType::from_fields([TraceField::HopLimitNodeId]);
    for size in (4..=244).step_by(4) {
        let expect = if size >= 8 {
            Expect::Filled
        } else {
            Expect::Overflow
        };
        rig.case(
            &format!("size {size}"),
            policy(&base, 123, bit0, size),
            expect,
        );
    }
    // Full: 8-byte entries in 12 bytes: A fills 8, 4 remain, B overflows.
    let t2 = TraceType::from_fields([TraceField::HopLimitNodeId, TraceField::InterfaceIds]);
    rig.case("full trace", policy(&base, 123, t2, 12), Expect::Overflow);
    // Full with the opaque state: 4 + 16 bytes per hop in 24 bytes.
    let t22 = TraceType::from_fields([TraceField::HopLimitNodeId, TraceField::OpaqueState]);
    rig.case(
        "full with snapshot",
        policy(&base, 123, t22, 24),
        Expect::Overflow,
    );

    // A namespace neither A nor B knows: nobody fills, no Overflow.
    rig.case(
        "unknown namespace",
        policy(&base, 999, t2, 24),
        Expect::Untouched,
    );

    // IOAM disabled on B's ingress interface: B passes the trace untouched.
    rig.b.sysctl("net.ipv6.conf.eth0.ioam6_enabled", "0");
    rig.case(
        "disabled on ingress",
        policy(&base, 123, t2, 24),
        Expect::Untouched,
    );
    rig.b.sysctl("net.ipv6.conf.eth0.ioam6_enabled", "1");
    rig.case("re-enabled", policy(&base, 123, t2, 24), Expect::Filled);

    // A Marker (the per-socket fast path) writes the same header as
    // `header` for the same ids.
    let sock = rig.sender.take().unwrap();
    let pol = policy(&base, 123, all, 2 * per_hop(all));
    let (marker_bytes, header_bytes) = rig
        .a
        .run(move || {
            let opts = EnableOptions {
                no_timestamps: true,
                ..Default::default()
            };
            let m = socket::Marker::new(&sock, &pol, &opts)?;
            let mut buf = [0u8; 512];
            let n = m.header([3; 16], [4; 8], &mut buf);
            let plain = buf[..n].to_vec();
            // With timestamps, the marker stamps the time of each request.
            let timed = socket::Marker::new(&sock, &pol, &EnableOptions::default())?;
            let n = timed.header([3; 16], [4; 8], &mut buf);
            let hbh = HbhRepr::parse(&HbhHeader::new_checked(&buf[..n]).unwrap()).unwrap();
            let a_entry = hbh.ioam_trace().unwrap().nodes().next().unwrap();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let secs = a_entry.timestamp_secs.unwrap();
            assert!(u64::from(secs).abs_diff(now.as_secs()) < 5, "{secs}");
            assert!(a_entry.timestamp_frac.unwrap() < 1_000_000);
            Ok((plain, socket::header(&sock, &pol, [3; 16], [4; 8], &opts)?))
        })
        .unwrap();
    assert_eq!(marker_bytes, header_bytes);
    let _ = &rig.base;
}
