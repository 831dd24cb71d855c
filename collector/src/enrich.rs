//! Aggregating a span's IOAM traces per hop and building the network span.
//!
//! Attribute names are documented in `docs/collector.md`; change both together.

use std::borrow::Cow;

use clt_proto::ioam_api::IoamNode;

use crate::model::{AttrValue, Attributes, Flow, IoamReport, OutEvent, OutKind, OutSpan, SpanKey};

/// One aggregated per-hop field: its attribute name, its trace-type bit, its
/// width in bits (for the all-ones "unavailable" marker) and how to read it.
struct FieldDef {
    name: &'static str,
    bit: u8,
    width: u8,
    /// Identifiers are kept even when all-ones; measurements are skipped then.
    ident: bool,
    get: fn(&IoamNode) -> u64,
}

fn bytes_be(b: &[u8]) -> u64 {
    b.iter()
        .take(8)
        .fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

const FIELD_COUNT: usize = 15;

const FIELDS: &[FieldDef; FIELD_COUNT] = &[
    FieldDef {
        name: "hop_limit",
        bit: 0,
        width: 8,
        ident: true,
        get: |n| n.hop_limit.into(),
    },
    FieldDef {
        name: "node_id",
        bit: 0,
        width: 24,
        ident: true,
        get: |n| n.id.into(),
    },
    FieldDef {
        name: "ingress_if_id",
        bit: 1,
        width: 16,
        ident: true,
        get: |n| n.ingress_id.into(),
    },
    FieldDef {
        name: "egress_if_id",
        bit: 1,
        width: 16,
        ident: true,
        get: |n| n.egress_id.into(),
    },
    FieldDef {
        name: "timestamp_secs",
        bit: 2,
        width: 32,
        ident: false,
        get: |n| n.timestamp_secs.into(),
    },
    FieldDef {
        name: "timestamp_frac",
        bit: 3,
        width: 32,
        ident: false,
        get: |n| n.timestamp_frac.into(),
    },
    FieldDef {
        name: "transit_delay",
        bit: 4,
        width: 32,
        ident: false,
        get: |n| n.transit_delay.into(),
    },
    FieldDef {
        name: "namespace_data",
        bit: 5,
        width: 32,
        ident: false,
        get: |n| bytes_be(&n.namespace_data),
    },
    FieldDef {
        name: "queue_depth",
        bit: 6,
        width: 32,
        ident: false,
        get: |n| n.queue_depth.into(),
    },
    FieldDef {
        name: "checksum_complement",
        bit: 7,
        width: 32,
        ident: false,
        get: |n| n.csum_comp.into(),
    },
    FieldDef {
        name: "node_id_wide",
        bit: 8,
        width: 56,
        ident: true,
        get: |n| n.id_wide,
    },
    FieldDef {
        name: "ingress_if_id_wide",
        bit: 9,
        width: 32,
        ident: true,
        get: |n| n.ingress_id_wide.into(),
    },
    FieldDef {
        name: "egress_if_id_wide",
        bit: 9,
        width: 32,
        ident: true,
        get: |n| n.egress_id_wide.into(),
    },
    FieldDef {
        name: "namespace_data_wide",
        bit: 10,
        width: 64,
        ident: false,
        get: |n| bytes_be(&n.namespace_data_wide),
    },
    FieldDef {
        name: "buffer_occupancy",
        bit: 11,
        width: 32,
        ident: false,
        get: |n| n.buffer_occupancy.into(),
    },
];

/// The attribute names of the per-hop fields, in order.
pub fn field_names() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().map(|f| f.name)
}

fn present(trace_type: u32, bit: u8) -> bool {
    trace_type & (1 << (23 - u32::from(bit))) != 0
}

/// min/max/last of one field at one hop; `min > max` means no value yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldStat {
    pub min: u64,
    pub max: u64,
    pub last: u64,
}

impl FieldStat {
    const EMPTY: FieldStat = FieldStat {
        min: u64::MAX,
        max: 0,
        last: 0,
    };

    fn add(&mut self, v: u64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
    }

    pub fn is_empty(&self) -> bool {
        self.min > self.max
    }
}

/// [`FieldStat`] for fields of 32 bits or less: what most pending memory is.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat32 {
    min: u32,
    max: u32,
    last: u32,
}

impl Stat32 {
    const EMPTY: Stat32 = Stat32 {
        min: u32::MAX,
        max: 0,
        last: 0,
    };

    fn add(&mut self, v: u32) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
    }

    fn widen(self) -> FieldStat {
        if self.min > self.max {
            FieldStat::EMPTY
        } else {
            FieldStat {
                min: self.min.into(),
                max: self.max.into(),
                last: self.last.into(),
            }
        }
    }
}

/// A span's IOAM traces aggregated per hop (path order: first hop first).
/// Only the fields selected by the trace type are stored, hop-major.
#[derive(Debug, Clone, PartialEq)]
pub struct PathAgg {
    pub namespace_id: u16,
    pub trace_type: u32,
    pub packets: u32,
    /// Indices into `FIELDS` of the fields stored per hop (`nfields` used).
    field_idx: [u8; FIELD_COUNT],
    nfields: u8,
    /// Per stored field: its index among the narrow (<= 32 bits) or among
    /// the wide fields, and how many of each there are.
    slot: [u8; FIELD_COUNT],
    narrow: u8,
    /// Packets that carried each hop.
    hop_packets: Vec<u32>,
    /// Hop-major: `narrow` entries per hop, and the rest in `wide`.
    stats: Vec<Stat32>,
    wide: Vec<FieldStat>,
    pub flow: Option<Flow>,
    pub first_capture_ns: u64,
    pub last_capture_ns: u64,
    pub reporter: String,
    /// Traces whose namespace or trace type differed from the first one's.
    pub mismatched: u32,
}

impl PathAgg {
    pub fn new(r: &IoamReport) -> PathAgg {
        let mut field_idx = [0u8; FIELD_COUNT];
        let mut slot = [0u8; FIELD_COUNT];
        let (mut nfields, mut narrow, mut wide) = (0u8, 0u8, 0u8);
        for (i, f) in FIELDS.iter().enumerate() {
            if present(r.trace_type, f.bit) {
                field_idx[usize::from(nfields)] = i as u8;
                slot[usize::from(nfields)] = if f.width > 32 {
                    wide += 1;
                    wide - 1
                } else {
                    narrow += 1;
                    narrow - 1
                };
                nfields += 1;
            }
        }
        let mut agg = PathAgg {
            namespace_id: r.namespace_id,
            trace_type: r.trace_type,
            packets: 0,
            field_idx,
            nfields,
            slot,
            narrow,
            hop_packets: Vec::new(),
            stats: Vec::new(),
            wide: Vec::new(),
            flow: None,
            first_capture_ns: u64::MAX,
            last_capture_ns: 0,
            reporter: String::new(),
            mismatched: 0,
        };
        agg.add(r);
        agg
    }

    fn fields(&self) -> &[u8] {
        &self.field_idx[..usize::from(self.nfields)]
    }

    pub fn hops(&self) -> usize {
        self.hop_packets.len()
    }

    pub fn add(&mut self, r: &IoamReport) {
        if self.packets > 0
            && (r.namespace_id != self.namespace_id || r.trace_type != self.trace_type)
        {
            self.mismatched += 1;
            return;
        }
        self.packets += 1;
        if r.flow.is_some() {
            self.flow = r.flow;
        }
        if r.capture_time_ns != 0 {
            self.first_capture_ns = self.first_capture_ns.min(r.capture_time_ns);
            self.last_capture_ns = self.last_capture_ns.max(r.capture_time_ns);
        }
        if !r.reporter.is_empty() && self.reporter != r.reporter {
            self.reporter.clone_from(&r.reporter);
        }
        let nn = usize::from(self.narrow);
        let nw = usize::from(self.nfields - self.narrow);
        if r.nodes.len() > self.hop_packets.len() {
            self.hop_packets.resize(r.nodes.len(), 0);
            self.stats.resize(r.nodes.len() * nn, Stat32::EMPTY);
            self.wide.resize(r.nodes.len() * nw, FieldStat::EMPTY);
        }
        // The packet carries the last hop first.
        for (hop, node) in r.nodes.iter().rev().enumerate() {
            self.hop_packets[hop] += 1;
            let (idx, n) = (self.field_idx, usize::from(self.nfields));
            for (j, &fi) in idx[..n].iter().enumerate() {
                let def = &FIELDS[usize::from(fi)];
                let v = (def.get)(node);
                let all_ones = if def.width >= 64 {
                    u64::MAX
                } else {
                    (1u64 << def.width) - 1
                };
                if !def.ident && v == all_ones {
                    continue;
                }
                let k = usize::from(self.slot[j]);
                if def.width > 32 {
                    self.wide[hop * nw + k].add(v);
                } else {
                    // fits: the width is at most 32 bits
                    self.stats[hop * nn + k].add(v as u32);
                }
            }
        }
    }

    /// The aggregate of `field` at `hop`, if the trace type selects it.
    pub fn stat(&self, hop: usize, field: &str) -> Option<FieldStat> {
        let j = self
            .fields()
            .iter()
            .position(|&fi| FIELDS[usize::from(fi)].name == field)?;
        self.get(hop, j)
    }

    /// The aggregate of the `j`th stored field at `hop`.
    fn get(&self, hop: usize, j: usize) -> Option<FieldStat> {
        let fi = *self.fields().get(j)?;
        let k = usize::from(self.slot[j]);
        if FIELDS[usize::from(fi)].width > 32 {
            let nw = usize::from(self.nfields - self.narrow);
            self.wide.get(hop * nw + k).copied()
        } else {
            self.stats
                .get(hop * usize::from(self.narrow) + k)
                .map(|s| s.widen())
        }
    }

    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<PathAgg>()
            + self.fields().len()
            + self.hop_packets.len() * 4
            + self.stats.len() * std::mem::size_of::<Stat32>()
            + self.wide.len() * std::mem::size_of::<FieldStat>()
            + self.reporter.len()
    }

    /// Nanoseconds since the epoch of a hop's timestamp (last packet), if the
    /// trace type has both timestamp fields. The fraction is read as
    /// microseconds, which is what Linux writes.
    fn hop_time_ns(&self, hop: usize) -> Option<u64> {
        let s = self.stat(hop, "timestamp_secs").filter(|s| !s.is_empty())?;
        let f = self
            .stat(hop, "timestamp_frac")
            .filter(|s| !s.is_empty())
            .map_or(0, |f| f.last);
        Some(s.last * 1_000_000_000 + f.min(999_999) * 1_000)
    }
}

/// Attribute names of one hop, made once (formatting them per span was the
/// join's main cost).
struct HopKeys {
    packets: String,
    /// Per `FIELDS` entry: `.min`, `.max`, `.last`, and the event's name.
    fields: Vec<[String; 4]>,
}

impl HopKeys {
    fn new(hop: usize) -> HopKeys {
        let prefix = format!("ioam.hop.{hop}");
        HopKeys {
            packets: format!("{prefix}.packets"),
            fields: FIELDS
                .iter()
                .map(|d| {
                    [
                        format!("{prefix}.{}.min", d.name),
                        format!("{prefix}.{}.max", d.name),
                        format!("{prefix}.{}.last", d.name),
                        format!("ioam.{}", d.name),
                    ]
                })
                .collect(),
        }
    }
}

/// Precomputed names for this many hops: more than an IOAM trace can hold
/// (244 bytes of node data, 4 bytes at least per node); reports with longer
/// paths (possible through the API) get formatted names.
const CACHED_HOPS: usize = 64;

fn cached_keys() -> &'static [HopKeys] {
    static KEYS: std::sync::OnceLock<Vec<HopKeys>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| (0..CACHED_HOPS).map(HopKeys::new).collect())
}

/// The name of `hop`'s attribute: `which` 0-3 per [`HopKeys::fields`], 4 for
/// the packet count.
fn hop_key(hop: usize, field: usize, which: usize) -> Cow<'static, str> {
    let pick = |k: &HopKeys| -> String {
        if which == 4 {
            k.packets.clone()
        } else {
            k.fields[field][which].clone()
        }
    };
    match cached_keys().get(hop) {
        Some(k) => Cow::Borrowed(if which == 4 {
            k.packets.as_str()
        } else {
            k.fields[field][which].as_str()
        }),
        None => Cow::Owned(pick(&HopKeys::new(hop))),
    }
}

/// The span id of the network span under `parent`: a fixed mix of the
/// parent's, so a replay yields the same id.
pub fn network_span_id(parent: u64) -> u64 {
    let mut z = parent ^ 0x434c_545f_494f_414d; // "CLT_IOAM"
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    if z == 0 { 1 } else { z }
}

pub fn flow_attributes(flow: &Flow, attrs: &mut Attributes) {
    attrs.push(("network.type".into(), "ipv6".into()));
    attrs.push(("source.address".into(), flow.src.to_string().into()));
    attrs.push(("destination.address".into(), flow.dst.to_string().into()));
    if flow.src_port != 0 || flow.dst_port != 0 {
        attrs.push(("source.port".into(), u32::from(flow.src_port).into()));
        attrs.push(("destination.port".into(), u32::from(flow.dst_port).into()));
    }
    let transport = match flow.protocol {
        6 => "tcp",
        17 => "udp",
        58 => "icmpv6",
        _ => "",
    };
    if !transport.is_empty() {
        attrs.push(("network.transport".into(), transport.into()));
    }
}

/// What the network span hangs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// The application span was seen: times fall back to its.
    Matched {
        key: SpanKey,
        start_ns: u64,
        end_ns: u64,
    },
    /// Ids carried but the span never came within the delay.
    Unmatched(SpanKey),
    /// Plain IOAM: a root span of its own, with a fresh trace id.
    None { trace_id: u128, span_id: u64 },
}

/// Builds the network span of `agg`.
pub fn network_span(agg: &PathAgg, parent: Parent, resource: &Attributes) -> OutSpan {
    let mut attrs: Attributes = Vec::with_capacity(8 + agg.hops() * agg.fields().len() * 3);
    attrs.push(("ioam.namespace".into(), u32::from(agg.namespace_id).into()));
    attrs.push(("ioam.trace_type".into(), agg.trace_type.into()));
    attrs.push(("ioam.packets".into(), agg.packets.into()));
    attrs.push(("ioam.hop.count".into(), (agg.hops() as u32).into()));
    if agg.mismatched > 0 {
        attrs.push(("ioam.packets.mismatched".into(), agg.mismatched.into()));
    }
    if let Some(flow) = &agg.flow {
        flow_attributes(flow, &mut attrs);
    }
    if !agg.reporter.is_empty() {
        attrs.push(("clt.reporter".into(), agg.reporter.clone().into()));
    }
    let (trace_id, span_id, parent_span_id, matched) = match parent {
        Parent::Matched { key, .. } => (
            key.trace_id,
            network_span_id(key.span_id),
            key.span_id,
            true,
        ),
        Parent::Unmatched(key) => (
            key.trace_id,
            network_span_id(key.span_id),
            key.span_id,
            false,
        ),
        Parent::None { trace_id, span_id } => (trace_id, span_id, 0, false),
    };
    if !matches!(parent, Parent::None { .. }) {
        attrs.push(("clt.matched".into(), AttrValue::Bool(matched)));
    }

    let mut events = Vec::with_capacity(agg.hops());
    let (mut t_min, mut t_max) = (u64::MAX, 0u64);
    for hop in 0..agg.hops() {
        attrs.push((hop_key(hop, 0, 4), agg.hop_packets[hop].into()));
        let mut ev_attrs: Attributes = vec![("ioam.hop.index".into(), (hop as u32).into())];
        for (j, &fi) in agg.fields().iter().enumerate() {
            let Some(s) = agg.get(hop, j) else { continue };
            if s.is_empty() {
                continue;
            }
            let f = usize::from(fi);
            attrs.push((hop_key(hop, f, 0), s.min.into()));
            attrs.push((hop_key(hop, f, 1), s.max.into()));
            attrs.push((hop_key(hop, f, 2), s.last.into()));
            // the event's names do not depend on the hop
            ev_attrs.push((hop_key(0, f, 3), s.last.into()));
        }
        let time = agg.hop_time_ns(hop);
        if let Some(t) = time {
            t_min = t_min.min(t);
            t_max = t_max.max(t);
        }
        events.push(OutEvent {
            name: "ioam.hop".into(),
            time_ns: time.unwrap_or(0),
            attributes: ev_attrs,
        });
    }
    let (fallback_start, fallback_end) = match parent {
        Parent::Matched {
            start_ns, end_ns, ..
        } => (start_ns, end_ns),
        _ if agg.last_capture_ns != 0 => (agg.first_capture_ns, agg.last_capture_ns),
        _ => {
            let now = crate::now_ns();
            (now, now)
        }
    };
    let (start_ns, end_ns) = if t_min <= t_max {
        (t_min, t_max)
    } else {
        (fallback_start, fallback_end)
    };
    for e in &mut events {
        if e.time_ns == 0 {
            e.time_ns = start_ns;
        }
    }
    OutSpan {
        trace_id,
        span_id,
        parent_span_id,
        name: Cow::Borrowed("ioam.path"),
        kind: OutKind::Internal,
        start_ns,
        end_ns,
        attributes: attrs,
        events,
        status_code: 0,
        status_message: String::new(),
        resource: resource.clone(),
        scope_name: Cow::Borrowed("clt-collector"),
        scope_version: Cow::Borrowed(env!("CARGO_PKG_VERSION")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_and_narrow_fields_aggregate_apart() {
        // hop limit + node id, wide node id, queue depth, buffer occupancy
        let tt = 0x80_0000 | 0x00_8000 | 0x02_0000 | 0x00_1000;
        let node = |wide: u64, q: u32| IoamNode {
            hop_limit: 9,
            id: 1,
            id_wide: wide,
            queue_depth: q,
            buffer_occupancy: u32::MAX, // "not available": left out
            ..IoamNode::default()
        };
        let mut r = IoamReport {
            key: None,
            namespace_id: 1,
            trace_type: tt,
            nodes: vec![node(1 << 50, 7)],
            flow: None,
            capture_time_ns: 0,
            reporter: String::new(),
        };
        let mut agg = PathAgg::new(&r);
        r.nodes = vec![node(3, 2)];
        agg.add(&r);
        let w = agg.stat(0, "node_id_wide").unwrap();
        assert_eq!((w.min, w.max, w.last), (3, 1 << 50, 3));
        let q = agg.stat(0, "queue_depth").unwrap();
        assert_eq!((q.min, q.max, q.last), (2, 7, 2));
        assert!(agg.stat(0, "buffer_occupancy").unwrap().is_empty());
        assert_eq!(agg.stat(0, "transit_delay"), None);
        let s = network_span(
            &agg,
            Parent::None {
                trace_id: 1,
                span_id: 2,
            },
            &Vec::new(),
        );
        assert!(s.attr("ioam.hop.0.buffer_occupancy.last").is_none());
        assert_eq!(
            s.attr("ioam.hop.0.node_id_wide.max"),
            Some(&AttrValue::Int(1 << 50))
        );
    }
}
