//! The wire layout of one domain's Hop-by-Hop header, as this backend parses,
//! inserts and fills it.
//!
//! ```text
//!  plain IOAM (what a switch inserts):
//!   NH | HEL | PadN(2)                     the IOAM option starts at 4n
//!   0x31 | len | reserved | 0 (prealloc)   IOAM option header (RFC 9486)
//!   Namespace | NodeLen Flags RemLen | Type | Rsvd   trace header (RFC 9197)
//!   node data: max_hops entries of per-hop bytes
//!   PadN(4) when the node data is 8n+4 bytes: the header is 8n bytes
//!  with the request's ids (what the CLT socket API writes, clt-wire's layout):
//!   NH | HEL | 0x1E | 24 | trace id (16) | span id (8)
//!   then the IOAM option at offset 28, node data, PadN(4) as above
//! ```

use crate::ir::{Domain, Fabric, Node};
use clt_wire::TraceField;

/// Where a node-data field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSource {
    /// The packet's hop limit as it leaves this hop.
    HopLimit,
    /// The node's 24-bit id (`NODE_ID`).
    NodeId,
    /// The node's 56-bit id (`NODE_ID_WIDE`).
    NodeIdWide,
    IngressIf,
    EgressIf,
    /// The 16-bit interface id, zero-extended to 32 bits.
    IngressIfWide,
    EgressIfWide,
    TsSecs,
    TsFrac,
    TransitDelay,
    QueueDepth,
    /// All-ones: the switch cannot supply the field (as Linux does).
    Unavailable,
    /// A constant known at compile time (opaque state snapshot).
    Const(Vec<u8>),
}

/// One field of a node-data entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeField {
    /// The field's name in the generated header type.
    pub name: &'static str,
    pub bits: u32,
    pub source: FieldSource,
}

/// One domain of a P4 node, with everything the generator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainLayout {
    /// `d0`, `d1`, ...: the prefix of generated names.
    pub tag: String,
    /// The value of `meta.domain` for this domain (1-based).
    pub number: u8,
    pub name: String,
    pub namespace: u16,
    /// The 24-bit trace type.
    pub trace_type: u32,
    /// NodeLen (4-byte units of the fixed fields).
    pub node_len: u8,
    /// 4-byte units one hop writes (NodeLen plus the opaque state snapshot).
    pub per_hop_words: u8,
    pub max_hops: u8,
    pub fields: Vec<NodeField>,
}

impl DomainLayout {
    /// Bytes of pre-allocated node data.
    pub fn data_len(&self) -> u32 {
        u32::from(self.max_hops) * u32::from(self.per_hop_words) * 4
    }

    /// The IOAM option's Opt Data Len: reserved, IOAM type, trace header, data.
    pub fn ioam_opt_len(&self) -> u32 {
        2 + 8 + self.data_len()
    }

    /// Bytes of padding after the node data (0 or 4), in both layouts.
    pub fn tail_pad(&self) -> u32 {
        if self.data_len() % 8 == 4 { 4 } else { 0 }
    }

    /// Total Hop-by-Hop header bytes of plain IOAM.
    pub fn hbh_len_plain(&self) -> u32 {
        16 + self.data_len() + self.tail_pad()
    }

    /// Total Hop-by-Hop header bytes with the CLT option first.
    pub fn hbh_len_clt(&self) -> u32 {
        40 + self.data_len() + self.tail_pad()
    }

    /// Hdr Ext Len of a header of `len` bytes.
    pub fn hdr_ext_len(len: u32) -> u32 {
        len / 8 - 1
    }

    /// Bits of one entry.
    pub fn entry_bits(&self) -> u32 {
        self.fields.iter().map(|f| f.bits).sum()
    }

    /// The entry fields only a Tofino's egress knows (queue depth, transit
    /// delay): on TNA, ingress fills the entry and egress writes these.
    pub fn egress_fields(&self) -> impl Iterator<Item = &NodeField> {
        self.fields.iter().filter(|f| {
            matches!(
                f.source,
                FieldSource::QueueDepth | FieldSource::TransitDelay
            )
        })
    }

    /// Whether the trace has a field only a Tofino's egress knows.
    pub fn fills_in_egress(&self) -> bool {
        self.egress_fields().next().is_some()
    }

    /// Whether egress writes a transit delay (and needs ingress's timestamp).
    fn has_transit_delay(&self) -> bool {
        self.fields
            .iter()
            .any(|f| f.source == FieldSource::TransitDelay)
    }

    /// TNA: the bytes Tofino 1's egress parser reads to reach the end of
    /// entry `entry` (0: the first in wire order) of this domain
    /// ([`tna_egress_depth`]).
    pub fn tna_egress_depth(&self, clt: bool, entry: u32) -> u32 {
        tna_egress_depth(self.entry_bits() / 8, self.has_transit_delay(), clt, entry)
    }

    /// TNA: how many entries egress completes ([`tna_egress_entries`]).
    pub fn tna_egress_entries(&self, clt: bool) -> u8 {
        tna_egress_entries(
            self.entry_bits() / 8,
            self.max_hops,
            self.has_transit_delay(),
            clt,
        )
    }
}

/// TNA: the bytes Tofino 1's egress parser reads to reach the end of entry
/// `entry` (0: the first in wire order) of `entry_bytes`-byte entries, in
/// the plain (`clt` false) or CLT layout: the egress intrinsic metadata, the
/// bridge header (and the ingress timestamp for a transit delay,
/// `tstamp`), Ethernet, IPv6 and the Hop-by-Hop header up to that entry.
pub fn tna_egress_depth(entry_bytes: u32, tstamp: bool, clt: bool, entry: u32) -> u32 {
    let hbh = if clt { 40 } else { 16 };
    TNA_EG_INTR_MD_BYTES
        + TNA_BRIDGE_BYTES
        + if tstamp { TNA_TSTAMP_BYTES } else { 0 }
        + 14
        + 40
        + hbh
        + (entry + 1) * entry_bytes
}

/// TNA: how many of `max_hops` entries, from the first in wire order,
/// Tofino 1's egress parser reaches ([`TNA_MAX_EGRESS_PARSE_DEPTH`]).
/// Egress writes the queue depth and transit delay only into these; a
/// deeper entry (one filled by an earlier hop) keeps ingress's all-ones.
pub fn tna_egress_entries(entry_bytes: u32, max_hops: u8, tstamp: bool, clt: bool) -> u8 {
    let reached = (0..max_hops)
        .take_while(|&i| {
            tna_egress_depth(entry_bytes, tstamp, clt, u32::from(i)) <= TNA_MAX_EGRESS_PARSE_DEPTH
        })
        .count();
    u8::try_from(reached).unwrap_or(u8::MAX)
}

/// Tofino 1's egress parser reads at most 160 bytes of a packet (bf-p4c
/// `parde_spec.h`, `maxParseDepth(EGRESS)`): the intrinsic metadata and the
/// bridge header count.
pub const TNA_MAX_EGRESS_PARSE_DEPTH: u32 = 160;
/// `egress_intrinsic_metadata_t` (tofino1_base.p4): 216 bits.
pub const TNA_EG_INTR_MD_BYTES: u32 = 27;
/// `tna_bridge_h` (p4src/tna/clt.p4): domain, entry, layout.
pub const TNA_BRIDGE_BYTES: u32 = 2;
/// `tna_tstamp_h`: the low 32 bits of ingress's `global_tstamp`.
pub const TNA_TSTAMP_BYTES: u32 = 4;

/// The layouts of every domain `node` takes part in, in the node's order.
pub fn domains_of(fabric: &Fabric, node: &Node) -> Vec<DomainLayout> {
    node.domains
        .iter()
        .enumerate()
        .map(|(i, d)| layout(fabric.domain(*d), i))
        .collect()
}

/// The node-data fields of `domain`, in wire order.
pub fn layout(domain: &Domain, index: usize) -> DomainLayout {
    let mut fields = Vec::new();
    for field in domain.trace_type.fields() {
        fields.extend(node_fields(field, domain));
    }
    let bits: u32 = fields.iter().map(|f| f.bits).sum();
    DomainLayout {
        tag: format!("d{index}"),
        number: u8::try_from(index + 1).unwrap_or(u8::MAX),
        name: domain.name.clone(),
        namespace: domain.namespace,
        trace_type: domain.trace_type.bits(),
        node_len: domain.trace_type.node_len(),
        per_hop_words: u8::try_from(bits / 32).unwrap_or(u8::MAX),
        max_hops: domain.max_hops,
        fields,
    }
}

fn field(name: &'static str, bits: u32, source: FieldSource) -> NodeField {
    NodeField { name, bits, source }
}

/// What one trace field adds to an entry; mirrors Linux's
/// `__ioam6_fill_trace_data` (net/ipv6/ioam6.c) field by field.
fn node_fields(f: TraceField, domain: &Domain) -> Vec<NodeField> {
    use FieldSource::*;
    match f {
        TraceField::HopLimitNodeId => {
            vec![
                field("hop_limit", 8, HopLimit),
                field("node_id", 24, NodeId),
            ]
        }
        TraceField::InterfaceIds => vec![
            field("ingress_if", 16, IngressIf),
            field("egress_if", 16, EgressIf),
        ],
        TraceField::TimestampSecs => vec![field("ts_secs", 32, TsSecs)],
        TraceField::TimestampFrac => vec![field("ts_frac", 32, TsFrac)],
        TraceField::TransitDelay => vec![field("transit_delay", 32, TransitDelay)],
        // Linux writes the namespace's data, all-ones when none is set.
        TraceField::NamespaceData => vec![field(
            "ns_data",
            32,
            domain
                .namespace_data
                .map_or(Unavailable, |v| Const(v.to_be_bytes().to_vec())),
        )],
        TraceField::QueueDepth => vec![field("queue_depth", 32, QueueDepth)],
        TraceField::ChecksumComplement => vec![field("csum_comp", 32, Unavailable)],
        TraceField::HopLimitNodeIdWide => vec![
            field("hop_limit_wide", 8, HopLimit),
            field("node_id_wide", 56, NodeIdWide),
        ],
        TraceField::InterfaceIdsWide => vec![
            field("ingress_if_wide", 32, IngressIfWide),
            field("egress_if_wide", 32, EgressIfWide),
        ],
        TraceField::NamespaceDataWide => vec![field(
            "ns_data_wide",
            64,
            domain
                .namespace_data_wide
                .map_or(Unavailable, |v| Const(v.to_be_bytes().to_vec())),
        )],
        TraceField::BufferOccupancy => vec![field("buffer_occupancy", 32, Unavailable)],
        TraceField::OpaqueState => opaque_state(domain),
    }
}

/// The opaque state snapshot: Length (4-byte units), Schema ID, data. Without a
/// schema Linux writes one word, 0x00ffffff.
fn opaque_state(domain: &Domain) -> Vec<NodeField> {
    match &domain.schema {
        None => vec![
            field("oss_len", 8, FieldSource::Const(vec![0])),
            field("oss_schema", 24, FieldSource::Const(vec![0xff, 0xff, 0xff])),
        ],
        Some(schema) => {
            let words = schema.data.len() / 4;
            let id = schema.id.to_be_bytes();
            let mut fields = vec![
                field(
                    "oss_len",
                    8,
                    FieldSource::Const(vec![u8::try_from(words).unwrap_or(u8::MAX)]),
                ),
                field("oss_schema", 24, FieldSource::Const(id[1..].to_vec())),
            ];
            if !schema.data.is_empty() {
                let bits = u32::try_from(schema.data.len() * 8).unwrap_or(u32::MAX);
                fields.push(field(
                    "oss_data",
                    bits,
                    FieldSource::Const(schema.data.clone()),
                ));
            }
            fields
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clt_wire::TraceType;

    /// A domain of the given fields, from a compiled one (so new IR fields
    /// need no change here).
    fn domain(fields: &[TraceField], max_hops: u8) -> Domain {
        const SRC: &str =
            "domain d { namespace 123 trace hop_limit_node_id collector 127.0.0.1:1 }";
        let base = crate::compile_source("d.clt", SRC)
            .map(|c| c.fabric.domains[0].clone())
            .unwrap_or_else(|d| panic!("{}", d.render("d.clt", SRC)));
        let trace_type = TraceType::from_fields(fields.iter().copied());
        Domain {
            trace_type,
            node_len: trace_type.node_len(),
            max_hops,
            schema: None,
            prealloc_len: max_hops * trace_type.node_len() * 4,
            per_hop_len: trace_type.node_len() * 4,
            ..base
        }
    }

    #[test]
    fn login_domain_sizes() {
        use TraceField::*;
        let l = layout(&domain(&[HopLimitNodeId, InterfaceIds, QueueDepth], 3), 0);
        assert_eq!(l.entry_bits(), 96);
        assert_eq!(l.data_len(), 36);
        assert_eq!(l.ioam_opt_len(), 46);
        // 16 + 36 = 52, padded with PadN(4) to 56.
        assert_eq!(l.hbh_len_plain(), 56);
        // 2 + 26 (CLT) + 4 + 8 + 36 = 76, padded with PadN(4) to 80.
        assert_eq!(l.hbh_len_clt(), 80);
        assert_eq!(DomainLayout::hdr_ext_len(80), 9);
    }

    #[test]
    fn every_layout_is_a_multiple_of_eight() {
        use TraceField::*;
        for hops in 1..=20 {
            for fields in [&[HopLimitNodeId][..], &[HopLimitNodeId, InterfaceIds][..]] {
                let l = layout(&domain(fields, hops), 0);
                assert_eq!(l.hbh_len_plain() % 8, 0);
                assert_eq!(l.hbh_len_clt() % 8, 0);
            }
        }
    }

    #[test]
    fn opaque_state_without_schema_is_one_word() {
        use TraceField::*;
        let l = layout(&domain(&[HopLimitNodeId, OpaqueState], 2), 0);
        assert_eq!(l.node_len, 1);
        assert_eq!(l.per_hop_words, 2);
    }

    #[test]
    fn tofino_egress_reaches_the_entries_within_160_bytes() {
        use TraceField::*;
        // The leaf-spine `prod` domain: 5 entries of 12 bytes, queue depth.
        let prod = layout(&domain(&[HopLimitNodeId, InterfaceIds, QueueDepth], 5), 0);
        assert!(prod.fills_in_egress());
        // 27 + 2 + 14 + 40 + 16 + 5 x 12: the last entry, plain, just fits.
        assert_eq!(prod.tna_egress_depth(false, 4), 159);
        assert_eq!(prod.tna_egress_entries(false), 5);
        // With the CLT option (24 bytes more): 3 entries.
        assert_eq!(prod.tna_egress_depth(true, 2), 159);
        assert_eq!(prod.tna_egress_depth(true, 3), 171);
        assert_eq!(prod.tna_egress_entries(true), 3);
        // A transit delay adds the 4-byte ingress timestamp.
        let delay = layout(&domain(&[HopLimitNodeId, InterfaceIds, TransitDelay], 5), 0);
        assert_eq!(delay.tna_egress_depth(false, 4), 163);
        assert_eq!(delay.tna_egress_entries(false), 4);
        // Nothing for egress: ingress fills the whole entry.
        let ids = layout(&domain(&[HopLimitNodeId, InterfaceIds], 5), 0);
        assert!(!ids.fills_in_egress());
    }
}
