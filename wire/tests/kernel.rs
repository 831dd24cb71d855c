//! Stock Linux as an oracle (needs root, `ip` and `python3`; skips
//! otherwise): the header `HbhBuilder` writes is accepted by
//! `setsockopt(IPV6_HOPOPTS)` in namespace A, router B's kernel fills its
//! entry, and what C receives is byte for byte what `fill_node` computes
//! for B's values. Namespaces are removed on drop, even on failure.

// Test helpers outside `#[test]` functions unwrap too.
#![allow(clippy::unwrap_used)]

use clt_testkit::{Netns, veth};
use clt_wire::*;

/// Three namespaces A - B - C; B routes and fills IOAM namespace 123.
struct Topology {
    a: Netns,
    _b: Netns,
    c: Netns,
}

impl Topology {
    fn new() -> Topology {
        let (a, b, c) = (
            Netns::new("cltwa"),
            Netns::new("cltwb"),
            Netns::new("cltwc"),
        );
        veth(&a, "va", &b, "vb1");
        veth(&b, "vb2", &c, "vc");
        for (ns, dev) in [(&a, "va"), (&b, "vb1"), (&b, "vb2"), (&c, "vc")] {
            ns.ip(&["link", "set", dev, "up"]);
        }
        for (ns, addr, dev) in [
            (&a, "2001:db8:1::1/64", "va"),
            (&b, "2001:db8:1::2/64", "vb1"),
            (&b, "2001:db8:2::2/64", "vb2"),
            (&c, "2001:db8:2::1/64", "vc"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
        }
        a.ip(&["route", "add", "default", "via", "2001:db8:1::2"]);
        c.ip(&["route", "add", "default", "via", "2001:db8:2::2"]);
        for (k, v) in [
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.ioam6_id", "2"),
            ("net.ipv6.conf.vb1.ioam6_enabled", "1"),
            ("net.ipv6.conf.vb1.ioam6_id", "21"),
            ("net.ipv6.conf.vb2.ioam6_id", "22"),
        ] {
            b.sysctl(k, v);
        }
        b.ip(&["ioam", "namespace", "add", "123"]);
        Topology { a, _b: b, c }
    }
}

/// Receives the first UDP packet with a Hop-by-Hop header on C's interface
/// (AF_PACKET) while A sends it with `IPV6_HOPOPTS` set to `hbh`.
const RECEIVE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86dd))
s.bind(("vc", 0))
s.settimeout(10)
print("ready", flush=True)
while True:
    p = s.recv(4096)[14:]
    if p[6] == 0 and p[40] == 17:
        print(p.hex(), flush=True)
        break
"#;

const SEND: &str = r#"
import socket, sys, time
hbh = bytes.fromhex(sys.argv[1])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, 54, hbh)  # IPV6_HOPOPTS
for _ in range(20):
    s.sendto(b"clt", ("2001:db8:2::1", 9999))
    time.sleep(0.05)
"#;

#[test]
fn linux_transit_fills_what_fill_node_computes() {
    clt_testkit::skip_if!(
        clt_testkit::skip::netns_unavailable()
            .or_else(|| clt_testkit::skip::tools_missing(&["python3"]))
            .or_else(clt_testkit::skip::ioam6_unavailable)
    );
    let topo = Topology::new();
    let (a, c) = (&topo.a, &topo.c);
    let trace_type = TraceType::from_fields([
        TraceField::HopLimitNodeId,
        TraceField::InterfaceIds,
        TraceField::QueueDepth,
    ]);
    let clt = CltRepr::from_ids(0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331);
    let sender = NodeRepr {
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
    };
    let sent = HbhBuilder::new()
        .trace(123, trace_type, 36)
        .encap_node(sender)
        .clt(clt)
        .build()
        .unwrap();
    let hex: String = sent.iter().map(|b| format!("{b:02x}")).collect();

    let mut receiver = c
        .command("python3")
        .args(["-c", RECEIVE])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(receiver.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    a.exec(&["python3", "-c", SEND, &hex]);
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let _ = receiver.wait();
    let received: Vec<u8> = (0..line.trim().len() / 2)
        .map(|i| u8::from_str_radix(&line.trim()[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(!received.is_empty(), "nothing received on C");

    // What B's kernel should have written, by our algorithm: hop limit 64
    // minus 1, node id 2, interfaces 21 -> 22, an empty queue.
    let router = NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 63,
            node_id: 2,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: 21,
            egress: 22,
        }),
        queue_depth: Some(0),
        ..NodeRepr::default()
    };
    let mut expected = sent.clone();
    expected[0] = 17; // the kernel sets the next header: udp
    let mut trace = TracePacket::new_checked(&mut expected[32..]).unwrap();
    assert_eq!(
        fill_node(&mut trace, &router).unwrap(),
        FillOutcome::Filled { offset: 12 }
    );
    assert_eq!(&received[40..40 + expected.len()], &expected[..]);

    let parsed = PacketRepr::parse(&received).unwrap();
    let hbh = parsed.hbh.as_ref().unwrap();
    assert_eq!(hbh.clt(), Some(&clt));
    let nodes: Vec<_> = hbh.ioam_trace().unwrap().nodes().collect();
    assert_eq!(nodes, [sender, router]);
    assert_eq!(parsed.upper.dst_port, Some(9999));
}
