//! The P4 backend on the examples: snapshots of every generated file, and
//! consistency between the program, its P4Info and its entries.

mod p4_support;

use cltc::backend::p4::textpb::TextMessage;
use cltc::backend::p4::{self, Target, annotated_ids};
use p4_support::{examples, fabric, objects, p4_nodes};
use std::collections::{BTreeMap, BTreeSet};

/// Program, P4Info and entries of every P4 node of every example, for its
/// natural target (bmv2: v1model, tofino: TNA).
#[test]
fn snapshots_of_the_examples() {
    insta::glob!("../../examples", "*.clt", |path| {
        let fabric = fabric(path);
        for (idx, target) in p4_nodes(&fabric) {
            let a = p4::compile(&fabric, idx, target);
            let node = &fabric.node(idx).name;
            insta::assert_snapshot!(format!("{node}.p4"), a.program);
            insta::assert_snapshot!(format!("{node}.p4info"), a.p4info);
            insta::assert_snapshot!(format!("{node}.entries"), a.entries);
        }
    });
}

/// Every P4 node of every example, for both targets.
fn every_artifact() -> Vec<(String, Target, p4::P4Artifacts)> {
    let mut out = Vec::new();
    for path in examples() {
        let fabric = fabric(&path);
        for (idx, _) in p4_nodes(&fabric) {
            for target in [Target::V1Model, Target::Tna] {
                let label = format!(
                    "{}:{} ({target:?})",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    fabric.node(idx).name
                );
                out.push((label, target, p4::compile(&fabric, idx, target)));
            }
        }
    }
    assert!(!out.is_empty(), "no example has a P4 node");
    out
}

#[test]
fn every_id_annotation_matches_the_p4info() {
    for (label, target, a) in every_artifact() {
        let info = TextMessage::parse(&a.p4info).expect("p4info parses");
        let objs = objects(&info);
        let annotated = annotated_ids(&a.program);
        assert!(!annotated.is_empty(), "{label}: no @id annotation");

        // Every annotation names an object of the P4Info with that id.
        for (name, id) in &annotated {
            let found = objs
                .iter()
                .find(|o| o.name == *name || o.name.ends_with(&format!(".{name}")));
            let found =
                found.unwrap_or_else(|| panic!("{label}: @id({id:#x}) {name} not in the p4info"));
            assert_eq!(found.id, *id, "{label}: {name}");
        }
        // Every object of the P4Info is declared with its id (v1model
        // digests are calls: p4c names them after their struct and hashes;
        // bf-p4c ignores @id on TNA externs and hashes their names).
        for o in &objs {
            let short = o.name.rsplit('.').next().unwrap_or_default();
            if target == Target::Tna && (o.kind == "registers" || o.kind == "digests") {
                assert!(
                    a.program.contains(&format!(") {short};")),
                    "{label}: no instance {short} for {}",
                    o.name
                );
                assert!(
                    !annotated.iter().any(|(n, _)| n == short),
                    "{label}: @id on the TNA extern {short}, which bf-p4c ignores"
                );
                continue;
            }
            if target == Target::V1Model && o.kind == "digests" {
                assert!(
                    a.program.contains(&format!("digest<{}>(", o.name)),
                    "{label}: no digest call for {}",
                    o.name
                );
                continue;
            }
            assert!(
                annotated.iter().any(|(n, id)| n == short && *id == o.id),
                "{label}: {} {} has no @id({:#x})",
                o.kind,
                o.name,
                o.id
            );
        }
        // Ids are unique and carry the P4Runtime prefix of their kind.
        let ids: BTreeSet<u32> = objs.iter().map(|o| o.id).collect();
        assert_eq!(ids.len(), objs.len(), "{label}: duplicate ids");
        for o in &objs {
            let prefix = match o.kind.as_str() {
                "tables" => 0x02,
                "actions" => 0x01,
                "registers" => 0x16,
                "digests" => 0x17,
                _ => unreachable!(),
            };
            assert_eq!(o.id >> 24, prefix, "{label}: {}", o.name);
        }
    }
}

/// What the P4Info says about one table.
struct TableInfo {
    fields: BTreeMap<u64, (u64, String)>,
    actions: BTreeMap<u64, bool>,
}

#[test]
fn entries_use_only_what_the_p4info_declares() {
    for (label, _, a) in every_artifact() {
        let info = TextMessage::parse(&a.p4info).expect("p4info parses");
        let mut tables = BTreeMap::new();
        for t in info.messages("tables") {
            let id = t
                .message("preamble")
                .and_then(|p| p.number("id"))
                .expect("id");
            let fields = t
                .messages("match_fields")
                .map(|f| {
                    let kind = f.scalar("match_type").unwrap_or_default().to_string();
                    (
                        f.number("id").expect("id"),
                        (f.number("bitwidth").expect("bits"), kind),
                    )
                })
                .collect();
            let actions = t
                .messages("action_refs")
                .map(|r| {
                    (
                        r.number("id").expect("id"),
                        r.scalar("scope") == Some("DEFAULT_ONLY"),
                    )
                })
                .collect();
            tables.insert(id, TableInfo { fields, actions });
        }
        let mut params = BTreeMap::new();
        for act in info.messages("actions") {
            let id = act
                .message("preamble")
                .and_then(|p| p.number("id"))
                .expect("id");
            let ps: BTreeMap<u64, u64> = act
                .messages("params")
                .map(|p| {
                    (
                        p.number("id").expect("id"),
                        p.number("bitwidth").expect("bits"),
                    )
                })
                .collect();
            params.insert(id, ps);
        }
        let digests: BTreeSet<u64> = info
            .messages("digests")
            .filter_map(|d| d.message("preamble").and_then(|p| p.number("id")))
            .collect();

        let fits = |value: &[u8], bits: u64| {
            !value.is_empty()
                && (value.len() as u64) <= bits.div_ceil(8)
                && (value.len() == 1 || value[0] != 0)
        };
        let write = TextMessage::parse(&a.entries).expect("entries parse");
        let updates: Vec<_> = write.messages("updates").collect();
        assert!(!updates.is_empty(), "{label}: no updates");
        for u in updates {
            assert_eq!(u.scalar("type"), Some("INSERT"));
            let entity = u.message("entity").expect("entity");
            if let Some(d) = entity.message("digest_entry") {
                assert!(digests.contains(&d.number("digest_id").expect("digest id")));
                continue;
            }
            let e = entity.message("table_entry").expect("table entry");
            let table = &tables[&e.number("table_id").expect("table id")];
            let mut ternary = false;
            for m in e.messages("match") {
                let (bits, kind) = &table.fields[&m.number("field_id").expect("field id")];
                let (value, mask) = match kind.as_str() {
                    "EXACT" => (m.message("exact").and_then(|x| x.bytes("value")), None),
                    "LPM" => {
                        let lpm = m.message("lpm").expect("lpm");
                        let len = lpm.number("prefix_len").expect("prefix_len");
                        assert!(len > 0 && len <= *bits, "{label}: prefix_len {len}");
                        (lpm.bytes("value"), None)
                    }
                    "TERNARY" => {
                        ternary = true;
                        let t = m.message("ternary").expect("ternary");
                        (t.bytes("value"), t.bytes("mask"))
                    }
                    other => panic!("{label}: match type {other}"),
                };
                let value = value.expect("value");
                assert!(
                    fits(value, *bits),
                    "{label}: value {value:?} for {bits} bits"
                );
                if let Some(mask) = mask {
                    assert!(fits(mask, *bits), "{label}: mask {mask:?}");
                    // value & mask == value, aligned at the right end.
                    let pad = |v: &[u8]| {
                        let mut full = vec![0u8; 16 - v.len()];
                        full.extend_from_slice(v);
                        full
                    };
                    let (v, m) = (pad(value), pad(mask));
                    assert!(
                        v.iter().zip(&m).all(|(v, m)| v & m == *v),
                        "{label}: value outside mask"
                    );
                }
            }
            assert_eq!(
                e.number("priority").is_some(),
                ternary,
                "{label}: priority iff ternary"
            );
            let action = e
                .message("action")
                .and_then(|a| a.message("action"))
                .expect("action");
            let action_id = action.number("action_id").expect("action id");
            assert_eq!(
                table.actions.get(&action_id),
                Some(&false),
                "{label}: action {action_id:#x}"
            );
            let declared = &params[&action_id];
            let given: Vec<_> = action.messages("params").collect();
            assert_eq!(
                given.len(),
                declared.len(),
                "{label}: params of {action_id:#x}"
            );
            for p in given {
                let bits = declared[&p.number("param_id").expect("param id")];
                assert!(
                    fits(p.bytes("value").expect("value"), bits),
                    "{label}: param width"
                );
            }
        }
    }
}

#[test]
fn output_is_deterministic() {
    for path in examples() {
        let a = fabric(&path);
        let b = fabric(&path);
        for (idx, target) in p4_nodes(&a) {
            assert_eq!(p4::compile(&a, idx, target), p4::compile(&b, idx, target));
        }
    }
}

#[test]
fn no_marker_is_left_unreplaced() {
    for (label, _, a) in every_artifact() {
        let left = p4::template::markers(&a.program);
        assert!(left.is_empty(), "{label}: markers not replaced: {left:?}");
    }
}
