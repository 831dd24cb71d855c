//! The IOAM-Trace-Type bit field (RFC 9197 section 4.4.1).
//!
//! Bit 0 is the most significant bit of the 24-bit field. On the wire the
//! field is the top 24 bits of a 32-bit word whose low 8 bits are reserved; in
//! this crate a `TraceType` holds the 24-bit value right-aligned (`0x800000` is
//! bit 0 alone, as in `ip -6 route ... encap ioam6 trace type 0x800000`).

use std::fmt;

/// One data field a node may record, named after its bit in the trace type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TraceField {
    /// Bit 0: hop limit (8 bits) and node id (24 bits).
    HopLimitNodeId,
    /// Bit 1: ingress and egress interface ids (16 bits each).
    InterfaceIds,
    /// Bit 2: timestamp seconds.
    TimestampSecs,
    /// Bit 3: timestamp fraction.
    TimestampFrac,
    /// Bit 4: transit delay.
    TransitDelay,
    /// Bit 5: namespace-specific data (32 bits).
    NamespaceData,
    /// Bit 6: queue depth.
    QueueDepth,
    /// Bit 7: checksum complement.
    ChecksumComplement,
    /// Bit 8: hop limit (8 bits) and wide node id (56 bits).
    HopLimitNodeIdWide,
    /// Bit 9: wide ingress and egress interface ids (32 bits each).
    InterfaceIdsWide,
    /// Bit 10: wide namespace-specific data (64 bits).
    NamespaceDataWide,
    /// Bit 11: buffer occupancy.
    BufferOccupancy,
    /// Bit 22: opaque state snapshot (variable length).
    OpaqueState,
}

impl TraceField {
    /// Every field in wire order (the order nodes write them in).
    pub const ALL: [TraceField; 13] = [
        TraceField::HopLimitNodeId,
        TraceField::InterfaceIds,
        TraceField::TimestampSecs,
        TraceField::TimestampFrac,
        TraceField::TransitDelay,
        TraceField::NamespaceData,
        TraceField::QueueDepth,
        TraceField::ChecksumComplement,
        TraceField::HopLimitNodeIdWide,
        TraceField::InterfaceIdsWide,
        TraceField::NamespaceDataWide,
        TraceField::BufferOccupancy,
        TraceField::OpaqueState,
    ];

    /// The bit number in RFC 9197 numbering (0 = most significant).
    #[inline]
    pub const fn bit(self) -> u8 {
        match self {
            TraceField::HopLimitNodeId => 0,
            TraceField::InterfaceIds => 1,
            TraceField::TimestampSecs => 2,
            TraceField::TimestampFrac => 3,
            TraceField::TransitDelay => 4,
            TraceField::NamespaceData => 5,
            TraceField::QueueDepth => 6,
            TraceField::ChecksumComplement => 7,
            TraceField::HopLimitNodeIdWide => 8,
            TraceField::InterfaceIdsWide => 9,
            TraceField::NamespaceDataWide => 10,
            TraceField::BufferOccupancy => 11,
            TraceField::OpaqueState => 22,
        }
    }

    /// The name used in `.clt` files and in exported attributes.
    pub const fn name(self) -> &'static str {
        match self {
            TraceField::HopLimitNodeId => "hop_limit_node_id",
            TraceField::InterfaceIds => "interface_ids",
            TraceField::TimestampSecs => "timestamp_secs",
            TraceField::TimestampFrac => "timestamp_frac",
            TraceField::TransitDelay => "transit_delay",
            TraceField::NamespaceData => "namespace_data",
            TraceField::QueueDepth => "queue_depth",
            TraceField::ChecksumComplement => "checksum_complement",
            TraceField::HopLimitNodeIdWide => "hop_limit_node_id_wide",
            TraceField::InterfaceIdsWide => "interface_ids_wide",
            TraceField::NamespaceDataWide => "namespace_data_wide",
            TraceField::BufferOccupancy => "buffer_occupancy",
            TraceField::OpaqueState => "opaque_state",
        }
    }

    /// Looks a field up by its `.clt` name.
    pub fn from_name(name: &str) -> Option<TraceField> {
        TraceField::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The field's fixed size in bytes; 0 for the variable opaque state.
    #[allow(clippy::len_without_is_empty)] // a size in bytes, not a container
    pub const fn len(self) -> usize {
        match self {
            TraceField::HopLimitNodeIdWide
            | TraceField::InterfaceIdsWide
            | TraceField::NamespaceDataWide => 8,
            TraceField::OpaqueState => 0,
            _ => 4,
        }
    }

    /// The mask of this field's bit in a right-aligned 24-bit trace type.
    #[inline]
    pub const fn mask(self) -> u32 {
        1 << (23 - self.bit())
    }
}

impl fmt::Display for TraceField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A 24-bit IOAM-Trace-Type, right-aligned in a `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct TraceType(u32);

impl TraceType {
    /// Bits this crate knows the meaning of (0-11 and 22).
    pub const KNOWN: u32 = 0xfff002;

    /// Bits 12-21: undefined by RFC 9197, but each stands for a 4-byte field
    /// that a transit node fills with `0xffffffff` (Linux does) and that
    /// counts in NodeLen.
    pub const UNDEFINED: u32 = 0x000ffc;

    /// Bit 23: reserved, must be zero on transmission.
    pub const RESERVED: u32 = 0x000001;

    /// Wraps a raw 24-bit value; bits above 23 are dropped.
    #[inline]
    pub const fn from_bits(bits: u32) -> TraceType {
        TraceType(bits & 0x00ff_ffff)
    }

    /// The raw 24-bit value.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Builds a trace type from fields.
    pub fn from_fields(fields: impl IntoIterator<Item = TraceField>) -> TraceType {
        TraceType(fields.into_iter().fold(0, |acc, f| acc | f.mask()))
    }

    #[inline]
    pub const fn contains(self, field: TraceField) -> bool {
        self.0 & field.mask() != 0
    }

    /// The known fields present, in wire order.
    pub fn fields(self) -> impl Iterator<Item = TraceField> {
        TraceField::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }

    /// Bits set that this crate does not know (reserved or undefined).
    #[inline]
    pub const fn unknown_bits(self) -> u32 {
        self.0 & !Self::KNOWN
    }

    /// The number of undefined bits (12-21) set.
    #[inline]
    pub const fn undefined_count(self) -> u32 {
        (self.0 & Self::UNDEFINED).count_ones()
    }

    /// Whether bit 22 (opaque state snapshot) is set.
    #[inline]
    pub const fn has_opaque_state(self) -> bool {
        self.contains(TraceField::OpaqueState)
    }

    /// NodeLen: the size of one node's fixed fields in 4-byte units. Bits
    /// 0-7, 11 and the undefined bits 12-21 count 1, bits 8-10 count 2; the
    /// opaque state snapshot (bit 22) is variable and not counted. This is
    /// the value Linux checks NodeLen against (it drops packets that differ).
    #[inline]
    pub const fn node_len(self) -> u8 {
        // Bits 0-7 and 11-21 are short fields, bits 8-10 wide ones: at most
        // 19 * 1 + 3 * 2 = 25 units, which fits NodeLen's 5 bits. Table
        // lookups, not `count_ones`: without the POPCNT instruction (not in
        // baseline x86-64) that is a dozen instructions each, and this runs
        // for every packet the agent parses.
        let t = self.0 as usize;
        POPCOUNT[(t >> 16) & 0xff]
            + 2 * POPCOUNT[(t >> 13) & 0x7]
            + POPCOUNT[(t >> 10) & 0x7]
            + POPCOUNT[(t >> 2) & 0xff]
    }
}

/// The number of bits set in every byte.
static POPCOUNT: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = (i as u8).count_ones() as u8;
        i += 1;
    }
    table
};

impl fmt::Display for TraceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#08x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_rfc_numbering() {
        assert_eq!(TraceField::HopLimitNodeId.mask(), 0x80_0000);
        assert_eq!(TraceField::OpaqueState.mask(), 0x00_0002);
        let t = TraceType::from_fields([
            TraceField::HopLimitNodeId,
            TraceField::InterfaceIds,
            TraceField::QueueDepth,
        ]);
        assert_eq!(t.bits(), 0xc2_0000);
        assert_eq!(t.node_len(), 3);
        assert_eq!(t.unknown_bits(), 0);
    }

    #[test]
    fn wide_fields_count_two_units() {
        let t = TraceType::from_fields(TraceField::ALL);
        assert_eq!(t.node_len(), 9 + 2 * 3);
        assert_eq!(t.bits(), TraceType::KNOWN);
    }

    #[test]
    fn undefined_bits_count_one_unit_each() {
        // Bits 12 and 21 set beside bit 0: 3 units, as Linux computes it.
        let t = TraceType::from_bits(0x80_0804);
        assert_eq!(t.undefined_count(), 2);
        assert_eq!(t.node_len(), 3);
        // Every bit: 19 short + 3 wide fields.
        assert_eq!(TraceType::from_bits(0xff_ffff).node_len(), 25);
        // Bits 22 and 23 never count.
        assert_eq!(TraceType::from_bits(0x00_0003).node_len(), 0);
    }

    #[test]
    fn names_round_trip() {
        for f in TraceField::ALL {
            assert_eq!(TraceField::from_name(f.name()), Some(f));
        }
        assert_eq!(TraceField::from_name("queue"), None);
    }
}
