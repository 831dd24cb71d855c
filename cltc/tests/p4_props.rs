//! The P4 backend on arbitrary domains: any trace type, room and schema a
//! `.clt` file may declare gives a program whose markers are all replaced,
//! whose ids match its P4Info, and whose generated sizes follow the layout.

use clt_wire::TraceField;
use cltc::backend::p4::layout::{self, DomainLayout};
use cltc::backend::p4::textpb::TextMessage;
use cltc::backend::p4::{self, Target, annotated_ids, template};
use cltc::ir::NodeIdx;
use proptest::prelude::*;

/// A switch between two hosts, in one domain with these fields.
fn source(fields: &[TraceField], max_hops: u8, schema: Option<&str>, context: bool) -> String {
    let trace: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let schema = schema.map_or(String::new(), |s| format!("schema 5 \"{s}\""));
    let context = if context { "context w3c" } else { "" };
    format!(
        "domain d {{
    namespace 77
    trace {}
    max_hops {max_hops}
    {schema}
    {context}
    collector 127.0.0.1:7123
}}
node a linux {{ id 1 interface eth0 {{ id 11 address db01::1/64 mac 02:00:00:00:01:01 }} }}
node sw bmv2 {{
    id 2
    p4runtime 127.0.0.1:9559 device 1
    port 1 {{ id 21 mac 02:00:00:00:02:01 }}
    port 2 {{ id 22 mac 02:00:00:00:02:02 }}
}}
node b linux {{ id 3 interface eth0 {{ id 31 address db02::2/64 mac 02:00:00:00:03:01 }} }}
link a.eth0 -- sw.1
link sw.2 -- b.eth0
policy p {{ domain d from a to b match dst db02::/64 }}
",
        trace.join(", ")
    )
}

fn fields() -> impl Strategy<Value = Vec<TraceField>> {
    proptest::sample::subsequence(TraceField::ALL.to_vec(), 1..=TraceField::ALL.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_domain_gives_a_consistent_program(
        fields in fields(),
        max_hops in 1u8..=12,
        schema in proptest::option::of("[a-z]{1,12}"),
        context in any::<bool>(),
    ) {
        let src = source(&fields, max_hops, schema.as_deref(), context);
        // Sizes beyond what RFC 9486 allows are the front end's to reject;
        // proptest counts those and still runs 64 accepted cases.
        let compiled = cltc::compile_source("p.clt", &src);
        prop_assume!(compiled.is_ok());
        let fabric = compiled.expect("assumed").fabric;
        let sw = NodeIdx(1);
        prop_assert_eq!(&fabric.node(sw).name, "sw");
        let l: DomainLayout = layout::layout(&fabric.domains[0], 0);
        prop_assert_eq!(u32::from(l.per_hop_words) * 32, l.entry_bits());
        // The MTU check counts the header the P4 program inserts.
        let prealloc = u32::from(fabric.domains[0].prealloc_len);
        prop_assert_eq!(cltc::model::hbh_len(prealloc, false), l.hbh_len_plain());
        prop_assert_eq!(cltc::model::hbh_len(prealloc, true), l.hbh_len_clt());
        for target in [Target::V1Model, Target::Tna] {
            let a = p4::compile(&fabric, sw, target);
            prop_assert!(template::markers(&a.program).is_empty());
            let info = TextMessage::parse(&a.p4info).expect("p4info parses");
            let ids: Vec<(String, u64)> = ["tables", "actions", "registers", "digests"]
                .iter()
                .flat_map(|k| info.messages(k))
                .filter_map(|m| {
                    let p = m.message("preamble")?;
                    Some((p.string("name")?.to_string(), p.number("id")?))
                })
                .collect();
            for (name, id) in annotated_ids(&a.program) {
                let suffix = format!(".{name}");
                prop_assert!(
                    ids.iter().any(|(n, i)| (n.ends_with(&suffix) || *n == name) && *i == u64::from(id)),
                    "@id({:#x}) {} not in the p4info", id, name
                );
            }
            // One Fill branch per entry, the node data in the digest (TNA:
            // only a decapsulating node has digests, and sw forwards).
            let branches = a.program.matches("} else if (hdr.ioam_trace.rem_len == 7w").count();
            prop_assert_eq!(branches, usize::from(max_hops));
            let node_data = format!("bit<{}> node_data;", l.data_len() * 8);
            prop_assert_eq!(a.program.contains(&node_data), target == Target::V1Model);
            TextMessage::parse(&a.entries).expect("entries parse");
        }
    }
}
