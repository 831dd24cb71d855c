//! Wire compatibility of our P4Runtime protos with the official p4lang
//! bindings (PyPI `p4runtime`, which p4runtime-shell installs): messages the
//! controller receives are encoded in Python and decoded here; messages it
//! sends are encoded here and compared byte for byte. Skipped with a message
//! when the bindings are not importable by `$P4RUNTIME_SHELL_PYTHON`
//! (default `python3`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

mod common;

use clt_controller::proto::google::rpc;
use clt_controller::proto::p4::config::v1 as cfg;
use clt_controller::proto::p4::v1 as p4;
use clt_controller::write::per_update_errors;
use prost::Message;

fn official() -> Option<HashMap<String, Vec<u8>>> {
    let python = common::shell_python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/official_messages.py"
    );
    let out = std::process::Command::new(&python)
        .arg(script)
        .output()
        .ok()?;
    if !out.status.success() {
        println!(
            "skipped: `{python}` cannot run the official P4Runtime bindings (pip install p4runtime, or set P4RUNTIME_SHELL_PYTHON): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .map(|l| {
                let (name, hex) = l.split_once(' ').unwrap();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                (name.to_string(), bytes)
            })
            .collect(),
    )
}

#[test]
fn messages_encoded_by_the_official_bindings_decode_and_ours_encode_identically() {
    let Some(m) = official() else { return };

    // Received: a DigestList.
    let r = p4::StreamMessageResponse::decode(m["digest_list"].as_slice()).unwrap();
    let Some(p4::stream_message_response::Update::Digest(list)) = r.update else {
        panic!("not a digest list: {r:?}")
    };
    assert_eq!(
        (list.digest_id, list.list_id, list.timestamp),
        (0x1700_0001, 77, 1_234_567_890_123)
    );
    let Some(p4::p4_data::Data::Struct(s)) = &list.data[0].data else {
        panic!("not a struct")
    };
    assert_eq!(
        s.members[0].data,
        Some(p4::p4_data::Data::Bitstring(vec![0x01, 0x23]))
    );
    assert_eq!(s.members[1].data, Some(p4::p4_data::Data::Bool(true)));
    let Some(p4::p4_data::Data::Header(h)) = &s.members[2].data else {
        panic!("not a header")
    };
    assert_eq!(h.bitstrings, vec![vec![1], vec![2]]);

    // Received: arbitration.
    let r = p4::StreamMessageResponse::decode(m["arbitration"].as_slice()).unwrap();
    let Some(p4::stream_message_response::Update::Arbitration(a)) = r.update else {
        panic!("{r:?}")
    };
    assert_eq!(a.device_id, 3);
    assert_eq!(a.role.unwrap().name, "clt");
    assert_eq!(a.election_id, Some(p4::Uint128 { high: 1, low: 2 }));
    assert_eq!(
        a.status.map(|s| (s.code, s.message)),
        Some((6, "backup".into()))
    );

    // Received: a failed Write's details, through the decoder the controller uses.
    let status = tonic::Status::with_details(
        tonic::Code::Unknown,
        "write failed",
        m["write_status"].clone().into(),
    );
    let errors = per_update_errors(&status).unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(
        (
            errors[1].canonical_code,
            errors[1].message.as_str(),
            errors[1].code
        ),
        (6, "exists", 7)
    );
    assert_eq!(errors[1].space, "targetX-psa-vendor1");
    assert_eq!(
        rpc::Status::decode(m["write_status"].as_slice())
            .unwrap()
            .code,
        2
    );

    // Sent: byte-identical encodings.
    let ours = p4::StreamMessageRequest {
        update: Some(p4::stream_message_request::Update::DigestAck(
            p4::DigestListAck {
                digest_id: 0x1700_0001,
                list_id: 77,
            },
        )),
    };
    assert_eq!(ours.encode_to_vec(), m["digest_ack"]);
    let ours = p4::GetForwardingPipelineConfigRequest {
        device_id: 1,
        response_type: p4::get_forwarding_pipeline_config_request::ResponseType::CookieOnly as i32,
    };
    assert_eq!(ours.encode_to_vec(), m["get_cookie"]);

    let mut type_info = cfg::P4TypeInfo::default();
    type_info.structs.insert(
        "clt_digest_t".into(),
        cfg::P4StructTypeSpec {
            members: vec![cfg::p4_struct_type_spec::Member {
                name: "node_data".into(),
                type_spec: Some(cfg::P4DataTypeSpec {
                    type_spec: Some(cfg::p4_data_type_spec::TypeSpec::Bitstring(
                        cfg::P4BitstringLikeTypeSpec {
                            type_spec: Some(cfg::p4_bitstring_like_type_spec::TypeSpec::Bit(
                                cfg::P4BitTypeSpec { bitwidth: 1952 },
                            )),
                            ..Default::default()
                        },
                    )),
                }),
            }],
            ..Default::default()
        },
    );
    let ours = p4::ForwardingPipelineConfig {
        p4info: Some(cfg::P4Info {
            digests: vec![cfg::Digest {
                preamble: None,
                type_spec: Some(cfg::P4DataTypeSpec {
                    type_spec: Some(cfg::p4_data_type_spec::TypeSpec::Struct(cfg::P4NamedType {
                        name: "clt_digest_t".into(),
                    })),
                }),
            }],
            type_info: Some(type_info),
            ..Default::default()
        }),
        p4_device_config: b"{}".to_vec(),
        cookie: Some(p4::forwarding_pipeline_config::Cookie {
            cookie: 0xFEED_FACE_CAFE_BEEF,
        }),
    };
    assert_eq!(ours.encode_to_vec(), m["pipeline_config"]);

    use p4::field_match::{FieldMatchType, Optional, Range, Ternary};
    let ours = p4::WriteRequest {
        device_id: 1,
        role: "clt".into(),
        election_id: Some(p4::Uint128 { high: 0, low: 5 }),
        atomicity: p4::write_request::Atomicity::ContinueOnError as i32,
        updates: vec![
            p4::Update {
                r#type: p4::update::Type::Modify as i32,
                entity: Some(p4::Entity {
                    entity: Some(p4::entity::Entity::DigestEntry(p4::DigestEntry {
                        digest_id: 9,
                        config: Some(p4::digest_entry::Config {
                            max_timeout_ns: 1000,
                            max_list_size: 64,
                            ack_timeout_ns: 1_000_000_000,
                        }),
                    })),
                }),
            },
            p4::Update {
                r#type: p4::update::Type::Insert as i32,
                entity: Some(p4::Entity {
                    entity: Some(p4::entity::Entity::TableEntry(p4::TableEntry {
                        table_id: 0x0200_0001,
                        r#match: vec![
                            p4::FieldMatch {
                                field_id: 2,
                                field_match_type: Some(FieldMatchType::Ternary(Ternary {
                                    value: vec![6],
                                    mask: vec![0xff],
                                })),
                            },
                            p4::FieldMatch {
                                field_id: 3,
                                field_match_type: Some(FieldMatchType::Range(Range {
                                    low: vec![1],
                                    high: vec![],
                                })),
                            },
                            p4::FieldMatch {
                                field_id: 4,
                                field_match_type: Some(FieldMatchType::Optional(Optional {
                                    value: vec![2],
                                })),
                            },
                        ],
                        priority: 10,
                        action: Some(p4::TableAction {
                            r#type: Some(p4::table_action::Type::Action(p4::Action {
                                action_id: 0x0100_0002,
                                params: vec![p4::action::Param {
                                    param_id: 1,
                                    value: vec![1],
                                }],
                            })),
                        }),
                        ..Default::default()
                    })),
                }),
            },
        ],
        ..Default::default()
    };
    assert_eq!(ours.encode_to_vec(), m["write_request"]);
}
