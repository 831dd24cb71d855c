//! The controller reads what `cltc compile` writes: every example's P4
//! nodes parse (text-format P4Info and entries), every entry names objects
//! of its P4Info, every IOAM digest is decodable, and a compiled node
//! installs on the in-process switch and then reconciles to nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fabric_dir;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clt_controller::P4InfoIndex;
use clt_controller::config::Config;
use clt_controller::device::{Device, DeviceSpec};
use clt_controller::digest::DigestLayout;
use clt_controller::inputs::DeviceInputs;
use clt_controller::metrics::Metrics;
use clt_controller::proto::p4::v1 as p4;
use common::*;

/// Compiles `examples/NAME.clt` into a temporary directory, with a stand-in
/// device config (p4c-bm2-ss's JSON is not built here) beside each program.
fn compile_example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fabric_dir::write(name, &fabric_dir::example(name), dir.path());
    dir
}

fn check_entry_refs(info: &P4InfoIndex, e: &p4::TableEntry) {
    let what = info.describe(e);
    let table = info
        .table(e.table_id)
        .unwrap_or_else(|| panic!("unknown table: {what}"));
    for m in &e.r#match {
        assert!(
            table.match_fields.iter().any(|f| f.id == m.field_id),
            "unknown match field {}: {what}",
            m.field_id
        );
    }
    if let Some(p4::table_action::Type::Action(a)) =
        e.action.as_ref().and_then(|a| a.r#type.as_ref())
    {
        assert!(
            table.action_refs.iter().any(|r| r.id == a.action_id),
            "action not in table: {what}"
        );
        let action = info
            .action(a.action_id)
            .unwrap_or_else(|| panic!("unknown action: {what}"));
        for p in &a.params {
            assert!(
                action.params.iter().any(|q| q.id == p.param_id),
                "unknown param: {what}"
            );
        }
    } else {
        panic!("entry without a direct action: {what}");
    }
    assert!(
        !what.contains("<table") && !what.contains("<field") && !what.contains("<param"),
        "{what}"
    );
}

#[test]
fn every_example_p4_node_parses_and_refers_to_its_p4info() {
    let mut p4_nodes = 0;
    for example in ["login", "leaf-spine", "telemetry"] {
        let dir = compile_example(example);
        let config = Config::from_compiled(dir.path()).unwrap();
        for d in &config.devices {
            p4_nodes += 1;
            let inputs = DeviceInputs::load(&d.inputs)
                .unwrap_or_else(|e| panic!("{example}/{}: {e}", d.name));
            let info = P4InfoIndex::new(inputs.pipeline.p4info.clone());
            assert!(
                !inputs.entries.is_empty(),
                "{example}/{}: no entries",
                d.name
            );
            for e in &inputs.entries {
                check_entry_refs(&info, e);
            }
            let layouts = DigestLayout::all(&info).unwrap();
            // One IOAM digest per domain the node reports, each configured.
            for digest in &inputs.digests {
                assert!(
                    layouts.iter().any(|l| l.digest_id == digest.digest_id),
                    "{example}/{}: digest_entry for unknown digest {:#x}",
                    d.name,
                    digest.digest_id
                );
            }
            assert_eq!(
                layouts.len(),
                info.p4info().digests.len(),
                "{example}/{}",
                d.name
            );
        }
    }
    assert!(p4_nodes >= 3, "the examples have P4 nodes ({p4_nodes})");
}

/// Builds a digest for `layout`'s struct from the P4Info's member names, as
/// the P4 program packs it: one hop (trace type 0xF00000: node id,
/// interfaces, timestamps) at the end of the node data.
fn digest_for(info: &P4InfoIndex, digest_id: u32) -> (p4::P4Data, u32) {
    use clt_controller::proto::p4::config::v1 as cfg;
    let digest = info.digest(digest_id).unwrap();
    let Some(cfg::p4_data_type_spec::TypeSpec::Struct(named)) =
        digest.type_spec.as_ref().and_then(|t| t.type_spec.as_ref())
    else {
        panic!("digest is not a struct")
    };
    let st = &info.p4info().type_info.as_ref().unwrap().structs[&named.name];
    let width = |m: &cfg::p4_struct_type_spec::Member| match m
        .type_spec
        .as_ref()
        .and_then(|t| t.type_spec.as_ref())
    {
        Some(cfg::p4_data_type_spec::TypeSpec::Bitstring(b)) => match b.type_spec {
            Some(cfg::p4_bitstring_like_type_spec::TypeSpec::Bit(b)) => b.bitwidth as usize,
            _ => panic!("not bit<W>"),
        },
        _ => panic!("not a bitstring"),
    };
    let node_bytes = st
        .members
        .iter()
        .find(|m| m.name == "node_data")
        .map(|m| width(m) / 8)
        .unwrap();
    let tt = clt_wire::TraceType::from_bits(0xF0_0000);
    let entry_len = usize::from(tt.node_len()) * 4;
    let mut node_data = vec![0u8; node_bytes];
    let n = clt_wire::NodeRepr {
        hop_limit_node_id: Some(clt_wire::HopLimitNodeId {
            hop_limit: 63,
            node_id: 42,
        }),
        interface_ids: Some(clt_wire::InterfaceIds {
            ingress: 1,
            egress: 2,
        }),
        timestamp_secs: Some(1_700_000_000),
        timestamp_frac: Some(123_456),
        ..Default::default()
    };
    n.emit(tt, &mut node_data[node_bytes - entry_len..])
        .unwrap();
    let rem_len = ((node_bytes - entry_len) / 4) as u128;
    let value = |name: &str| -> Vec<u8> {
        match name {
            "namespace_id" => canonical(&7u16.to_be_bytes()),
            "trace_type" => canonical(&0xF0_0000u32.to_be_bytes()),
            "rem_len" => canonical(&rem_len.to_be_bytes()),
            "trace_id" => canonical(&0x1234u128.to_be_bytes()),
            "span_id" => canonical(&0x99u64.to_be_bytes()),
            "has_context" => vec![1],
            "node_data" => canonical(&node_data),
            _ => vec![0],
        }
    };
    let data = p4::P4Data {
        data: Some(p4::p4_data::Data::Struct(p4::P4StructLike {
            members: st
                .members
                .iter()
                .map(|m| p4::P4Data {
                    data: Some(p4::p4_data::Data::Bitstring(value(&m.name))),
                })
                .collect(),
        })),
    };
    (data, 42)
}

#[test]
fn digests_of_compiled_programs_decode() {
    let dir = compile_example("leaf-spine");
    let config = Config::from_compiled(dir.path()).unwrap();
    let mut decoded = 0;
    for d in &config.devices {
        let inputs = DeviceInputs::load(&d.inputs).unwrap();
        let info = P4InfoIndex::new(inputs.pipeline.p4info.clone());
        for layout in DigestLayout::all(&info).unwrap() {
            let (data, node_id) = digest_for(&info, layout.digest_id);
            let got = layout
                .decode(&data)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", d.name, layout.name));
            assert_eq!(got.trace.namespace_id, 7);
            assert_eq!(got.trace.bit_field, 0xF0_0000 << 8);
            assert_eq!((got.trace.trace_id_low, got.trace.span_id), (0x1234, 0x99));
            assert_eq!(got.trace.nodes.len(), 1, "{}: {}", d.name, layout.name);
            let n = &got.trace.nodes[0];
            assert_eq!(
                (n.id, n.hop_limit, n.ingress_id, n.egress_id),
                (node_id, 63, 1, 2)
            );
            assert_eq!(
                (n.timestamp_secs, n.timestamp_frac),
                (1_700_000_000, 123_456)
            );
            decoded += 1;
        }
    }
    assert!(decoded >= 2, "leaf-spine has IOAM digests ({decoded})");
}

fn find(config: &Config, name: &str) -> clt_controller::config::DeviceConfig {
    config
        .devices
        .iter()
        .find(|d| d.name == name)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn a_compiled_node_installs_then_reconciles_to_nothing() {
    let dir = compile_example("leaf-spine");
    let config = Config::from_compiled(dir.path()).unwrap();
    let (sw, addr) = FakeSwitch::start().await;
    let mut dc = find(&config, &config.devices[0].name);
    dc.address = addr.to_string();
    let inputs = DeviceInputs::load(&dc.inputs).unwrap();
    let n_entries = inputs.entries.len();
    let n_digests = inputs.digests.len();
    let mut spec = DeviceSpec::from_config(&dc);
    spec.connect_timeout = Duration::from_secs(2);
    let device = Arc::new(Device::new(spec, inputs, None, Metrics::default()).unwrap());

    let mut session = device.open().await.unwrap();
    let first = device.install(&mut session).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.inserted, n_entries);
    assert_eq!(sw.state().tables.len(), n_entries);
    // Every IOAM digest is configured: the compiled ones as compiled.
    assert_eq!(
        sw.state().digest_configs.len(),
        device_digest_count(&device)
    );
    assert!(n_digests <= device_digest_count(&device));

    let writes = sw.state().write_sizes.iter().sum::<usize>();
    let second = device.install(&mut session).await.unwrap();
    assert_eq!(
        (second.inserted, second.modified, second.deleted),
        (0, 0, 0)
    );
    assert_eq!(second.unchanged, n_entries);
    // Only the digest configurations were written again (MODIFY after the
    // INSERT is refused), no table entry.
    let table_writes: usize = sw.state().write_sizes.iter().sum::<usize>() - writes;
    assert_eq!(table_writes, 2 * sw.state().digest_configs.len());
    assert_eq!(
        sw.state().set_pipeline_calls,
        1,
        "second install skipped the pipeline"
    );
}

fn device_digest_count(device: &Device) -> usize {
    DigestLayout::all(device.info()).unwrap().len()
}

#[test]
fn config_files_resolve_compiled_nodes_and_explicit_paths() {
    let dir = compile_example("login");
    let text = format!(
        r#"
[collector]
address = "127.0.0.1:7123"

[[device]]
name = "router"
compiled = "{}"
election_id = 5

[[device]]
name = "explicit"
address = "10.0.0.1:9559"
device_id = 9
p4info = "a/p4info.txtpb"
entries = "a/entries.txtpb"
device_config = "/abs/program.json"
"#,
        dir.path().display()
    );
    let config = Config::parse(&text, Path::new("/etc/clt")).unwrap();
    let router = find(&config, "router");
    assert_eq!(
        (
            router.address.as_str(),
            router.device_id,
            router.election_id
        ),
        ("127.0.0.1:9559", 1, 5)
    );
    assert_eq!(
        router.inputs.p4info,
        dir.path().join("nodes/router/p4info.txtpb")
    );
    assert_eq!(
        router.inputs.device_config,
        dir.path().join("nodes/router/program.json")
    );
    let explicit = find(&config, "explicit");
    assert_eq!(
        explicit.inputs.p4info,
        PathBuf::from("/etc/clt/a/p4info.txtpb")
    );
    assert_eq!(
        explicit.inputs.device_config,
        PathBuf::from("/abs/program.json")
    );
    assert_eq!(explicit.inputs.program, None);

    for (bad, why) in [
        (
            "[[device]]\nname = \"x\"\naddress = \"a:1\"\ndevice_id = 1\n",
            "no p4info",
        ),
        (
            &format!(
                "[[device]]\nname = \"entry\"\ncompiled = \"{}\"\n",
                dir.path().display()
            ),
            "no P4 node named entry",
        ),
        ("[[device]]\nname = \"x\"\nbogus = 1\n", "unknown field"),
    ] {
        let err = Config::parse(bad, Path::new("/")).unwrap_err().to_string();
        assert!(err.contains(why), "{err:?} should say {why:?}");
    }
}
