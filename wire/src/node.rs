//! One node's entry in an IOAM trace: the fields its trace type asks for
//! (RFC 9197 section 4.4.2), in bit order.

use crate::trace_type::{TraceField, TraceType};
use crate::{Error, Result, be, need};
use std::fmt;

// A node's entry with every field (RFC 9197 section 4.4.2). Fields appear in
// trace-type bit order; absent ones take no room.
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |   Hop_Lim     |              node_id                          | bit 0
// |     ingress_if_id             |         egress_if_id          | bit 1
// |                 timestamp seconds                             | bit 2
// |                 timestamp fraction                            | bit 3
// |                 transit delay                                 | bit 4
// |                 namespace-specific data                       | bit 5
// |                 queue depth                                   | bit 6
// |                 checksum complement                           | bit 7
// |   Hop_Lim     |         node_id (wide, 56 bits)               | bit 8
// |                              ...                              |
// |                 ingress_if_id (wide)                          | bit 9
// |                 egress_if_id (wide)                           |
// |                 namespace-specific data (wide)                | bit 10
// |                              ...                              |
// |                 buffer occupancy                              | bit 11
// |                 undefined, 0xffffffff                         | bits 12-21, each
// |  Length       |      Schema ID                                | bit 22
// |                 opaque data (Length * 4 bytes)                |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// The value Linux writes for a 4-byte field it cannot supply.
pub const UNAVAILABLE_U32: u32 = u32::MAX;
/// The 24-bit "no schema" id Linux writes in an empty opaque state snapshot.
pub const NO_SCHEMA: u32 = 0x00ff_ffff;

/// Bit 0: hop limit and 24-bit node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HopLimitNodeId {
    pub hop_limit: u8,
    /// 24 bits.
    pub node_id: u32,
}

/// Bit 1: 16-bit ingress and egress interface ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InterfaceIds {
    pub ingress: u16,
    pub egress: u16,
}

/// Bit 8: hop limit and 56-bit node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HopLimitNodeIdWide {
    pub hop_limit: u8,
    /// 56 bits.
    pub node_id: u64,
}

/// Bit 9: 32-bit ingress and egress interface ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InterfaceIdsWide {
    pub ingress: u32,
    pub egress: u32,
}

/// Bit 22: the opaque state snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OpaqueState<'a> {
    /// 24 bits; [`NO_SCHEMA`] when the node has none.
    pub schema_id: u32,
    /// A multiple of 4 bytes, at most 1020.
    pub data: &'a [u8],
}

/// One node's entry. A field is `Some` exactly when the trace type has its
/// bit set. Values are kept as written, including the all-ones "unavailable"
/// values (see [`UNAVAILABLE_U32`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NodeRepr<'a> {
    pub hop_limit_node_id: Option<HopLimitNodeId>,
    pub interface_ids: Option<InterfaceIds>,
    pub timestamp_secs: Option<u32>,
    /// Linux writes microseconds.
    pub timestamp_frac: Option<u32>,
    pub transit_delay: Option<u32>,
    pub namespace_data: Option<u32>,
    pub queue_depth: Option<u32>,
    pub checksum_complement: Option<u32>,
    pub hop_limit_node_id_wide: Option<HopLimitNodeIdWide>,
    pub interface_ids_wide: Option<InterfaceIdsWide>,
    pub namespace_data_wide: Option<u64>,
    pub buffer_occupancy: Option<u32>,
    /// The 4-byte values of the undefined bits 12-21 that are set, in bit
    /// order (empty when none is set).
    pub undefined: &'a [u8],
    pub opaque_state: Option<OpaqueState<'a>>,
}

const fn bit(field: TraceField) -> u32 {
    field.mask()
}

/// What a trace type implies for every entry, computed once per trace: where
/// each field sits in an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Offsets of the fields of bits 0-11 ([`ABSENT`] when not in the trace
    /// type); the wide fields take 8 bytes from their offset.
    offsets: [u8; 12],
    /// Offset of the undefined fields (bits 12-21), which end at `fixed`.
    undefined: u8,
    /// `NodeLen * 4` (at most 100).
    fixed: u8,
    /// Bit 22: a snapshot follows the fixed part.
    opaque: bool,
}

const ABSENT: u8 = u8::MAX;

/// For every value of trace-type bits 0-7: the offset of each of those
/// fields (4 bytes each) and, last, their total length.
static SHORT_OFFSETS: [[u8; 9]; 256] = {
    let mut table = [[ABSENT; 9]; 256];
    let mut bits = 0;
    while bits < 256 {
        let mut at = 0u8;
        let mut i = 0;
        while i < 8 {
            if bits & (0x80 >> i) != 0 {
                table[bits][i] = at;
                at += 4;
            }
            i += 1;
        }
        table[bits][8] = at;
        bits += 1;
    }
    table
};

/// For every value of trace-type bits 8-11: the offset of each of those
/// fields after the short ones (8, 8, 8 and 4 bytes) and their total length.
static WIDE_OFFSETS: [[u8; 5]; 16] = {
    let mut table = [[ABSENT; 5]; 16];
    let mut bits = 0;
    while bits < 16 {
        let mut at = 0u8;
        let mut i = 0;
        while i < 4 {
            if bits & (0x8 >> i) != 0 {
                table[bits][i] = at;
                at += if i < 3 { 8 } else { 4 };
            }
            i += 1;
        }
        table[bits][4] = at;
        bits += 1;
    }
    table
};

/// Reads the big-endian word at `at`; 0 if out of range (never, once the
/// fixed part's length is checked).
#[inline(always)]
fn word(entry: &[u8], at: u8) -> u32 {
    match entry
        .get(usize::from(at)..)
        .and_then(|s| s.first_chunk::<4>())
    {
        Some(w) => u32::from_be_bytes(*w),
        None => 0,
    }
}

impl Layout {
    #[inline]
    pub(crate) fn new(trace_type: TraceType) -> Layout {
        // Two table lookups instead of a loop over the bits: this runs once
        // per trace on the agent's hot path.
        let t = trace_type.bits();
        let short = &SHORT_OFFSETS[(t >> 16) as usize & 0xff];
        let wide = &WIDE_OFFSETS[(t >> 12) as usize & 0xf];
        let mut offsets = [ABSENT; 12];
        offsets[..8].copy_from_slice(&short[..8]);
        for (offset, w) in offsets[8..].iter_mut().zip(&wide[..4]) {
            // ABSENT (255) stays ABSENT.
            *offset = w.saturating_add(short[8]);
        }
        let at = short[8] + wide[4];
        let undefined = match t & TraceType::UNDEFINED {
            0 => 0,
            u => u.count_ones() as u8 * 4,
        };
        Layout {
            offsets,
            undefined: at,
            fixed: at + undefined,
            opaque: t & bit(TraceField::OpaqueState) != 0,
        }
    }

    /// The fixed part of an entry, when there is no opaque state snapshot
    /// (every entry has this length).
    #[inline]
    pub(crate) fn stride(&self) -> Option<usize> {
        (!self.opaque).then_some(usize::from(self.fixed))
    }

    /// The length of the entry at the start of `bytes`; `None` if short.
    #[inline(always)]
    pub(crate) fn entry_len(&self, bytes: &[u8]) -> Option<usize> {
        let fixed = usize::from(self.fixed);
        let len = if self.opaque {
            fixed + 4 + usize::from(*bytes.get(fixed)?) * 4
        } else {
            fixed
        };
        (len <= bytes.len()).then_some(len)
    }
}

/// The fixed fields (bits 0-11) a trace type has, in wire order: the plan
/// of [`TraceRepr::for_each_field`](crate::TraceRepr::for_each_field),
/// computed once per trace. They sit back to back from the start of every
/// entry (bit order, RFC 9197 section 4.4.2), 4 or 8 bytes each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldList {
    fields: [TraceField; 12],
    len: u8,
}

/// For every value of trace-type bits 0-7: those fields in order, and how
/// many there are.
static SHORT_FIELDS: [([TraceField; 8], u8); 256] = {
    let mut table = [([TraceField::HopLimitNodeId; 8], 0u8); 256];
    let mut bits = 0;
    while bits < 256 {
        let mut i = 0;
        while i < 8 {
            if bits & (0x80 >> i) != 0 {
                let n = table[bits].1;
                table[bits].0[n as usize] = TraceField::ALL[i];
                table[bits].1 = n + 1;
            }
            i += 1;
        }
        bits += 1;
    }
    table
};

/// The fields of trace-type bits 0-7 in `bits` (a right-aligned trace
/// type), in order: a slice of a static table, nothing built per call.
#[inline(always)]
pub(crate) fn short_fields(bits: u32) -> &'static [TraceField] {
    let (fields, len) = &SHORT_FIELDS[(bits >> 16) as usize & 0xff];
    fields.get(..usize::from(*len)).unwrap_or(&[])
}

impl FieldList {
    #[inline]
    pub(crate) fn new(trace_type: TraceType) -> FieldList {
        let t = trace_type.bits();
        let mut list = FieldList {
            fields: [TraceField::HopLimitNodeId; 12],
            len: 0,
        };
        let short = short_fields(t);
        let wide = [
            TraceField::HopLimitNodeIdWide,
            TraceField::InterfaceIdsWide,
            TraceField::NamespaceDataWide,
            TraceField::BufferOccupancy,
        ]
        .into_iter()
        .filter(|f| t & f.mask() != 0);
        for (slot, field) in list
            .fields
            .iter_mut()
            .zip(short.iter().copied().chain(wide))
        {
            *slot = field;
            list.len += 1;
        }
        list
    }

    #[inline(always)]
    pub(crate) fn fields(&self) -> &[TraceField] {
        self.fields.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// A zero-copy view of one node's entry, read through its trace type. Every
/// accessor is in bounds (the constructor checked the entry's length) and
/// returns `None` exactly when the trace type does not have the field; this
/// is the cheapest way to read a few fields of many nodes.
/// [`to_repr`](Self::to_repr) decodes them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeEntry<'a> {
    layout: Layout,
    /// Exactly the entry: fixed part, then the snapshot.
    bytes: &'a [u8],
}

impl<'a> NodeEntry<'a> {
    /// The entry at the start of `bytes` for `trace_type`.
    pub fn new(trace_type: TraceType, bytes: &'a [u8]) -> Result<NodeEntry<'a>> {
        let len = NodeRepr::entry_len(trace_type, bytes)?;
        Ok(NodeEntry {
            layout: Layout::new(trace_type),
            bytes: &bytes[..len],
        })
    }

    #[inline(always)]
    pub(crate) fn with_layout(layout: Layout, bytes: &'a [u8]) -> Option<NodeEntry<'a>> {
        let len = layout.entry_len(bytes)?;
        Some(NodeEntry {
            layout,
            bytes: bytes.get(..len)?,
        })
    }

    /// The entry's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    #[inline(always)]
    fn short(&self, i: usize) -> Option<u32> {
        match self.layout.offsets[i] {
            ABSENT => None,
            at => Some(word(self.bytes, at)),
        }
    }

    #[inline(always)]
    fn long(&self, i: usize) -> Option<u64> {
        match self.layout.offsets[i] {
            ABSENT => None,
            at => {
                Some((u64::from(word(self.bytes, at)) << 32) | u64::from(word(self.bytes, at + 4)))
            }
        }
    }

    #[inline(always)]
    pub fn hop_limit_node_id(&self) -> Option<HopLimitNodeId> {
        self.short(0).map(|w| HopLimitNodeId {
            hop_limit: (w >> 24) as u8,
            node_id: w & 0x00ff_ffff,
        })
    }

    #[inline(always)]
    pub fn interface_ids(&self) -> Option<InterfaceIds> {
        self.short(1).map(|w| InterfaceIds {
            ingress: (w >> 16) as u16,
            egress: w as u16,
        })
    }

    #[inline(always)]
    pub fn timestamp_secs(&self) -> Option<u32> {
        self.short(2)
    }

    #[inline(always)]
    pub fn timestamp_frac(&self) -> Option<u32> {
        self.short(3)
    }

    #[inline(always)]
    pub fn transit_delay(&self) -> Option<u32> {
        self.short(4)
    }

    #[inline(always)]
    pub fn namespace_data(&self) -> Option<u32> {
        self.short(5)
    }

    #[inline(always)]
    pub fn queue_depth(&self) -> Option<u32> {
        self.short(6)
    }

    #[inline(always)]
    pub fn checksum_complement(&self) -> Option<u32> {
        self.short(7)
    }

    #[inline(always)]
    pub fn hop_limit_node_id_wide(&self) -> Option<HopLimitNodeIdWide> {
        self.long(8).map(|w| HopLimitNodeIdWide {
            hop_limit: (w >> 56) as u8,
            node_id: w & 0x00ff_ffff_ffff_ffff,
        })
    }

    #[inline(always)]
    pub fn interface_ids_wide(&self) -> Option<InterfaceIdsWide> {
        self.long(9).map(|w| InterfaceIdsWide {
            ingress: (w >> 32) as u32,
            egress: w as u32,
        })
    }

    #[inline(always)]
    pub fn namespace_data_wide(&self) -> Option<u64> {
        self.long(10)
    }

    #[inline(always)]
    pub fn buffer_occupancy(&self) -> Option<u32> {
        self.short(11)
    }

    /// The values of the undefined bits 12-21 that are set, 4 bytes each.
    #[inline(always)]
    pub fn undefined(&self) -> &'a [u8] {
        self.bytes
            .get(usize::from(self.layout.undefined)..usize::from(self.layout.fixed))
            .unwrap_or(&[])
    }

    #[inline(always)]
    pub fn opaque_state(&self) -> Option<OpaqueState<'a>> {
        if !self.layout.opaque {
            return None;
        }
        let (header, data) = self
            .bytes
            .get(usize::from(self.layout.fixed)..)?
            .split_first_chunk::<4>()?;
        Some(OpaqueState {
            schema_id: u32::from_be_bytes(*header) & 0x00ff_ffff,
            data,
        })
    }

    /// Every field, decoded.
    #[inline(always)]
    pub fn to_repr(&self) -> NodeRepr<'a> {
        NodeRepr {
            hop_limit_node_id: self.hop_limit_node_id(),
            interface_ids: self.interface_ids(),
            timestamp_secs: self.timestamp_secs(),
            timestamp_frac: self.timestamp_frac(),
            transit_delay: self.transit_delay(),
            namespace_data: self.namespace_data(),
            queue_depth: self.queue_depth(),
            checksum_complement: self.checksum_complement(),
            hop_limit_node_id_wide: self.hop_limit_node_id_wide(),
            interface_ids_wide: self.interface_ids_wide(),
            namespace_data_wide: self.namespace_data_wide(),
            buffer_occupancy: self.buffer_occupancy(),
            undefined: self.undefined(),
            opaque_state: self.opaque_state(),
        }
    }
}

impl<'a> NodeRepr<'a> {
    /// Parses the entry at the start of `entry` for `trace_type`; returns it
    /// and its length (`NodeLen * 4`, plus the opaque state snapshot).
    #[inline]
    pub fn parse(trace_type: TraceType, entry: &'a [u8]) -> Result<(NodeRepr<'a>, usize)> {
        let entry = NodeEntry::new(trace_type, entry)?;
        Ok((entry.to_repr(), entry.as_bytes().len()))
    }

    /// The length of the entry at the start of `entry` without decoding it:
    /// `NodeLen * 4`, plus the opaque state snapshot when bit 22 is set.
    #[inline]
    pub fn entry_len(trace_type: TraceType, entry: &[u8]) -> Result<usize> {
        let fixed = usize::from(trace_type.node_len()) * 4;
        if !trace_type.has_opaque_state() {
            need("node entry", fixed, entry.len())?;
            return Ok(fixed);
        }
        need("node entry", fixed, entry.len())?;
        need("opaque state header", fixed + 4, entry.len())?;
        let len = fixed + 4 + usize::from(entry[fixed]) * 4;
        need("opaque state data", len, entry.len())?;
        Ok(len)
    }

    /// The emitted length for `trace_type`.
    pub fn buffer_len(&self, trace_type: TraceType) -> usize {
        let mut len = usize::from(trace_type.node_len()) * 4;
        if trace_type.has_opaque_state() {
            len += 4 + self.opaque_state.map_or(0, |o| o.data.len());
        }
        len
    }

    /// Writes the fields `trace_type` asks for at the start of `buf` and
    /// returns the length written. Fields the trace type asks for that this
    /// node lacks are written as Linux writes what it cannot supply: all
    /// ones, and an empty snapshot with schema [`NO_SCHEMA`]. Fields the
    /// trace type does not ask for are ignored.
    pub fn emit(&self, trace_type: TraceType, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len(trace_type);
        need("node entry buffer", len, buf.len())?;
        let undefined = trace_type.undefined_count() as usize * 4;
        if !self.undefined.is_empty() && self.undefined.len() != undefined {
            return Err(Error::Invalid {
                what: "undefined field bytes do not match the trace type's bits 12-21",
                value: self.undefined.len() as u64,
            });
        }
        if let Some(o) = self.opaque_state {
            if o.data.len() % 4 != 0 || o.data.len() > 255 * 4 {
                return Err(Error::Invalid {
                    what: "opaque state data must be a multiple of 4 bytes, at most 1020",
                    value: o.data.len() as u64,
                });
            }
            if o.schema_id > 0x00ff_ffff {
                return Err(Error::Invalid {
                    what: "schema id exceeds 24 bits",
                    value: u64::from(o.schema_id),
                });
            }
        }
        let t = trace_type.bits();
        let mut at = 0usize;
        let mut put = |w: u32| {
            be::put_u32(buf, at, w);
            at += 4;
        };
        const NA: u32 = UNAVAILABLE_U32;
        if t & bit(TraceField::HopLimitNodeId) != 0 {
            put(self.hop_limit_node_id.map_or(NA, |h| {
                (u32::from(h.hop_limit) << 24) | (h.node_id & 0x00ff_ffff)
            }));
        }
        if t & bit(TraceField::InterfaceIds) != 0 {
            put(self
                .interface_ids
                .map_or(NA, |i| (u32::from(i.ingress) << 16) | u32::from(i.egress)));
        }
        for (b, v) in [
            (TraceField::TimestampSecs, self.timestamp_secs),
            (TraceField::TimestampFrac, self.timestamp_frac),
            (TraceField::TransitDelay, self.transit_delay),
            (TraceField::NamespaceData, self.namespace_data),
            (TraceField::QueueDepth, self.queue_depth),
            (TraceField::ChecksumComplement, self.checksum_complement),
        ] {
            if t & bit(b) != 0 {
                put(v.unwrap_or(NA));
            }
        }
        if t & bit(TraceField::HopLimitNodeIdWide) != 0 {
            let w = self.hop_limit_node_id_wide.map_or(u64::MAX, |h| {
                (u64::from(h.hop_limit) << 56) | (h.node_id & 0x00ff_ffff_ffff_ffff)
            });
            put((w >> 32) as u32);
            put(w as u32);
        }
        if t & bit(TraceField::InterfaceIdsWide) != 0 {
            let i = self.interface_ids_wide.unwrap_or(InterfaceIdsWide {
                ingress: NA,
                egress: NA,
            });
            put(i.ingress);
            put(i.egress);
        }
        if t & bit(TraceField::NamespaceDataWide) != 0 {
            let w = self.namespace_data_wide.unwrap_or(u64::MAX);
            put((w >> 32) as u32);
            put(w as u32);
        }
        if t & bit(TraceField::BufferOccupancy) != 0 {
            put(self.buffer_occupancy.unwrap_or(NA));
        }
        if self.undefined.is_empty() {
            buf[at..at + undefined].fill(0xff);
        } else {
            buf[at..at + undefined].copy_from_slice(self.undefined);
        }
        at += undefined;
        if trace_type.has_opaque_state() {
            let (schema_id, data) = self
                .opaque_state
                .map_or((NO_SCHEMA, &[][..]), |o| (o.schema_id, o.data));
            be::put_u32(buf, at, ((data.len() as u32 / 4) << 24) | schema_id);
            buf[at + 4..at + 4 + data.len()].copy_from_slice(data);
            at += 4 + data.len();
        }
        Ok(at)
    }

    /// Keeps only the fields `trace_type` has, and fills the ones it has
    /// but this node lacks with what [`emit`](Self::emit) would write: the
    /// node a trace of that type reads back after `emit`.
    pub fn for_trace_type(&self, trace_type: TraceType) -> NodeRepr<'a> {
        let t = trace_type.bits();
        let has = |f: TraceField| t & bit(f) != 0;
        let na = UNAVAILABLE_U32;
        NodeRepr {
            hop_limit_node_id: has(TraceField::HopLimitNodeId).then(|| {
                self.hop_limit_node_id.map_or(
                    HopLimitNodeId {
                        hop_limit: 0xff,
                        node_id: 0x00ff_ffff,
                    },
                    |h| HopLimitNodeId {
                        hop_limit: h.hop_limit,
                        node_id: h.node_id & 0x00ff_ffff,
                    },
                )
            }),
            interface_ids: has(TraceField::InterfaceIds).then(|| {
                self.interface_ids.unwrap_or(InterfaceIds {
                    ingress: 0xffff,
                    egress: 0xffff,
                })
            }),
            timestamp_secs: has(TraceField::TimestampSecs)
                .then(|| self.timestamp_secs.unwrap_or(na)),
            timestamp_frac: has(TraceField::TimestampFrac)
                .then(|| self.timestamp_frac.unwrap_or(na)),
            transit_delay: has(TraceField::TransitDelay).then(|| self.transit_delay.unwrap_or(na)),
            namespace_data: has(TraceField::NamespaceData)
                .then(|| self.namespace_data.unwrap_or(na)),
            queue_depth: has(TraceField::QueueDepth).then(|| self.queue_depth.unwrap_or(na)),
            checksum_complement: has(TraceField::ChecksumComplement)
                .then(|| self.checksum_complement.unwrap_or(na)),
            hop_limit_node_id_wide: has(TraceField::HopLimitNodeIdWide).then(|| {
                self.hop_limit_node_id_wide.map_or(
                    HopLimitNodeIdWide {
                        hop_limit: 0xff,
                        node_id: 0x00ff_ffff_ffff_ffff,
                    },
                    |h| HopLimitNodeIdWide {
                        hop_limit: h.hop_limit,
                        node_id: h.node_id & 0x00ff_ffff_ffff_ffff,
                    },
                )
            }),
            interface_ids_wide: has(TraceField::InterfaceIdsWide).then(|| {
                self.interface_ids_wide.unwrap_or(InterfaceIdsWide {
                    ingress: na,
                    egress: na,
                })
            }),
            namespace_data_wide: has(TraceField::NamespaceDataWide)
                .then(|| self.namespace_data_wide.unwrap_or(u64::MAX)),
            buffer_occupancy: has(TraceField::BufferOccupancy)
                .then(|| self.buffer_occupancy.unwrap_or(na)),
            undefined: if trace_type.undefined_count() == 0 {
                &[]
            } else if self.undefined.is_empty() {
                &crate::ioam::ONES[..trace_type.undefined_count() as usize * 4]
            } else {
                self.undefined
            },
            opaque_state: trace_type.has_opaque_state().then(|| {
                self.opaque_state.unwrap_or(OpaqueState {
                    schema_id: NO_SCHEMA,
                    data: &[],
                })
            }),
        }
    }
}

impl fmt::Display for NodeRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut item = |f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>| {
            let r = write!(f, "{sep}{args}");
            sep = " ";
            r
        };
        if let Some(h) = self.hop_limit_node_id {
            item(
                f,
                format_args!("hop_limit={} node_id={}", h.hop_limit, h.node_id),
            )?;
        }
        if let Some(i) = self.interface_ids {
            item(
                f,
                format_args!("ingress_if={} egress_if={}", i.ingress, i.egress),
            )?;
        }
        if let Some(v) = self.timestamp_secs {
            item(f, format_args!("ts_secs={v}"))?;
        }
        if let Some(v) = self.timestamp_frac {
            item(f, format_args!("ts_frac={v}"))?;
        }
        if let Some(v) = self.transit_delay {
            item(f, format_args!("transit_delay={v}"))?;
        }
        if let Some(v) = self.namespace_data {
            item(f, format_args!("ns_data={v:#010x}"))?;
        }
        if let Some(v) = self.queue_depth {
            item(f, format_args!("queue_depth={v}"))?;
        }
        if let Some(v) = self.checksum_complement {
            item(f, format_args!("csum_comp={v:#010x}"))?;
        }
        if let Some(h) = self.hop_limit_node_id_wide {
            item(
                f,
                format_args!("hop_limit_wide={} node_id_wide={}", h.hop_limit, h.node_id),
            )?;
        }
        if let Some(i) = self.interface_ids_wide {
            item(
                f,
                format_args!("ingress_if_wide={} egress_if_wide={}", i.ingress, i.egress),
            )?;
        }
        if let Some(v) = self.namespace_data_wide {
            item(f, format_args!("ns_data_wide={v:#018x}"))?;
        }
        if let Some(v) = self.buffer_occupancy {
            item(f, format_args!("buffer_occupancy={v}"))?;
        }
        if !self.undefined.is_empty() {
            item(f, format_args!("undefined={}B", self.undefined.len()))?;
        }
        if let Some(o) = self.opaque_state {
            item(
                f,
                format_args!("schema_id={} opaque={}B", o.schema_id, o.data.len()),
            )?;
        }
        if sep.is_empty() {
            f.write_str("(no fields)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tt(fields: &[TraceField]) -> TraceType {
        TraceType::from_fields(fields.iter().copied())
    }

    #[test]
    fn every_field_by_hand() {
        let t = TraceType::from_bits(TraceType::KNOWN | 0x000800); // + undefined bit 12
        assert_eq!(t.node_len(), 16);
        let raw: [u8; 76] = [
            0x3f, 0x00, 0x00, 0x02, // bit 0: hop limit 63, node id 2
            0x00, 0x0b, 0x00, 0x0c, // bit 1: ingress 11, egress 12
            0x65, 0x00, 0x00, 0x00, // bit 2: seconds 0x65000000
            0x00, 0x01, 0xe2, 0x40, // bit 3: fraction 123456
            0xff, 0xff, 0xff, 0xff, // bit 4: transit delay unavailable
            0xca, 0xfe, 0xba, 0xbe, // bit 5: namespace data
            0x00, 0x00, 0x05, 0xdc, // bit 6: queue depth 1500
            0xff, 0xff, 0xff, 0xff, // bit 7: checksum complement unavailable
            0x3f, 0x00, 0x00, 0x00, // bit 8: hop limit 63, wide node id (high)
            0x00, 0x00, 0x00, 0x02, //        wide node id (low) = 2
            0x00, 0x00, 0x00, 0x0b, // bit 9: wide ingress 11
            0x00, 0x00, 0x00, 0x0c, //        wide egress 12
            0x01, 0x02, 0x03, 0x04, // bit 10: wide namespace data (high)
            0x05, 0x06, 0x07, 0x08, //         wide namespace data (low)
            0xff, 0xff, 0xff, 0xff, // bit 11: buffer occupancy unavailable
            0xff, 0xff, 0xff, 0xff, // bit 12: undefined
            0x02, 0x00, 0x00, 0x2a, // bit 22: 2 words, schema 42
            0xde, 0xad, 0xbe, 0xef, //         opaque data
            0x01, 0x23, 0x45, 0x67, //         opaque data
        ];
        let expected = NodeRepr {
            hop_limit_node_id: Some(HopLimitNodeId {
                hop_limit: 63,
                node_id: 2,
            }),
            interface_ids: Some(InterfaceIds {
                ingress: 11,
                egress: 12,
            }),
            timestamp_secs: Some(0x6500_0000),
            timestamp_frac: Some(123_456),
            transit_delay: Some(UNAVAILABLE_U32),
            namespace_data: Some(0xcafe_babe),
            queue_depth: Some(1500),
            checksum_complement: Some(UNAVAILABLE_U32),
            hop_limit_node_id_wide: Some(HopLimitNodeIdWide {
                hop_limit: 63,
                node_id: 2,
            }),
            interface_ids_wide: Some(InterfaceIdsWide {
                ingress: 11,
                egress: 12,
            }),
            namespace_data_wide: Some(0x0102_0304_0506_0708),
            buffer_occupancy: Some(UNAVAILABLE_U32),
            undefined: &[0xff; 4],
            opaque_state: Some(OpaqueState {
                schema_id: 42,
                data: &[0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67],
            }),
        };
        assert_eq!(NodeRepr::parse(t, &raw).unwrap(), (expected, 76));
        assert_eq!(NodeRepr::entry_len(t, &raw).unwrap(), 76);
        let mut out = [0u8; 76];
        assert_eq!(expected.emit(t, &mut out).unwrap(), 76);
        assert_eq!(out, raw);
    }

    #[test]
    fn missing_fields_are_written_unavailable() {
        let t = tt(&[
            TraceField::HopLimitNodeId,
            TraceField::QueueDepth,
            TraceField::OpaqueState,
        ]);
        let node = NodeRepr {
            hop_limit_node_id: Some(HopLimitNodeId {
                hop_limit: 64,
                node_id: 1,
            }),
            ..NodeRepr::default()
        };
        let mut out = [0u8; 12];
        assert_eq!(node.emit(t, &mut out).unwrap(), 12);
        assert_eq!(
            out,
            [
                0x40, 0x00, 0x00, 0x01, // hop limit 64, node id 1
                0xff, 0xff, 0xff, 0xff, // queue depth unavailable
                0x00, 0xff, 0xff, 0xff, // empty snapshot, no schema (as Linux)
            ]
        );
        let (back, _) = NodeRepr::parse(t, &out).unwrap();
        assert_eq!(back, node.for_trace_type(t));
    }

    #[test]
    fn truncated_entries_are_errors() {
        let t = tt(&[TraceField::HopLimitNodeId, TraceField::OpaqueState]);
        // Snapshot header announces 1 word that is missing.
        let raw = [0x40, 0, 0, 1, 0x01, 0, 0, 7];
        assert!(matches!(
            NodeRepr::parse(t, &raw),
            Err(Error::Truncated { need: 12, .. })
        ));
        assert!(matches!(
            NodeRepr::entry_len(t, &raw),
            Err(Error::Truncated { need: 12, .. })
        ));
        assert!(matches!(
            NodeRepr::parse(t, &raw[..3]),
            Err(Error::Truncated { need: 4, .. })
        ));
    }
}
