//! Digests: the switch's report of a trace it removed at the domain's edge.
//!
//! The program's digest is a struct (described in the P4Info's type info)
//! whose members are recognised by name:
//!
//! | member | meaning |
//! | --- | --- |
//! | `namespace_id` (or `namespace`) | IOAM-Namespace-ID (16 bits) |
//! | `trace_type` | IOAM-Trace-Type (24 bits; a 32-bit member is the wire word, type << 8) |
//! | `rem_len` (optional) | RemainingLen in 4-byte units: the filled entries start at `rem_len * 4` |
//! | `flags` (optional) | the trace flags (bit 0 of 4 = overflow) |
//! | `node_data` (or `data`) | the pre-allocated node data, as in the packet |
//! | `trace_id` (128 bits) or `trace_id_high` + `trace_id_low` | CLT trace id |
//! | `span_id` | CLT span id |
//!
//! Other members are ignored. P4Runtime sends bitstrings in their shortest
//! form, so each is left-padded back to its declared width before use. Node
//! entries are decoded with `clt-wire`'s [`NodeRepr`], exactly as the agent
//! decodes a Linux sink's trace.

use clt_proto::ioam_api::{IoamNode, IoamTrace, Opaque};
use clt_wire::{NodeRepr, TraceType};

use crate::error::{Error, Result};
use crate::p4info::P4InfoIndex;
use crate::proto::p4::config::v1 as cfg;
use crate::proto::p4::v1 as p4;
use cfg::p4_data_type_spec::TypeSpec;

/// What one member of the digest struct is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Namespace,
    TraceType,
    RemLen,
    Flags,
    NodeData,
    TraceId,
    TraceIdHigh,
    TraceIdLow,
    SpanId,
    Ignored,
}

fn role_of(name: &str) -> Role {
    let base = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    match base.as_str() {
        "namespace_id" | "namespace" | "ns_id" => Role::Namespace,
        "trace_type" => Role::TraceType,
        "rem_len" | "remaining_len" => Role::RemLen,
        "flags" => Role::Flags,
        "node_data" | "data" | "trace_data" => Role::NodeData,
        "trace_id" => Role::TraceId,
        "trace_id_high" | "trace_id_hi" => Role::TraceIdHigh,
        "trace_id_low" | "trace_id_lo" => Role::TraceIdLow,
        "span_id" => Role::SpanId,
        _ => Role::Ignored,
    }
}

/// How to read the program's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestLayout {
    pub digest_id: u32,
    pub name: String,
    /// (role, bit width) per struct member, in order.
    members: Vec<(Role, u32)>,
}

/// A decoded digest: the trace and what was dropped on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedDigest {
    pub trace: IoamTrace,
    /// Set when the trace overflowed (some hops could not write).
    pub overflow: bool,
}

impl DigestLayout {
    /// The program's IOAM digests (one per IOAM domain): the digests whose
    /// struct has a `node_data` member. Other digests are left alone.
    pub fn all(info: &P4InfoIndex) -> Result<Vec<DigestLayout>> {
        let mut out = Vec::new();
        for d in &info.p4info().digests {
            let Some(preamble) = &d.preamble else {
                continue;
            };
            let Some(TypeSpec::Struct(named)) =
                d.type_spec.as_ref().and_then(|t| t.type_spec.as_ref())
            else {
                continue;
            };
            let Some(st) = info
                .p4info()
                .type_info
                .as_ref()
                .and_then(|ti| ti.structs.get(&named.name))
            else {
                return Err(Error::P4Info(format!(
                    "digest {} uses struct {} missing from type_info",
                    preamble.name, named.name
                )));
            };
            let mut members = Vec::with_capacity(st.members.len());
            for m in &st.members {
                let width = match m.type_spec.as_ref().and_then(|t| t.type_spec.as_ref()) {
                    Some(TypeSpec::Bitstring(b)) => match &b.type_spec {
                        Some(cfg::p4_bitstring_like_type_spec::TypeSpec::Bit(b)) => b.bitwidth,
                        Some(cfg::p4_bitstring_like_type_spec::TypeSpec::Int(i)) => i.bitwidth,
                        Some(cfg::p4_bitstring_like_type_spec::TypeSpec::Varbit(v)) => {
                            v.max_bitwidth
                        }
                        None => 0,
                    },
                    _ => 0,
                };
                members.push((role_of(&m.name), u32::try_from(width).unwrap_or(0)));
            }
            if !members.iter().any(|(r, _)| *r == Role::NodeData) {
                continue;
            }
            for needed in [Role::Namespace, Role::TraceType] {
                if !members.iter().any(|(r, _)| *r == needed) {
                    return Err(Error::P4Info(format!(
                        "digest {} has node data but no {needed:?} member",
                        preamble.name
                    )));
                }
            }
            out.push(DigestLayout {
                digest_id: preamble.id,
                name: preamble.name.clone(),
                members,
            });
        }
        Ok(out)
    }

    /// Decodes one digest (one element of a DigestList's `data`).
    pub fn decode(&self, data: &p4::P4Data) -> Result<DecodedDigest> {
        let Some(p4::p4_data::Data::Struct(st)) = &data.data else {
            return Err(Error::Digest("not a struct".to_string()));
        };
        if st.members.len() != self.members.len() {
            return Err(Error::Digest(format!(
                "{} members, the P4Info says {}",
                st.members.len(),
                self.members.len()
            )));
        }
        let mut namespace = 0u64;
        let mut trace_type_raw = 0u64;
        let mut trace_type_width = 24;
        let mut rem_len: Option<u64> = None;
        let mut flags = 0u64;
        let mut node_data: Vec<u8> = Vec::new();
        let mut trace_id: u128 = 0;
        let mut span_id = 0u64;
        for ((role, width), value) in self.members.iter().zip(&st.members) {
            if *role == Role::Ignored {
                continue;
            }
            let Some(p4::p4_data::Data::Bitstring(bytes)) = &value.data else {
                return Err(Error::Digest(format!("{role:?} is not a bitstring")));
            };
            let padded = pad(bytes, *width).ok_or_else(|| {
                Error::Digest(format!(
                    "{role:?}: {} bytes exceed {width} bits",
                    bytes.len()
                ))
            })?;
            match role {
                Role::NodeData => node_data = padded,
                Role::TraceId => trace_id = to_u128(&padded)?,
                _ => {
                    let v = to_u64(&padded)
                        .ok_or_else(|| Error::Digest(format!("{role:?} wider than 64 bits")))?;
                    match role {
                        Role::Namespace => namespace = v,
                        Role::TraceType => {
                            trace_type_raw = v;
                            trace_type_width = *width;
                        }
                        Role::RemLen => rem_len = Some(v),
                        Role::Flags => flags = v,
                        Role::TraceIdHigh => trace_id |= u128::from(v) << 64,
                        Role::TraceIdLow => trace_id |= u128::from(v),
                        Role::SpanId => span_id = v,
                        _ => {}
                    }
                }
            }
        }
        let bits = if trace_type_width > 24 {
            (trace_type_raw >> 8) as u32
        } else {
            trace_type_raw as u32
        };
        let trace_type = TraceType::from_bits(bits);
        let start = rem_len.map_or(0, |r| (r as usize).saturating_mul(4));
        if start > node_data.len() {
            return Err(Error::Digest(format!(
                "rem_len {} points past {} bytes of node data",
                rem_len.unwrap_or(0),
                node_data.len()
            )));
        }
        let nodes = decode_nodes(trace_type, &node_data[start..])?;
        Ok(DecodedDigest {
            trace: IoamTrace {
                trace_id_high: (trace_id >> 64) as u64,
                trace_id_low: trace_id as u64,
                span_id,
                namespace_id: namespace as u32,
                bit_field: trace_type.bits() << 8,
                nodes,
            },
            overflow: flags & 0x8 != 0,
        })
    }
}

/// Left-pads a shortest-form bitstring to `width` bits.
fn pad(bytes: &[u8], width: u32) -> Option<Vec<u8>> {
    let len = (width as usize).div_ceil(8);
    let stripped = crate::p4info::strip_leading_zeros(bytes);
    if width == 0 {
        return Some(stripped.to_vec());
    }
    if stripped.len() > len {
        return None;
    }
    let mut out = vec![0u8; len];
    out[len - stripped.len()..].copy_from_slice(stripped);
    Some(out)
}

fn to_u64(b: &[u8]) -> Option<u64> {
    let s = crate::p4info::strip_leading_zeros(b);
    (s.len() <= 8).then(|| s.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

fn to_u128(b: &[u8]) -> Result<u128> {
    let s = crate::p4info::strip_leading_zeros(b);
    if s.len() > 16 {
        return Err(Error::Digest("trace id wider than 128 bits".to_string()));
    }
    Ok(s.iter().fold(0u128, |acc, &x| (acc << 8) | u128::from(x)))
}

/// Decodes the filled entries (the last hop's first, as in the packet) and
/// returns them in path order (the first hop's first), like the agent.
pub fn decode_nodes(trace_type: TraceType, mut data: &[u8]) -> Result<Vec<IoamNode>> {
    let mut nodes = Vec::new();
    while !data.is_empty() {
        let (node, len) = NodeRepr::parse(trace_type, data)
            .map_err(|e| Error::Digest(format!("node {}: {e}", nodes.len())))?;
        if len == 0 {
            break;
        }
        nodes.push(to_ioam_node(&node));
        data = &data[len.min(data.len())..];
    }
    nodes.reverse();
    Ok(nodes)
}

/// The API's view of one node entry.
pub fn to_ioam_node(n: &NodeRepr<'_>) -> IoamNode {
    let mut out = IoamNode::default();
    if let Some(h) = n.hop_limit_node_id {
        out.hop_limit = u32::from(h.hop_limit);
        out.id = h.node_id;
    }
    if let Some(i) = n.interface_ids {
        out.ingress_id = u32::from(i.ingress);
        out.egress_id = u32::from(i.egress);
    }
    out.timestamp_secs = n.timestamp_secs.unwrap_or(0);
    out.timestamp_frac = n.timestamp_frac.unwrap_or(0);
    out.transit_delay = n.transit_delay.unwrap_or(0);
    out.queue_depth = n.queue_depth.unwrap_or(0);
    out.csum_comp = n.checksum_complement.unwrap_or(0);
    out.buffer_occupancy = n.buffer_occupancy.unwrap_or(0);
    if let Some(d) = n.namespace_data {
        out.namespace_data = d.to_be_bytes().to_vec();
    }
    if let Some(h) = n.hop_limit_node_id_wide {
        out.hop_limit = u32::from(h.hop_limit);
        out.id_wide = h.node_id;
    }
    if let Some(i) = n.interface_ids_wide {
        out.ingress_id_wide = i.ingress;
        out.egress_id_wide = i.egress;
    }
    if let Some(d) = n.namespace_data_wide {
        out.namespace_data_wide = d.to_be_bytes().to_vec();
    }
    if let Some(o) = n.opaque_state {
        out.oss = Some(Opaque {
            schema_id: o.schema_id,
            data: o.data.to_vec(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(members: &[(Role, u32)]) -> DigestLayout {
        DigestLayout {
            digest_id: 1,
            name: "d".into(),
            members: members.to_vec(),
        }
    }

    fn data(values: &[&[u8]]) -> p4::P4Data {
        p4::P4Data {
            data: Some(p4::p4_data::Data::Struct(p4::P4StructLike {
                members: values
                    .iter()
                    .map(|v| p4::P4Data {
                        data: Some(p4::p4_data::Data::Bitstring(v.to_vec())),
                    })
                    .collect(),
            })),
        }
    }

    const BASIC: [(Role, u32); 4] = [
        (Role::Namespace, 16),
        (Role::TraceType, 24),
        (Role::RemLen, 7),
        (Role::NodeData, 64),
    ];

    #[test]
    fn shortest_form_values_are_padded_back_to_their_width() {
        // One entry of trace type 0x800000 (hop limit + node id) in the last
        // 4 of 8 bytes; the leading zero bytes arrive stripped.
        let d = layout(&BASIC)
            .decode(&data(&[&[0x01], &[0x80, 0, 0], &[1], &[0x3f, 0, 0, 5]]))
            .unwrap();
        assert_eq!(d.trace.namespace_id, 1);
        assert_eq!(d.trace.nodes.len(), 1);
        assert_eq!((d.trace.nodes[0].hop_limit, d.trace.nodes[0].id), (0x3f, 5));
    }

    #[test]
    fn malformed_digests_are_errors_not_panics() {
        let l = layout(&BASIC);
        let cases: Vec<p4::P4Data> = vec![
            p4::P4Data::default(),
            data(&[&[1], &[0x80, 0, 0], &[1]]), // member count
            data(&[&[1], &[0x80, 0, 0], &[3], &[1, 2, 3, 4]]), // rem_len past the data
            data(&[&[1], &[0x80, 0, 0], &[0], &[1, 2, 3, 4, 5, 6, 7, 8, 9]]), // wider than 64 bits
            data(&[&[1, 2, 3], &[0x80, 0, 0], &[0], &[1]]), // namespace wider than 16 bits
            data(&[&[1], &[0x00, 0x00, 0x02], &[0], &[0xff; 8]]), // opaque state past the end
        ];
        for (i, c) in cases.iter().enumerate() {
            assert!(
                matches!(l.decode(c), Err(Error::Digest(_))),
                "case {i}: {:?}",
                l.decode(c)
            );
        }
    }

    #[test]
    fn member_names_map_to_roles() {
        assert_eq!(role_of("namespace_id"), Role::Namespace);
        assert_eq!(role_of("hdr.trace_type"), Role::TraceType);
        assert_eq!(role_of("has_context"), Role::Ignored);
        assert_eq!(role_of("NODE_DATA"), Role::NodeData);
    }
}
