//! Compiled inputs of one P4 device: the P4Info and the table entries in
//! protobuf text format (as `cltc compile` writes them), the program and the
//! target's device config (bmv2's JSON from p4c-bm2-ss).
//!
//! Text format is parsed with `prost-reflect` against the descriptor set
//! generated with the code, then transcoded into the prost types: no
//! hand-written parser, and the same field names as p4c and p4runtime-shell.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::proto::p4::config::v1 as cfg;
use crate::proto::p4::v1 as p4;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The descriptor set is generated and checked with the code (see
        // proto/tests/p4runtime_code_is_fresh.rs), so decoding cannot fail
        // unless the build itself is broken.
        #[allow(clippy::expect_used)]
        DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the generated P4Runtime descriptor set decodes")
    })
}

fn parse_text<T: prost::Message + Default>(message: &str, what: &str, text: &str) -> Result<T> {
    let desc = pool()
        .get_message_by_name(message)
        .ok_or_else(|| Error::TextFormat {
            what: what.to_string(),
            message: format!("unknown message {message}"),
        })?;
    let dynamic = DynamicMessage::parse_text_format(desc, text).map_err(|e| Error::TextFormat {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    dynamic.transcode_to::<T>().map_err(|e| Error::TextFormat {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// Prints a message in protobuf text format (for `--dry-run` and logs).
pub fn to_text<T: prost::Message>(message_name: &str, msg: &T) -> Result<String> {
    let desc = pool()
        .get_message_by_name(message_name)
        .ok_or_else(|| Error::TextFormat {
            what: message_name.to_string(),
            message: "unknown message".to_string(),
        })?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()).map_err(|e| {
        Error::TextFormat {
            what: message_name.to_string(),
            message: e.to_string(),
        }
    })?;
    Ok(dynamic.to_text_format())
}

/// Parses a P4Info in text format.
pub fn parse_p4info(text: &str, what: &str) -> Result<cfg::P4Info> {
    parse_text("p4.config.v1.P4Info", what, text)
}

/// The desired state of a device's entities, as compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entries {
    pub tables: Vec<p4::TableEntry>,
    /// Digest configurations (`digest_entry`), written after the pipeline.
    pub digests: Vec<p4::DigestEntry>,
}

/// Parses entries in P4Runtime text format: a `WriteRequest`-like list of
/// `updates { type: INSERT entity { table_entry { ... } } }` (and
/// `digest_entry`). Only INSERT (or no type) is accepted: the file describes
/// a state, and the controller works out the updates.
pub fn parse_entries(text: &str, what: &str) -> Result<Entries> {
    let request: p4::WriteRequest = parse_text("p4.v1.WriteRequest", what, text)?;
    let mut entries = Entries::default();
    for (i, update) in request.updates.into_iter().enumerate() {
        let ty = p4::update::Type::try_from(update.r#type).unwrap_or(p4::update::Type::Unspecified);
        if !matches!(ty, p4::update::Type::Insert | p4::update::Type::Unspecified) {
            return Err(Error::Entry {
                entry: format!("{what}: update {i}"),
                reason: format!(
                    "type {} (only INSERT describes a desired state)",
                    ty.as_str_name()
                ),
            });
        }
        match update.entity.and_then(|e| e.entity) {
            Some(p4::entity::Entity::TableEntry(t)) => entries.tables.push(t),
            Some(p4::entity::Entity::DigestEntry(d)) => entries.digests.push(d),
            other => {
                return Err(Error::Entry {
                    entry: format!("{what}: update {i}"),
                    reason: format!(
                        "unsupported entity: {}",
                        other.map_or("empty".to_string(), |o| format!("{o:?}"))
                    ),
                });
            }
        }
    }
    Ok(entries)
}

/// The pipeline to push: P4Info, device config and the cookie naming them.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub p4info: cfg::P4Info,
    pub device_config: Vec<u8>,
    pub cookie: u64,
}

/// The cookie: the first 8 bytes of SHA-256 over the program, the P4Info (as
/// encoded protobuf, deterministically: see [`p4info_bytes`]) and the device
/// config, each prefixed by its length. A recompiled program, a changed
/// P4Info or a new p4c output all change it; loading the same files again
/// never does.
pub fn cookie(program: &[u8], p4info: &cfg::P4Info, device_config: &[u8]) -> u64 {
    let mut h = Sha256::new();
    for part in [program, &p4info_bytes(p4info), device_config] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The P4Info encoded with its `type_info` maps in key order. prost keeps
/// protobuf maps in `HashMap`s, whose encoding order changes from one load to
/// the next; hashed as is, the same files would give a new cookie (and a
/// pipeline push that clears the switch) almost every time.
fn p4info_bytes(p4info: &cfg::P4Info) -> Vec<u8> {
    use prost::Message as _;
    let mut rest = p4info.clone();
    let Some(t) = rest.type_info.take() else {
        return rest.encode_to_vec();
    };
    let mut out = rest.encode_to_vec();
    // Each map entry encoded alone, in field then key order: the bytes a
    // deterministic protobuf serializer writes.
    macro_rules! sorted {
        ($($field:ident),*) => {$(
            let mut keys: Vec<&String> = t.$field.keys().collect();
            keys.sort();
            for k in keys {
                let mut one = cfg::P4TypeInfo::default();
                one.$field.insert(k.clone(), t.$field[k].clone());
                out.extend(one.encode_to_vec());
            }
        )*};
    }
    sorted!(structs, headers, header_unions, enums);
    out.extend(
        cfg::P4TypeInfo {
            error: t.error.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    sorted!(serializable_enums, new_types);
    out
}

/// Where one device's compiled files are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct InputPaths {
    /// P4Info in text format (`<node>.p4info.txtpb`).
    pub p4info: PathBuf,
    /// Table entries in P4Runtime text format (`<node>.entries.txtpb`).
    pub entries: PathBuf,
    /// The target's device config (bmv2: the JSON of p4c-bm2-ss).
    pub device_config: PathBuf,
    /// The P4 program (`<node>.p4`); only hashed into the cookie.
    #[serde(default)]
    pub program: Option<PathBuf>,
}

/// Everything the controller installs on one device.
#[derive(Debug, Clone)]
pub struct DeviceInputs {
    pub pipeline: Pipeline,
    /// The table entries to reconcile.
    pub entries: Vec<p4::TableEntry>,
    /// Digest configurations from the compiled entries.
    pub digests: Vec<p4::DigestEntry>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|e| Error::TextFormat {
        what: path.display().to_string(),
        message: e.to_string(),
    })
}

impl DeviceInputs {
    pub fn load(paths: &InputPaths) -> Result<DeviceInputs> {
        let p4info = parse_p4info(
            &read_text(&paths.p4info)?,
            &paths.p4info.display().to_string(),
        )?;
        let Entries { tables, digests } = parse_entries(
            &read_text(&paths.entries)?,
            &paths.entries.display().to_string(),
        )?;
        let device_config = read(&paths.device_config)?;
        let program = match &paths.program {
            Some(p) => read(p)?,
            None => Vec::new(),
        };
        let cookie = cookie(&program, &p4info, &device_config);
        Ok(DeviceInputs {
            pipeline: Pipeline {
                p4info,
                device_config,
                cookie,
            },
            entries: tables,
            digests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P4INFO: &str = r#"
# a comment
pkg_info { arch: "v1model" }
tables {
  preamble { id: 33554433 name: "ingress.t" alias: "t" }
  match_fields { id: 1 name: "dst" bitwidth: 128 match_type: LPM }
  action_refs { id: 16777217 }
  size: 1024
}
actions {
  preamble { id: 16777217 name: "ingress.fwd" alias: "fwd" }
  params { id: 1 name: "port" bitwidth: 9 }
}
"#;

    const ENTRIES: &str = r#"
device_id: 1
updates {
  type: INSERT
  entity {
    table_entry {
      table_id: 33554433
      match { field_id: 1 lpm { value: "\x20\x01\x0d\xb8" prefix_len: 32 } }
      action { action { action_id: 16777217 params { param_id: 1 value: "\x01" } } }
    }
  }
}
updates {
  type: INSERT
  entity { digest_entry { digest_id: 385875969 config { max_list_size: 1 } } }
}
"#;

    #[test]
    fn text_format_parses_into_the_prost_types() {
        let info = parse_p4info(P4INFO, "p4info").unwrap();
        assert_eq!(info.pkg_info.unwrap().arch, "v1model");
        assert_eq!(info.tables[0].match_fields[0].bitwidth, 128);
        let entries = parse_entries(ENTRIES, "entries").unwrap();
        assert_eq!(entries.tables.len(), 1);
        let Some(p4::field_match::FieldMatchType::Lpm(lpm)) =
            &entries.tables[0].r#match[0].field_match_type
        else {
            panic!("not lpm")
        };
        assert_eq!(
            (lpm.value.as_slice(), lpm.prefix_len),
            (&[0x20, 0x01, 0x0d, 0xb8][..], 32)
        );
        assert_eq!(entries.digests[0].config.unwrap().max_list_size, 1);
        // And back: the printer writes what the parser reads.
        let text = to_text(
            "p4.config.v1.P4Info",
            &parse_p4info(P4INFO, "p4info").unwrap(),
        )
        .unwrap();
        assert_eq!(
            parse_p4info(&text, "again").unwrap(),
            parse_p4info(P4INFO, "p4info").unwrap()
        );
    }

    #[test]
    fn bad_text_is_a_clear_error() {
        let err = parse_p4info("tables { preamble { id: \"x\" } }", "r1/p4info.txtpb").unwrap_err();
        assert!(matches!(err, Error::TextFormat { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("r1/p4info.txtpb: invalid text format"),
            "{err}"
        );
        let err = parse_p4info("no_such_field: 1", "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_field"), "{err}");
    }

    #[test]
    fn entries_describe_a_state_only() {
        let err =
            parse_entries(&ENTRIES.replacen("type: INSERT", "type: DELETE", 1), "e").unwrap_err();
        assert!(err.to_string().contains("only INSERT"), "{err}");
        let err = parse_entries(
            "updates { type: INSERT entity { counter_entry { counter_id: 1 } } }",
            "e",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unsupported entity"), "{err}");
    }

    #[test]
    fn the_cookie_does_not_depend_on_map_order() {
        let mut info = cfg::P4Info::default();
        let mut t = cfg::P4TypeInfo::default();
        for i in 0..32 {
            t.structs
                .insert(format!("s{i}"), cfg::P4StructTypeSpec::default());
        }
        info.type_info = Some(t);
        let base = cookie(b"prog", &info, b"json");
        for _ in 0..16 {
            // A new HashMap each time: a new random iteration order.
            let copy: cfg::P4Info =
                prost::Message::decode(prost::Message::encode_to_vec(&info).as_slice()).unwrap();
            assert_eq!(cookie(b"prog", &copy, b"json"), base);
        }
    }

    #[test]
    fn the_cookie_covers_program_p4info_and_device_config() {
        let info = parse_p4info(P4INFO, "p4info").unwrap();
        let base = cookie(b"prog", &info, b"json");
        assert_eq!(base, cookie(b"prog", &info, b"json"));
        assert_ne!(base, cookie(b"prog2", &info, b"json"));
        assert_ne!(base, cookie(b"prog", &info, b"json2"));
        assert_ne!(base, cookie(b"prog", &cfg::P4Info::default(), b"json"));
        // Length prefixes: moving a byte between parts changes the cookie.
        assert_ne!(cookie(b"ab", &info, b"c"), cookie(b"a", &info, b"bc"));
    }

    #[test]
    fn missing_files_name_the_path() {
        let paths = InputPaths {
            p4info: "/nonexistent/p4info.txtpb".into(),
            entries: "/nonexistent/entries.txtpb".into(),
            device_config: "/nonexistent/program.json".into(),
            program: None,
        };
        let err = DeviceInputs::load(&paths).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/p4info.txtpb"), "{err}");
    }
}
