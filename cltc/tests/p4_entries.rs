//! What the entries say, field by field, for a switch that encapsulates one
//! policy and decapsulates another.

use cltc::backend::p4::textpb::TextMessage;
use cltc::backend::p4::{self, Target, objects};
use cltc::ir::NodeIdx;

const SRC: &str = "
domain d {
    namespace 9
    trace hop_limit_node_id, queue_depth
    collector 127.0.0.1:7123
}
node h1 linux {
    id 1
    interface eth0 { id 11 address db01::1/64 mac 02:00:00:00:01:01 }
}
node sw bmv2 {
    id 2
    p4runtime 127.0.0.1:9559 device 3
    port 1 { id 21 mac 02:00:00:00:02:01 }
    port 2 { id 22 mac 02:00:00:00:02:02 mtu 9000 }
}
node h2 linux {
    id 3
    interface eth0 { id 31 address db02::2/64 mac 02:00:00:00:03:01 mtu 9000 }
}
link h1.eth0 -- sw.1
link sw.2 -- h2.eth0
policy out {
    domain d
    from sw to h2
    match dst db02::/64 src db01::/64 proto udp sport 5000 dport 53
    sample 3/7
}
policy back {
    domain d
    from h2 to sw
    match dst db01::/64 proto tcp
}
";

fn switch_entries() -> TextMessage {
    let fabric = cltc::compile_source("inline.clt", SRC)
        .unwrap_or_else(|d| panic!("{}", d.render("inline.clt", SRC)))
        .fabric;
    let sw = fabric
        .nodes
        .iter()
        .position(|n| n.name == "sw")
        .expect("node sw");
    let a = p4::compile(&fabric, NodeIdx(sw as u32), Target::V1Model);
    TextMessage::parse(&a.entries).expect("entries parse")
}

fn table_entries(write: &TextMessage, table: u32) -> Vec<&TextMessage> {
    write
        .messages("updates")
        .filter_map(|u| u.message("entity")?.message("table_entry"))
        .filter(|e| e.number("table_id") == Some(u64::from(table)))
        .collect()
}

fn field(entry: &TextMessage, id: u64) -> Option<&TextMessage> {
    entry
        .messages("match")
        .find(|m| m.number("field_id") == Some(id))
}

fn param(entry: &TextMessage, id: u64) -> Vec<u8> {
    let action = entry
        .message("action")
        .and_then(|a| a.message("action"))
        .expect("action");
    action
        .messages("params")
        .find(|p| p.number("param_id") == Some(id))
        .and_then(|p| p.bytes("value"))
        .expect("param")
        .to_vec()
}

fn action_id(entry: &TextMessage) -> u32 {
    let id = entry
        .message("action")
        .and_then(|a| a.message("action"))
        .and_then(|a| a.number("action_id"))
        .expect("action id");
    u32::try_from(id).expect("32-bit id")
}

#[test]
fn the_device_id_comes_from_the_node() {
    assert_eq!(switch_entries().number("device_id"), Some(3));
}

#[test]
fn routes_rewrite_macs_and_pick_the_port() {
    let write = switch_entries();
    let routes = table_entries(&write, objects::TABLE_IPV6_ROUTE);
    assert_eq!(routes.len(), 2);
    for r in routes {
        let lpm = field(r, 1).and_then(|f| f.message("lpm")).expect("lpm");
        assert_eq!(lpm.number("prefix_len"), Some(64));
        let value = lpm.bytes("value").expect("value");
        assert_eq!(action_id(r), objects::ACTION_ROUTE);
        // db01::/64 leaves on port 1 towards h1, db02::/64 on port 2.
        let (port, src, dst) = match value[1] {
            0x01 => (1, [2, 0, 0, 0, 2, 1], [2, 0, 0, 0, 1, 1]),
            0x02 => (2, [2, 0, 0, 0, 2, 2], [2, 0, 0, 0, 3, 1]),
            other => panic!("unexpected prefix db{other:02x}::"),
        };
        assert_eq!(value[0], 0xdb);
        assert!(value[2..].iter().all(|b| *b == 0));
        assert_eq!(param(r, 1), vec![port]);
        assert_eq!(param(r, 2), src);
        assert_eq!(param(r, 3), dst);
    }
}

#[test]
fn policies_match_the_flow_and_carry_the_role() {
    let write = switch_entries();
    let policies = table_entries(&write, objects::TABLE_IOAM_POLICY);
    assert_eq!(policies.len(), 2);
    let (out, back) = (policies[0], policies[1]);

    // `out` is encapsulated here: packets without a trace (domain 0).
    assert_eq!(action_id(out), objects::ACTION_IOAM_ENCAP);
    let exact = |e: &TextMessage| {
        field(e, 1)
            .and_then(|f| f.message("exact")?.bytes("value"))
            .map(<[u8]>::to_vec)
    };
    assert_eq!(exact(out), Some(vec![0]));
    let ternary = |e: &TextMessage, id| {
        let t = field(e, id)?.message("ternary")?;
        Some((t.bytes("value")?.to_vec(), t.bytes("mask")?.to_vec()))
    };
    let (dst, dst_mask) = ternary(out, 2).expect("dst");
    assert_eq!(dst[..2], [0xdb, 0x02]);
    assert_eq!(dst_mask, [[0xff; 8], [0; 8]].concat());
    let (src, _) = ternary(out, 3).expect("src");
    assert_eq!(src[..2], [0xdb, 0x01]);
    assert_eq!(ternary(out, 4), Some((vec![17], vec![0xff])));
    // Canonical bytestrings: no leading zero bytes.
    assert_eq!(ternary(out, 5), Some((vec![53], vec![0xff, 0xff])));
    assert_eq!(ternary(out, 6), Some((vec![0x13, 0x88], vec![0xff, 0xff])));
    // Domain 1 of the node, sampling slot 0, 3 of every 7.
    assert_eq!(param(out, 1), vec![1]);
    assert_eq!(param(out, 2), vec![0]);
    assert_eq!(param(out, 3), vec![3]);
    assert_eq!(param(out, 4), vec![7]);

    // `back` ends here: packets carrying the domain's trace.
    assert_eq!(action_id(back), objects::ACTION_IOAM_DECAP);
    assert_eq!(exact(back), Some(vec![1]));
    assert_eq!(ternary(back, 4), Some((vec![6], vec![0xff])));
    assert!(field(back, 3).is_none(), "no src: don't care");
    assert!(field(back, 5).is_none() && field(back, 6).is_none());

    // The policy declared first wins where flows overlap.
    let prio = |e: &TextMessage| e.number("priority").expect("priority");
    assert!(prio(out) > prio(back));
}

#[test]
fn the_digest_is_configured() {
    let write = switch_entries();
    let digests: Vec<_> = write
        .messages("updates")
        .filter_map(|u| u.message("entity")?.message("digest_entry"))
        .collect();
    assert_eq!(digests.len(), 1);
    let id = digests[0].number("digest_id").expect("digest id");
    assert_eq!(id >> 24, u64::from(objects::PREFIX_DIGEST));
    assert_eq!(
        digests[0]
            .message("config")
            .and_then(|c| c.number("max_list_size")),
        Some(1)
    );
}
