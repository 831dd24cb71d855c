//! A Tofino's digest and bmv2's digest of the same policy reach the
//! collector as the same trace.
//!
//! cltc declares a TNA digest's members in whole, container-sized bytes
//! (trace type 32 bits: the wire word with its reserved byte; flags and
//! RemainingLen 16; has_context 8) and a v1model digest's in their header
//! widths (24, 4, 7, 1). Each test compiles a fixture's decapsulating
//! Tofino for both targets, packs traces into DigestList data exactly as
//! the program copies them (each member a bytestring of its P4Info width,
//! sent both full-width, as older servers do, and canonical, as P4Runtime
//! §8.4 asks and PI's bmv2 server does), sends them on the stream of the
//! in-process P4Runtime server and checks every field of what reaches the
//! IOAM API collector. The overflow flag, which `IoamTrace` does not carry,
//! is checked on the decoder itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use clt_controller::P4InfoIndex;
use clt_controller::device::Device;
use clt_controller::digest::DigestLayout;
use clt_controller::forward::Forwarder;
use clt_controller::inputs::{
    DeviceInputs, Entries, Pipeline, cookie, parse_entries, parse_p4info,
};
use clt_controller::metrics::Metrics;
use clt_controller::proto::p4::config::v1 as cfg;
use clt_controller::proto::p4::v1 as p4;
use clt_proto::ioam_api::{IoamNode, IoamTrace};
use clt_wire::{HopLimitNodeId, InterfaceIds, NodeRepr, TraceType};
use cltc::backend::p4::objects::digest_members_for;
use cltc::backend::p4::{self as backend, Target};
use cltc::ir::NodeIdx;
use common::*;

/// One node's entry, as every hop of the tests writes it.
#[derive(Debug, Clone, Copy)]
struct Hop {
    hop_limit: u8,
    id: u32,
    ingress: u16,
    egress: u16,
    queue_depth: u32,
}

/// One trace as the decapsulating switch finds it in the packet.
#[derive(Debug, Clone)]
struct Report {
    namespace: u16,
    /// The 24-bit IOAM-Trace-Type.
    trace_type: u32,
    overflow: bool,
    /// The hops that wrote an entry, in path order.
    hops: Vec<Hop>,
    /// The CLT option's trace and span ids, when the packet carried one.
    context: Option<(u128, u64)>,
}

impl Report {
    fn entry(&self, h: &Hop) -> NodeRepr<'static> {
        let tt = TraceType::from_bits(self.trace_type);
        let has = |bit: u32| tt.bits() & bit != 0;
        NodeRepr {
            hop_limit_node_id: has(0x80_0000).then_some(HopLimitNodeId {
                hop_limit: h.hop_limit,
                node_id: h.id,
            }),
            interface_ids: has(0x40_0000).then_some(InterfaceIds {
                ingress: h.ingress,
                egress: h.egress,
            }),
            queue_depth: has(0x02_0000).then_some(h.queue_depth),
            ..Default::default()
        }
    }

    /// The pre-allocated node data of `len` bytes and its RemainingLen: the
    /// last hop's entry first, right after the free room.
    fn node_data(&self, len: usize) -> (Vec<u8>, u64) {
        let tt = TraceType::from_bits(self.trace_type);
        let entry_len = usize::from(tt.node_len()) * 4;
        assert_eq!(
            len % entry_len,
            0,
            "{len} bytes of {entry_len}-byte entries"
        );
        let free = len - self.hops.len() * entry_len;
        let mut data = vec![0u8; len];
        for (i, h) in self.hops.iter().rev().enumerate() {
            let at = free + i * entry_len;
            self.entry(h)
                .emit(tt, &mut data[at..at + entry_len])
                .unwrap();
        }
        (data, (free / 4) as u64)
    }

    /// What the collector must receive: the ids and entries as sent, in
    /// path order, written by hand rather than by the controller's mapping.
    fn expected(&self) -> IoamTrace {
        let (trace_id, span_id) = self.context.unwrap_or((0, 0));
        let has = |bit: u32| self.trace_type & bit != 0;
        IoamTrace {
            trace_id_high: (trace_id >> 64) as u64,
            trace_id_low: trace_id as u64,
            span_id,
            namespace_id: u32::from(self.namespace),
            bit_field: self.trace_type << 8,
            nodes: self
                .hops
                .iter()
                .map(|h| IoamNode {
                    hop_limit: u32::from(h.hop_limit),
                    id: h.id,
                    ingress_id: if has(0x40_0000) {
                        u32::from(h.ingress)
                    } else {
                        0
                    },
                    egress_id: if has(0x40_0000) {
                        u32::from(h.egress)
                    } else {
                        0
                    },
                    queue_depth: if has(0x02_0000) { h.queue_depth } else { 0 },
                    ..Default::default()
                })
                .collect(),
        }
    }
}

/// How the server writes a bytestring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// All `ceil(width / 8)` bytes.
    FullWidth,
    /// Without leading zero bytes (at least one byte).
    Canonical,
}

/// `value` as a bytestring of a `bits`-wide member.
fn bytestring(value: &[u8], bits: u32, form: Form) -> Vec<u8> {
    let len = bits.div_ceil(8) as usize;
    let stripped = canonical(value);
    let used = (stripped.len() as u32 - 1) * 8 + (8 - stripped[0].leading_zeros());
    assert!(used <= bits, "{value:x?} does not fit {bits} bits");
    match form {
        Form::Canonical => stripped,
        Form::FullWidth => {
            let mut out = vec![0u8; len];
            out[len - stripped.len()..].copy_from_slice(&stripped);
            out
        }
    }
}

/// The compiled switch for one target.
struct Compiled {
    target: Target,
    program: String,
    p4info: cfg::P4Info,
    entries: Entries,
}

fn compile(file: &str, src: &str, node: &str, target: Target) -> Compiled {
    let compiled =
        cltc::compile_source(file, src).unwrap_or_else(|d| panic!("{}", d.render(file, src)));
    let fabric = compiled.fabric;
    let idx = fabric
        .nodes
        .iter()
        .position(|n| n.name == node)
        .unwrap_or_else(|| panic!("{file}: no node {node}"));
    let a = backend::compile(&fabric, NodeIdx(idx as u32), target);
    Compiled {
        target,
        p4info: parse_p4info(&a.p4info, file).unwrap(),
        entries: parse_entries(&a.entries, file).unwrap(),
        program: a.program,
    }
}

fn fixture(name: &str) -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../cltc/tests/fixtures/ok/{name}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The id and `(name, bits)` members of the digest of the domain numbered
/// `domain` (struct `trace_digest_d{domain - 1}_t`).
fn digest_of(info: &cfg::P4Info, domain: u8) -> (u32, Vec<(String, u32)>) {
    let want = format!("trace_digest_d{}_t", domain - 1);
    let digest = info
        .digests
        .iter()
        .find(|d| {
            matches!(
                d.type_spec.as_ref().and_then(|t| t.type_spec.as_ref()),
                Some(cfg::p4_data_type_spec::TypeSpec::Struct(s)) if s.name == want
            )
        })
        .unwrap_or_else(|| panic!("no digest of struct {want}"));
    let st = &info.type_info.as_ref().unwrap().structs[&want];
    let members = st
        .members
        .iter()
        .map(|m| {
            let bits = match m.type_spec.as_ref().and_then(|t| t.type_spec.as_ref()) {
                Some(cfg::p4_data_type_spec::TypeSpec::Bitstring(b)) => match b.type_spec {
                    Some(cfg::p4_bitstring_like_type_spec::TypeSpec::Bit(b)) => b.bitwidth as u32,
                    _ => panic!("{}: not bit<W>", m.name),
                },
                _ => panic!("{}: not a bitstring", m.name),
            };
            (m.name.clone(), bits)
        })
        .collect();
    (digest.preamble.as_ref().unwrap().id, members)
}

/// The digest data of `report` for a struct of `members`, each member
/// copied as the program copies it (TNA: the trace type with the reserved
/// byte, the rest zero-extended).
fn pack(report: &Report, members: &[(String, u32)], form: Form) -> p4::P4Data {
    let data_bits = members
        .iter()
        .find(|(n, _)| n == "node_data")
        .map(|(_, b)| *b)
        .expect("node_data member");
    let (node_data, rem_len) = report.node_data(data_bits as usize / 8);
    let (trace_id, span_id) = report.context.unwrap_or((0, 0));
    let data = members
        .iter()
        .map(|(name, bits)| {
            let value: Vec<u8> = match name.as_str() {
                "namespace_id" => report.namespace.to_be_bytes().to_vec(),
                "trace_type" => match bits {
                    // The reserved byte is zero on the wire.
                    32 => (report.trace_type << 8).to_be_bytes().to_vec(),
                    24 => report.trace_type.to_be_bytes().to_vec(),
                    other => panic!("a {other}-bit trace type"),
                },
                "flags" => vec![if report.overflow { 0b1000 } else { 0 }],
                "rem_len" => rem_len.to_be_bytes().to_vec(),
                "has_context" => vec![u8::from(report.context.is_some())],
                "trace_id" => trace_id.to_be_bytes().to_vec(),
                "span_id" => span_id.to_be_bytes().to_vec(),
                "node_data" => node_data.clone(),
                other => panic!("unexpected digest member {other}"),
            };
            p4::P4Data {
                data: Some(p4::p4_data::Data::Bitstring(bytestring(
                    &value, *bits, form,
                ))),
            }
        })
        .collect();
    p4::P4Data {
        data: Some(p4::p4_data::Data::Struct(p4::P4StructLike {
            members: data,
        })),
    }
}

/// Installs `c` on an in-process switch, sends `reports` of `domain` as one
/// DigestList in each form and returns what the collector received.
async fn through_the_controller(c: &Compiled, domain: u8, reports: &[Report]) -> Vec<IoamTrace> {
    let (sw, addr) = FakeSwitch::start().await;
    let (collector, caddr) = start_collector().await;
    let metrics = Metrics::default();
    let (forwarder, _task) = Forwarder::spawn(&caddr.to_string(), 64, metrics.clone()).unwrap();
    let device_config = b"{\"stand-in\": true}".to_vec();
    let inputs = DeviceInputs {
        pipeline: Pipeline {
            cookie: cookie(c.program.as_bytes(), &c.p4info, &device_config),
            p4info: c.p4info.clone(),
            device_config,
        },
        entries: c.entries.tables.clone(),
        digests: c.entries.digests.clone(),
    };
    let label = format!("{:?}", c.target);
    let running = Running::spawn(
        Device::new(spec(addr, &label), inputs, Some(forwarder), metrics.clone()).unwrap(),
    );
    running
        .device
        .watch_status()
        .wait_for(|s| s.installs == 1)
        .await
        .unwrap();
    let (digest_id, members) = digest_of(&c.p4info, domain);
    assert!(
        sw.state().digest_configs.contains_key(&digest_id),
        "{label}: the digest of domain {domain} is configured"
    );
    for (list_id, form) in [(1, Form::FullWidth), (2, Form::Canonical)] {
        sw.send_digest(p4::DigestList {
            digest_id,
            list_id,
            data: reports.iter().map(|r| pack(r, &members, form)).collect(),
            timestamp: 0,
        });
    }
    let want = 2 * reports.len();
    eventually("every trace at the collector", || {
        collector.0.lock().unwrap().len() >= want
    })
    .await;
    eventually("both lists acknowledged", || sw.state().acks.len() == 2).await;
    assert_eq!(
        metrics
            .digests_malformed
            .get_or_create(&Metrics::device(&label))
            .get(),
        0,
        "{label}: no digest skipped"
    );
    running.stop().await;
    collector.0.lock().unwrap().clone()
}

/// Compiles `src`'s switch `node` for both targets, checks the digest
/// widths, and checks that `reports` of domain `domain` reach the collector
/// as sent, from both.
async fn both_targets_report(file: &str, src: &str, node: &str, domain: u8, reports: &[Report]) {
    let mut traces = Vec::new();
    for target in [Target::Tna, Target::V1Model] {
        let c = compile(file, src, node, target);
        let (digest_id, members) = digest_of(&c.p4info, domain);
        // The P4Info declares cltc's widths for the target: on TNA the
        // wide ones (a 32-bit trace type, every member whole bytes).
        let widths: Vec<(&str, u32)> = members.iter().map(|(n, b)| (n.as_str(), *b)).collect();
        let data_len = widths.last().map_or(0, |(_, b)| b / 8);
        assert_eq!(
            widths,
            digest_members_for(data_len, target),
            "{file} {target:?}"
        );
        assert_eq!(
            (widths[1], widths.iter().all(|(_, b)| b % 8 == 0)),
            (
                ("trace_type", if target == Target::Tna { 32 } else { 24 }),
                target == Target::Tna
            ),
            "{file} {target:?}"
        );
        if target == Target::Tna {
            // What `pack` assumes of the 32-bit trace type.
            assert!(
                c.program.contains(
                    ".trace_type = hdr.ioam_trace.trace_type ++ hdr.ioam_trace.reserved;"
                ),
                "{file}: TNA copies the trace type's wire word"
            );
        }
        // The decoder itself: every field, and the overflow flag.
        let layout = DigestLayout::all(&P4InfoIndex::new(c.p4info.clone()))
            .unwrap()
            .into_iter()
            .find(|l| l.digest_id == digest_id)
            .expect("an IOAM digest layout");
        for r in reports {
            for form in [Form::FullWidth, Form::Canonical] {
                let d = layout
                    .decode(&pack(r, &members, form))
                    .unwrap_or_else(|e| panic!("{file} {target:?} {form:?}: {e}"));
                assert_eq!(d.trace, r.expected(), "{file} {target:?} {form:?}");
                assert_eq!(d.overflow, r.overflow, "{file} {target:?} {form:?}");
            }
        }
        // The real path: stream, decode, forward.
        let got = through_the_controller(&c, domain, reports).await;
        let want: Vec<IoamTrace> = [reports, reports]
            .concat()
            .iter()
            .map(Report::expected)
            .collect();
        assert_eq!(got, want, "{file} {target:?}: at the collector");
        traces.push(got);
    }
    assert_eq!(traces[0], traces[1], "{file}: TNA and v1model report alike");
}

fn hop(id: u32) -> Hop {
    Hop {
        hop_limit: 64u8.wrapping_sub(id as u8),
        id,
        ingress: (id * 10 + 1) as u16,
        egress: (id * 10 + 2) as u16,
        queue_depth: 0x00ab_0000 + id,
    }
}

#[tokio::test]
async fn a_tofino_decap_digest_decodes_like_bmv2s() {
    let src = fixture("tofino_decap.clt");
    let reports = [
        // Every hop wrote: RemainingLen 0.
        Report {
            namespace: 7,
            trace_type: 0x80_0000,
            overflow: false,
            hops: vec![hop(1), hop(2), hop(3)],
            context: None,
        },
        // One hop of three, and a hop that could not write.
        Report {
            namespace: 7,
            trace_type: 0x80_0000,
            overflow: true,
            hops: vec![hop(0x00ff_fffe)],
            context: None,
        },
        // No hop.
        Report {
            namespace: 7,
            trace_type: 0x80_0000,
            overflow: false,
            hops: vec![],
            context: None,
        },
    ];
    both_targets_report("tofino_decap.clt", &src, "s1", 1, &reports).await;
}

/// The same switch for a domain with three fields (12-byte entries, one
/// hop: the 48 bytes a Tofino digest holds) and the CLT option.
#[tokio::test]
async fn a_tofino_decap_digest_with_clt_context_decodes_like_bmv2s() {
    let base = fixture("tofino_decap.clt");
    let src = base.replacen(
        "trace hop_limit_node_id\n    max_hops 3",
        "trace hop_limit_node_id, interface_ids, queue_depth\n    max_hops 1\n    context w3c",
        1,
    );
    assert_ne!(src, base, "the fixture's domain changed");
    let reports = [
        Report {
            namespace: 7,
            trace_type: 0xC2_0000,
            overflow: false,
            hops: vec![hop(2)],
            context: Some((0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331)),
        },
        // A packet without the CLT option: has_context 0, ids zero.
        Report {
            namespace: 7,
            trace_type: 0xC2_0000,
            overflow: true,
            hops: vec![],
            context: None,
        },
        // Ids with their top bits set (nothing lost to a sign or width).
        Report {
            namespace: 7,
            trace_type: 0xC2_0000,
            overflow: false,
            hops: vec![hop(9)],
            context: Some((u128::MAX - 1, u64::MAX)),
        },
    ];
    both_targets_report("tofino_decap.clt+context", &src, "s1", 1, &reports).await;
}

/// Digest type 7 of 7 on TNA (the only digest the Tofino declares) and
/// the seventh of seven on v1model.
#[tokio::test]
async fn the_seventh_domains_tofino_digest_decodes_like_bmv2s() {
    let src = fixture("tofino_seventh_domain.clt");
    let tna = compile("tofino_seventh_domain.clt", &src, "s1", Target::Tna);
    assert_eq!(
        tna.p4info.digests.len(),
        1,
        "TNA reports only the decapsulated domain"
    );
    let reports = [Report {
        namespace: 7,
        trace_type: 0x80_0000,
        overflow: false,
        hops: vec![hop(1), hop(2)],
        context: None,
    }];
    both_targets_report("tofino_seventh_domain.clt", &src, "s1", 7, &reports).await;
}
