//! A (sender) -> B (router) -> C (receiver) in network namespaces, configured
//! only through `clt-linux` from cltc plans. A UDP and a TCP request from A
//! with CLT enabled arrive at C with B's entry filled and the ids intact,
//! checked by clt-wire and by tshark's IOAM dissector.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clt_linux::{Insertion, netns, socket};
use clt_testkit::{pcap::Capture, tshark};
use clt_wire::{HbhHeader, HbhRepr, NodeRepr, PacketRepr};
use common::{Netns, NetnsExt, abc_policy, plans, require_root, veth};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

/// The domain of the test; the fabric and policy are `common::abc_policy`'s.
const DOMAIN: &str = r#"
domain d {
    namespace 123
    trace hop_limit_node_id, interface_ids, queue_depth
    context w3c
    collector 127.0.0.1:7123
}
"#;

const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

/// (hop limit, node id, ingress, egress, queue depth) of an entry.
type Entry = (u8, u32, u16, u16, u32);

fn entry(n: &NodeRepr<'_>) -> Entry {
    let h = n.hop_limit_node_id.expect("hop_limit_node_id");
    let i = n.interface_ids.expect("interface_ids");
    (
        h.hop_limit,
        h.node_id,
        i.ingress,
        i.egress,
        n.queue_depth.expect("queue_depth"),
    )
}

const A: Entry = (64, 1, 0xffff, 11, 0xffff_ffff);
/// B forwards: hop limit decremented on input, queue depth the backlog of
/// its egress veth (noqueue: 0).
const B: Entry = (63, 2, 21, 22, 0);

fn hbh_entries(hbh: &HbhRepr<'_>) -> (Vec<Entry>, [u8; 16], [u8; 8]) {
    let trace = hbh.ioam_trace().expect("an ioam trace");
    assert_eq!(trace.namespace_id, 123);
    assert_eq!(trace.trace_type.bits(), 0xc2_0000);
    assert!(!trace.overflow());
    let clt = hbh.clt().expect("the clt option");
    (
        trace.nodes().map(|n| entry(&n)).collect(),
        clt.trace_id,
        clt.span_id,
    )
}

#[test]
fn udp_and_tcp_requests_carry_ioam_and_ids_through_a_linux_router() {
    require_root!();
    let (a, b, c) = (Netns::new("clta"), Netns::new("cltb"), Netns::new("cltc"));
    veth(&a, "eth0", &b, "eth0");
    veth(&b, "eth1", &c, "eth0");
    let p = plans(&abc_policy(DOMAIN, "dst db02::/64"), &["a", "b", "c"]);

    // Configure every node through clt-linux only.
    let ra = a.apply(&p[0], Insertion::Auto).expect("apply a");
    b.apply(&p[1], Insertion::Auto).expect("apply b");
    c.apply(&p[2], Insertion::Auto).expect("apply c");
    assert!(!ra.changes.is_empty());
    let lwt = a
        .run(|| clt_linux::nl::Netlink::open()?.probe_ioam6_lwtunnel())
        .unwrap();
    // auto falls back to the socket API exactly when the kernel lacks the
    // encapsulation, and says so.
    assert_eq!(
        ra.notices
            .iter()
            .any(|n| n.contains("CONFIG_IPV6_IOAM6_LWTUNNEL")),
        !lwt,
        "{ra}"
    );
    // Applying again changes nothing.
    for (ns, plan) in [(&a, &p[0]), (&b, &p[1]), (&c, &p[2])] {
        let again = ns.apply(plan, Insertion::Auto).unwrap();
        assert!(
            again.changes.is_empty(),
            "second apply on {}: {again}",
            plan.node
        );
        assert!(again.to_string().contains("no changes"));
    }

    let dir = std::env::temp_dir();
    let capture = tshark::available().then(|| Capture::start(&c, "eth0", &dir, None));

    // C: a UDP receiver that asks for the Hop-by-Hop header, a TCP server.
    let (ready_tx, ready_rx) = mpsc::channel();
    let c_name = c.name().to_owned();
    let receiver = std::thread::spawn(move || {
        netns::enter(&c_name).unwrap();
        let udp = UdpSocket::bind("[::]:5000").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        socket::receive_hopopts(&udp).unwrap();
        let tcp = TcpListener::bind("[::]:5001").unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut buf = [0u8; 2048];
            let (n, hbh) = socket::recv_with_hopopts(&udp, &mut buf).unwrap();
            got.push((buf[..n].to_vec(), hbh));
        }
        let (mut conn, _) = tcp.accept().unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).unwrap();
        (got, body)
    });
    ready_rx.recv().unwrap();

    // A: the requests, with CLT enabled (std UDP, tokio TCP).
    let policy = p[0].encap[0].clone();
    let a_name = a.name().to_owned();
    std::thread::spawn(move || {
        netns::enter(&a_name).unwrap();
        let udp = UdpSocket::bind("[::]:0").unwrap();
        udp.connect("[db02::2]:5000").unwrap();
        socket::enable(&udp, &policy, TRACE_ID, SPAN_ID).unwrap();
        udp.send(b"udp-request").unwrap();
        socket::disable(&udp).unwrap();
        udp.send(b"after-disable").unwrap();

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            let addr: SocketAddr = "[db02::2]:5001".parse().unwrap();
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            socket::enable(&tcp, &policy, TRACE_ID, SPAN_ID).unwrap();
            tcp.write_all(b"tcp-request").await.unwrap();
            tcp.shutdown().await.unwrap();
        });
    })
    .join()
    .unwrap();

    let (udp_got, tcp_body) = receiver.join().unwrap();
    assert_eq!(tcp_body, "tcp-request");

    // clt-wire, on the header C's socket received (after C's own fill: C
    // delivers locally, so its egress is unavailable and queue depth is the
    // loopback's, unavailable).
    assert_eq!(udp_got[0].0, b"udp-request");
    let raw = udp_got[0]
        .1
        .as_ref()
        .expect("the udp request had a hop-by-hop header");
    let hbh = HbhRepr::parse(&HbhHeader::new_checked(&raw[..]).unwrap()).unwrap();
    let (nodes, trace_id, span_id) = hbh_entries(&hbh);
    assert_eq!((trace_id, span_id), (TRACE_ID, SPAN_ID));
    assert_eq!(nodes, vec![A, B, (62, 3, 31, 0xffff, 0xffff_ffff)]);
    assert_eq!(udp_got[1].0, b"after-disable");
    assert!(udp_got[1].1.is_none(), "disable left a hop-by-hop header");

    let Some(mut capture) = capture else {
        clt_testkit::report_skip("the tshark half: tshark is not installed");
        return;
    };
    // Stop once the capture holds the UDP request and the TCP data segment.
    capture.wait_for(|pkts| {
        let data_to = |port: u16| {
            pkts.iter().any(|p| {
                PacketRepr::parse(p).is_ok_and(|r| {
                    r.hbh.is_some()
                        && r.upper.dst_port == Some(port)
                        && p.len() > 40 + r.upper.offset + if port == 5001 { 32 } else { 8 }
                })
            })
        };
        data_to(5000) && data_to(5001)
    });
    let pcap = capture.stop();

    // clt-wire on the wire (as captured on C's eth0, before C fills).
    let packets = clt_testkit::pcap::ipv6_packets(&pcap);
    let mut wire_seen = Vec::new();
    for p in &packets {
        let pkt = PacketRepr::parse(p).unwrap();
        let (Some(hbh), Some(port)) = (&pkt.hbh, pkt.upper.dst_port) else {
            continue;
        };
        if port != 5000 && port != 5001 {
            continue;
        }
        let (nodes, t, s) = hbh_entries(hbh);
        assert_eq!((t, s), (TRACE_ID, SPAN_ID));
        assert_eq!(nodes, vec![A, B]);
        wire_seen.push(port);
    }
    assert!(
        wire_seen.contains(&5000) && wire_seen.contains(&5001),
        "{wire_seen:?} in {} captured packets",
        packets.len()
    );

    // tshark's IOAM dissector, field by field, on the same capture. It lists
    // entries in buffer order: most recent hop (B) first.
    let fields = [
        "ipv6.opt.ioam.trace.ns",
        "ipv6.opt.ioam.trace.type",
        "ipv6.opt.ioam.trace.remlen",
        "ipv6.opt.ioam.trace.flag.o",
        "ipv6.opt.ioam.trace.node.hlim",
        "ipv6.opt.ioam.trace.node.id",
        "ipv6.opt.ioam.trace.node.iif",
        "ipv6.opt.ioam.trace.node.eif",
        "ipv6.opt.ioam.trace.node.qdepth",
        "ipv6.opt.experimental",
        "ipv6.opt.unknown",
    ];
    let hex: String = TRACE_ID
        .iter()
        .chain(&SPAN_ID)
        .map(|b| format!("{b:02x}"))
        .collect();
    for filter in [
        "udp.dstport == 5000 && ipv6.opt.ioam.trace.ns",
        "tcp.dstport == 5001 && ipv6.opt.ioam.trace.ns && tcp.len > 0",
    ] {
        let rows = tshark::fields(&pcap, Some(filter), &fields);
        assert!(!rows.is_empty(), "tshark saw no packet for {filter}");
        for r in rows {
            let num = |i: usize| tshark::numbers(&r[i]);
            assert_eq!(num(0), vec![123], "namespace");
            assert_eq!(num(1), vec![0xc20000], "trace type");
            assert_eq!(
                num(2),
                vec![3],
                "remaining length: 36 bytes less two entries"
            );
            assert!(
                matches!(r[3].as_str(), "0" | "False" | "false"),
                "overflow {}",
                r[3]
            );
            let expect = [B, A];
            assert_eq!(
                num(4),
                expect.iter().map(|e| u64::from(e.0)).collect::<Vec<_>>(),
                "hop limits"
            );
            assert_eq!(
                num(5),
                expect.iter().map(|e| u64::from(e.1)).collect::<Vec<_>>(),
                "node ids"
            );
            assert_eq!(
                num(6),
                expect.iter().map(|e| u64::from(e.2)).collect::<Vec<_>>(),
                "ingress ids"
            );
            assert_eq!(
                num(7),
                expect.iter().map(|e| u64::from(e.3)).collect::<Vec<_>>(),
                "egress ids"
            );
            assert_eq!(
                num(8),
                expect.iter().map(|e| u64::from(e.4)).collect::<Vec<_>>(),
                "queue depths"
            );
            let opt = format!("{}{}", r[9], r[10]).replace(':', "");
            assert!(opt.contains(&hex), "clt option bytes {opt:?} lack {hex}");
        }
    }

    // Teardown leaves A as it found it: nothing of ours.
    a.teardown(&p[0]).unwrap();
    let left = a
        .run(|| clt_linux::nl::Netlink::open()?.namespaces())
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::io::stdout().flush();
}
