//! The IOAM option (RFC 9486) and its pre-allocated trace (RFC 9197
//! section 4.4).
//!
//! Node data is filled from the END backwards in time: the first node (the
//! encapsulating one) writes the last slot, at `RemainingLen * 4 - NodeLen *
//! 4`, then decrements RemainingLen. So the bytes after `RemainingLen * 4` are
//! the filled entries, the most recent hop first. [`TraceRepr::nodes`] turns
//! them around and yields them in path order, first hop first.

use crate::node::{FieldList, Layout, NodeEntry, NodeRepr, short_fields};
use crate::trace_type::TraceField;
use crate::trace_type::TraceType;
use crate::{Error, Result, be, enum_with_unknown, need};
use std::fmt;

/// Zero bytes that pre-allocated traces and padding borrow.
pub(crate) static ZEROS: [u8; 256] = [0; 256];
/// All-ones bytes for undefined fields.
pub(crate) static ONES: [u8; 40] = [0xff; 40];

/// The most node data an IOAM option can hold: Opt Data Len (at most 255)
/// minus the 2-byte IOAM header and the 8-byte trace header, rounded down to
/// 4 bytes.
pub const MAX_NODE_DATA: usize = 244;

/// The most entries a trace can hold (every entry has at least 4 bytes).
pub const MAX_NODES: usize = 61;

enum_with_unknown! {
    /// The IOAM-Option-Type (RFC 9197 section 4.1, RFC 9326).
    pub enum IoamType(u8) {
        PreallocatedTrace = 0,
        IncrementalTrace = 1,
        ProofOfTransit = 2,
        EdgeToEdge = 3,
        DirectExport = 4,
    }
}

/// The 4-bit trace flags; the most significant is Overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The Overflow flag (RFC 9197): a node had no room for its entry.
    pub const OVERFLOW: u8 = 0b1000;
    /// The Loopback flag (RFC 9322).
    pub const LOOPBACK: u8 = 0b0100;
    /// The Active flag (RFC 9322).
    pub const ACTIVE: u8 = 0b0010;

    /// Wraps 4 bits; higher bits are dropped.
    pub const fn from_bits(bits: u8) -> TraceFlags {
        TraceFlags(bits & 0x0f)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn overflow(self) -> bool {
        self.0 & Self::OVERFLOW != 0
    }

    pub const fn with_overflow(self, overflow: bool) -> TraceFlags {
        if overflow {
            TraceFlags(self.0 | Self::OVERFLOW)
        } else {
            TraceFlags(self.0 & !Self::OVERFLOW)
        }
    }
}

// The pre-allocated trace, after the IOAM option's Reserved and IOAM-Type
// bytes (RFC 9197 section 4.4):
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |        Namespace-ID           |NodeLen  | Flags | RemainingLen|
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |               IOAM-Trace-Type                 |  Reserved     |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |      free space (RemainingLen * 4 bytes, zero when sent)      |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |      entry of the most recent node                            |
// |      ...                                                      |
// |      entry of the first node (the encapsulating node)         |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
mod field {
    use crate::field::Field;
    pub const NAMESPACE_ID: Field = 0..2;
    /// NodeLen (5 bits), Flags (4 bits), RemainingLen (7 bits).
    pub const LENS: Field = 2..4;
    pub const TRACE_TYPE: Field = 4..7;
    pub const RESERVED: usize = 7;
    pub const NODE_DATA: usize = 8;
}

/// The length of the trace header before the node data.
pub const TRACE_HEADER_LEN: usize = field::NODE_DATA;

/// A zero-copy view of a pre-allocated trace: the trace header and the node
/// data after it (the buffer's end is the node data's end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TracePacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        TracePacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let trace = Self::new_unchecked(buffer);
        trace.check_len()?;
        Ok(trace)
    }

    /// Ensures no accessor panics: the 8-byte header, and node data of at
    /// least RemainingLen * 4 bytes (Linux drops the packet otherwise).
    /// Invalidated by [`set_remaining_len`](Self::set_remaining_len).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        need("trace header", TRACE_HEADER_LEN, len)?;
        need(
            "pre-allocated node data",
            TRACE_HEADER_LEN + usize::from(self.remaining_len()) * 4,
            len,
        )
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn namespace_id(&self) -> u16 {
        be::u16(self.buffer.as_ref(), field::NAMESPACE_ID.start)
    }

    /// NodeLen: the fixed part of one entry, in 4-byte units.
    #[inline]
    pub fn node_len(&self) -> u8 {
        self.buffer.as_ref()[field::LENS.start] >> 3
    }

    #[inline]
    pub fn flags(&self) -> TraceFlags {
        let b = &self.buffer.as_ref()[field::LENS];
        TraceFlags::from_bits(((b[0] & 0x07) << 1) | (b[1] >> 7))
    }

    /// RemainingLen: free node data, in 4-byte units.
    #[inline]
    pub fn remaining_len(&self) -> u8 {
        self.buffer.as_ref()[field::LENS.start + 1] & 0x7f
    }

    #[inline]
    pub fn trace_type(&self) -> TraceType {
        TraceType::from_bits(be::u32(self.buffer.as_ref(), field::TRACE_TYPE.start) >> 8)
    }

    #[inline]
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TracePacket<&'a T> {
    /// All node data: free space, then the filled entries.
    #[inline]
    pub fn node_data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::NODE_DATA..]
    }

    /// The filled entries, the most recent node first.
    #[inline]
    pub fn filled(&self) -> &'a [u8] {
        &self.node_data()[usize::from(self.remaining_len()) * 4..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TracePacket<T> {
    pub fn set_namespace_id(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::NAMESPACE_ID.start, value);
    }

    /// Sets NodeLen (5 bits).
    pub fn set_node_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::LENS.start];
        *b = (*b & 0x07) | (value << 3);
    }

    pub fn set_flags(&mut self, value: TraceFlags) {
        let b = &mut self.buffer.as_mut()[field::LENS];
        b[0] = (b[0] & 0xf8) | (value.bits() >> 1);
        b[1] = (b[1] & 0x7f) | ((value.bits() & 1) << 7);
    }

    /// Sets RemainingLen (7 bits).
    pub fn set_remaining_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::LENS.start + 1];
        *b = (*b & 0x80) | (value & 0x7f);
    }

    pub fn set_trace_type(&mut self, value: TraceType) {
        let b = &mut self.buffer.as_mut()[field::TRACE_TYPE];
        b.copy_from_slice(&value.bits().to_be_bytes()[1..]);
    }

    pub fn set_reserved(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED] = value;
    }

    /// All node data, mutable.
    pub fn node_data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::NODE_DATA..]
    }
}

/// A pre-allocated trace, parsed. The node data is borrowed whole (free
/// space included), so emitting reproduces the input; [`nodes`](Self::nodes)
/// decodes the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRepr<'a> {
    pub namespace_id: u16,
    /// NodeLen as on the wire; [`parse`](Self::parse) checks that it equals
    /// `trace_type.node_len()`.
    pub node_len: u8,
    pub flags: TraceFlags,
    pub remaining_len: u8,
    pub trace_type: TraceType,
    pub reserved: u8,
    /// Free space (`remaining_len * 4` bytes), then the filled entries.
    pub node_data: &'a [u8],
}

impl<'a> TraceRepr<'a> {
    /// An empty trace of `size` bytes of node data, as an encapsulating node
    /// sends it before writing its own entry: zeroed, RemainingLen =
    /// size / 4. `size` is a multiple of 4 from 4 to 244; the trace type has
    /// no undefined or reserved bits (RFC 9197: the encapsulating node sets
    /// them to zero).
    pub fn new(
        namespace_id: u16,
        trace_type: TraceType,
        size: usize,
    ) -> Result<TraceRepr<'static>> {
        if size == 0 || size % 4 != 0 || size > MAX_NODE_DATA {
            return Err(Error::Invalid {
                what: "trace size must be a multiple of 4 from 4 to 244",
                value: size as u64,
            });
        }
        if trace_type.unknown_bits() != 0 {
            return Err(Error::Invalid {
                what: "trace type sets undefined or reserved bits",
                value: u64::from(trace_type.unknown_bits()),
            });
        }
        Ok(TraceRepr {
            namespace_id,
            node_len: trace_type.node_len(),
            flags: TraceFlags::default(),
            remaining_len: (size / 4) as u8,
            trace_type,
            reserved: 0,
            node_data: &ZEROS[..size],
        })
    }

    /// Parses a view. Fails on a NodeLen that does not match the trace type,
    /// on node data longer than [`MAX_NODE_DATA`] + 1, and when the filled
    /// part does not split into whole entries.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(trace: &TracePacket<&'a T>) -> Result<TraceRepr<'a>> {
        trace.check_len()?;
        let trace_type = trace.trace_type();
        let expected = trace_type.node_len();
        if trace.node_len() != expected {
            return Err(Error::NodeLenMismatch {
                trace_type,
                found: trace.node_len(),
                expected,
            });
        }
        let node_data = trace.node_data();
        // 255 - 10: what an IOAM option can carry, unrounded.
        if node_data.len() > MAX_NODE_DATA + 1 {
            return Err(Error::Invalid {
                what: "node data longer than an ioam option can carry",
                value: node_data.len() as u64,
            });
        }
        let repr = TraceRepr {
            namespace_id: trace.namespace_id(),
            node_len: trace.node_len(),
            flags: trace.flags(),
            remaining_len: trace.remaining_len(),
            trace_type,
            reserved: trace.reserved(),
            node_data,
        };
        repr.check_entries()?;
        Ok(repr)
    }

    /// Whether a node found no room for its entry.
    pub fn overflow(&self) -> bool {
        self.flags.overflow()
    }

    /// The free part of the node data.
    pub fn free(&self) -> &'a [u8] {
        let at = (usize::from(self.remaining_len) * 4).min(self.node_data.len());
        &self.node_data[..at]
    }

    /// The filled entries as on the wire, the most recent node first.
    #[inline]
    pub fn filled(&self) -> &'a [u8] {
        let at = (usize::from(self.remaining_len) * 4).min(self.node_data.len());
        &self.node_data[at..]
    }

    /// Checks that the filled part splits into whole entries; returns their
    /// number.
    #[inline(always)]
    pub fn check_entries(&self) -> Result<usize> {
        let filled = self.filled();
        let partial = Error::PartialNode {
            filled: filled.len(),
        };
        if !self.trace_type.has_opaque_state() {
            let stride = usize::from(self.trace_type.node_len()) * 4;
            return match (stride, filled.len()) {
                (_, 0) => Ok(0),
                (0, _) => Err(partial),
                (s, n) => {
                    let count = whole_entries(n, s);
                    if count * s == n {
                        Ok(count)
                    } else {
                        Err(partial)
                    }
                }
            };
        }
        let mut at = 0;
        let mut count = 0;
        while at < filled.len() {
            at += NodeRepr::entry_len(self.trace_type, &filled[at..]).map_err(|_| partial)?;
            count += 1;
        }
        Ok(count)
    }

    /// The filled entries decoded, in path order: the first node (the
    /// encapsulating one, which wrote the last slot) first, the most recent
    /// node last. Reprs from [`parse`](Self::parse) always decode whole; for
    /// a hand-built repr the iteration stops at the first malformed entry.
    #[inline]
    pub fn nodes(&self) -> Nodes<'a> {
        Nodes(self.entries())
    }

    /// The same entries as zero-copy views: read only the fields you need.
    #[inline]
    pub fn entries(&self) -> Entries<'a> {
        Entries::new(self.trace_type, self.filled())
    }

    /// Calls `f(hop, field, value)` for every fixed field (bits 0-11) of
    /// every filled entry: the hops of [`entries`](Self::entries), in path
    /// order (hop 0 is the first node), each hop's fields in wire order.
    /// Returns the number of hops visited.
    ///
    /// The value is the field as on the wire, big-endian: a 4-byte field
    /// zero-extended, a wide one (bits 8-10) as 8 bytes, so the hop limit is
    /// the top byte of bits 0 and 8 and the ingress id the top half of bits
    /// 1 and 9 (see [`NodeEntry`] for split forms). The undefined fields
    /// (bits 12-21) and the opaque state snapshot (bit 22) are not visited;
    /// read them through [`entries`](Self::entries).
    ///
    /// This is the fastest way to decode every field of a trace: the field
    /// plan is computed once, and for trace types without a snapshot the
    /// entries are fixed-size chunks read without per-field lookups.
    #[inline]
    pub fn for_each_field(&self, mut f: impl FnMut(usize, TraceField, u64)) -> usize {
        let t = self.trace_type.bits();
        let filled = self.filled();
        if t & TraceField::OpaqueState.mask() != 0 {
            let fields = FieldList::new(self.trace_type);
            let mut hops = 0;
            for entry in self.entries() {
                visit_entry(hops, fields.fields(), entry.as_bytes(), &mut f);
                hops += 1;
            }
            return hops;
        }
        let stride = usize::from(self.trace_type.node_len()) * 4;
        if t & 0x00_f000 != 0 {
            // Bits 8-11: wide fields, or buffer occupancy after them.
            let fields = FieldList::new(self.trace_type);
            let mut hops = 0;
            for entry in entries_back_to_front(filled, stride) {
                visit_entry(hops, fields.fields(), entry, &mut f);
                hops += 1;
            }
            return hops;
        }
        // Only 4-byte fields (bits 0-7), back to back from each entry's
        // start: their list straight from a table, and one loop per field
        // count, unrolled over the fields.
        let fields = short_fields(t);
        macro_rules! fixed {
            ($($n:literal)*) => {
                match fields.len() {
                    $($n => visit_fixed::<$n>(filled, stride, fields, &mut f),)*
                    _ => 0,
                }
            };
        }
        fixed!(0 1 2 3 4 5 6 7 8)
    }

    /// The emitted length: trace header and node data.
    pub fn buffer_len(&self) -> usize {
        TRACE_HEADER_LEN + self.node_data.len()
    }

    /// Writes the trace at the start of `trace`'s buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, trace: &mut TracePacket<T>) -> Result<()> {
        need(
            "trace buffer",
            self.buffer_len(),
            trace.buffer.as_ref().len(),
        )?;
        if self.node_len > 0x1f || self.remaining_len > 0x7f {
            return Err(Error::Invalid {
                what: "node length exceeds 5 bits or remaining length 7 bits",
                value: u64::from(self.node_len.max(self.remaining_len)),
            });
        }
        if usize::from(self.remaining_len) * 4 > self.node_data.len() {
            return Err(Error::Invalid {
                what: "remaining length exceeds the node data",
                value: u64::from(self.remaining_len),
            });
        }
        trace.set_namespace_id(self.namespace_id);
        trace.set_node_len(self.node_len);
        trace.set_flags(self.flags);
        trace.set_remaining_len(self.remaining_len);
        trace.set_trace_type(self.trace_type);
        trace.set_reserved(self.reserved);
        trace.node_data_mut()[..self.node_data.len()].copy_from_slice(self.node_data);
        Ok(())
    }
}

impl fmt::Display for TraceRepr<'_> {
    /// One line for the header, then one indented line per node in path
    /// order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ioam pre-allocated trace ns={} type={} [",
            self.namespace_id, self.trace_type
        )?;
        for (i, field) in self.trace_type.fields().enumerate() {
            write!(f, "{}{field}", if i == 0 { "" } else { "," })?;
        }
        write!(
            f,
            "] node_len={} remaining_len={} flags={:#x}{} nodes={}",
            self.node_len,
            self.remaining_len,
            self.flags.bits(),
            if self.overflow() { " overflow" } else { "" },
            self.nodes().len()
        )?;
        for (hop, node) in self.nodes().enumerate() {
            write!(f, "\n    hop {hop}: {node}")?;
        }
        Ok(())
    }
}

/// Reciprocals for [`whole_entries`]: `RECIPROCAL[s] = ceil(2^16 / s)`.
static RECIPROCAL: [u32; 101] = {
    let mut table = [0u32; 101];
    let mut s = 1;
    while s < 101 {
        table[s] = 65536u32.div_ceil(s as u32);
        s += 1;
    }
    table
};

/// `len / stride` for the entry sizes of a trace (`stride` 1 to 100 bytes)
/// and node data shorter than 256 bytes, by a multiplication: a division's
/// latency is most of a short trace's decode time. The product's error,
/// under `len / 2^16 < 1/256`, never crosses an integer since `len / stride`
/// is at most `1 - 1/100` below the next one. Anything else divides.
#[inline(always)]
fn whole_entries(len: usize, stride: usize) -> usize {
    match RECIPROCAL.get(stride) {
        Some(&r) if len < 256 && r != 0 => ((len as u32 * r) >> 16) as usize,
        _ if stride == 0 => 0,
        _ => (len as u32 / stride as u32) as usize,
    }
}

/// The whole `stride`-byte entries of `filled` (as `chunks_exact`), last
/// first: path order. One division for the count, by multiplication.
#[inline(always)]
fn entries_back_to_front(filled: &[u8], stride: usize) -> impl Iterator<Item = &[u8]> {
    let count = whole_entries(filled.len(), stride);
    let mut rest = filled.get(..count * stride).unwrap_or(&[]);
    std::iter::from_fn(move || {
        if stride == 0 {
            return None;
        }
        let (head, entry) = rest.split_at_checked(rest.len().checked_sub(stride)?)?;
        rest = head;
        Some(entry)
    })
}

/// [`TraceRepr::for_each_field`] for entries of `stride` bytes that start
/// with `N` 4-byte fields.
#[inline(always)]
fn visit_fixed<const N: usize>(
    filled: &[u8],
    stride: usize,
    fields: &[TraceField],
    f: &mut impl FnMut(usize, TraceField, u64),
) -> usize {
    let Some(fields) = fields.first_chunk::<N>() else {
        return 0;
    };
    let mut hops = 0;
    for entry in entries_back_to_front(filled, stride) {
        let Some(words) = entry.get(..4 * N) else {
            break;
        };
        for (&field, word) in fields.iter().zip(words.chunks_exact(4)) {
            let w = word
                .first_chunk::<4>()
                .map_or(0, |w| u32::from_be_bytes(*w));
            f(hops, field, u64::from(w));
        }
        hops += 1;
    }
    hops
}

/// Visits the fixed fields at the start of `entry`, 4 or 8 bytes each in
/// `fields` order; stops early if the entry is short (never, for entries
/// checked against their trace type).
#[inline(always)]
fn visit_entry(
    hop: usize,
    fields: &[TraceField],
    mut entry: &[u8],
    f: &mut impl FnMut(usize, TraceField, u64),
) {
    for &field in fields {
        let value = if matches!(
            field,
            TraceField::HopLimitNodeIdWide
                | TraceField::InterfaceIdsWide
                | TraceField::NamespaceDataWide
        ) {
            let Some((w, rest)) = entry.split_first_chunk::<8>() else {
                return;
            };
            entry = rest;
            u64::from_be_bytes(*w)
        } else {
            let Some((w, rest)) = entry.split_first_chunk::<4>() else {
                return;
            };
            entry = rest;
            u64::from(u32::from_be_bytes(*w))
        };
        f(hop, field, value);
    }
}

/// The entries of a trace in path order (see [`TraceRepr::entries`]), as
/// zero-copy [`NodeEntry`] views. Allocation-free: fixed-size entries are
/// read back to front; with an opaque state snapshot (variable size) the
/// entry starts are found in one forward pass into a fixed array.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    layout: Layout,
    filled: &'a [u8],
    /// Entry size when fixed; 0 when the starts are in `starts`.
    stride: usize,
    starts: [u8; MAX_NODES],
    /// Whole entries found.
    count: usize,
    /// Path-order positions not yet yielded: `front..back`.
    front: usize,
    back: usize,
}

impl<'a> Entries<'a> {
    #[inline]
    fn new(trace_type: TraceType, filled: &'a [u8]) -> Entries<'a> {
        let layout = Layout::new(trace_type);
        let mut entries = Entries {
            layout,
            filled,
            stride: 0,
            starts: [0; MAX_NODES],
            count: 0,
            front: 0,
            back: 0,
        };
        match layout.stride() {
            Some(0) => {}
            Some(stride) => {
                entries.stride = stride;
                // By multiplication: a division is most of a short decode.
                entries.count = whole_entries(filled.len(), stride);
            }
            None => {
                let mut at = 0usize;
                while at < filled.len() && entries.count < MAX_NODES && at <= usize::from(u8::MAX) {
                    match layout.entry_len(&filled[at..]) {
                        Some(len) => {
                            entries.starts[entries.count] = at as u8;
                            entries.count += 1;
                            at += len;
                        }
                        None => break,
                    }
                }
            }
        }
        entries.back = entries.count;
        entries
    }

    /// The entry at path-order position `pos` (0 = first hop): wire entry
    /// `count - 1 - pos`.
    #[inline(always)]
    fn entry(&self, pos: usize) -> Option<NodeEntry<'a>> {
        let wire = self.count.checked_sub(pos + 1)?;
        let start = if self.stride > 0 {
            wire * self.stride
        } else {
            usize::from(*self.starts.get(wire)?)
        };
        NodeEntry::with_layout(self.layout, self.filled.get(start..)?)
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = NodeEntry<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<NodeEntry<'a>> {
        if self.front >= self.back {
            return None;
        }
        let entry = self.entry(self.front);
        self.front += 1;
        if entry.is_none() {
            // A malformed entry (hand-built repr): stop.
            self.front = self.back;
        }
        entry
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Entries<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        let entry = self.entry(self.back);
        if entry.is_none() {
            self.back = self.front;
        }
        entry
    }
}

impl ExactSizeIterator for Entries<'_> {}

/// The entries of a trace in path order, decoded (see [`TraceRepr::nodes`]).
#[derive(Debug, Clone)]
pub struct Nodes<'a>(Entries<'a>);

impl<'a> Iterator for Nodes<'a> {
    type Item = NodeRepr<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<NodeRepr<'a>> {
        self.0.next().map(|e| e.to_repr())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Nodes<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|e| e.to_repr())
    }
}

impl ExactSizeIterator for Nodes<'_> {}

/// The IOAM option's data after the option type and length bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoamBody<'a> {
    /// IOAM-Type 0.
    PreallocatedTrace(TraceRepr<'a>),
    /// Any other IOAM type, kept raw (never `PreallocatedTrace`).
    Other { ioam_type: IoamType, data: &'a [u8] },
}

// The IOAM option in a Hop-by-Hop header (RFC 9486 section 2):
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Option Type  |  Opt Data Len |   Reserved    |   IOAM Type   |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                     IOAM data (the trace) ...                 |
//
// The option type byte must sit at a 4n offset from the start of the IPv6
// header (Linux drops the packet otherwise); Opt Data Len must be at least
// 10 + RemainingLen * 4.
mod ioam_field {
    pub const RESERVED: usize = 0;
    pub const IOAM_TYPE: usize = 1;
    pub const DATA: usize = 2;
}

/// An IOAM option's data, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoamRepr<'a> {
    pub reserved: u8,
    pub body: IoamBody<'a>,
}

impl<'a> IoamRepr<'a> {
    /// Parses the option data (after the type and length bytes).
    #[inline]
    pub fn parse(data: &'a [u8]) -> Result<IoamRepr<'a>> {
        need("ioam option header", ioam_field::DATA, data.len())?;
        let body = &data[ioam_field::DATA..];
        Ok(IoamRepr {
            reserved: data[ioam_field::RESERVED],
            body: match IoamType::from(data[ioam_field::IOAM_TYPE]) {
                IoamType::PreallocatedTrace => {
                    IoamBody::PreallocatedTrace(TraceRepr::parse(&TracePacket::new_checked(body)?)?)
                }
                ioam_type => IoamBody::Other {
                    ioam_type,
                    data: body,
                },
            },
        })
    }

    /// The pre-allocated trace, if that is what this option carries.
    #[inline]
    pub fn trace(&self) -> Option<&TraceRepr<'a>> {
        match &self.body {
            IoamBody::PreallocatedTrace(trace) => Some(trace),
            IoamBody::Other { .. } => None,
        }
    }

    /// The option data length (Opt Data Len).
    pub fn buffer_len(&self) -> usize {
        ioam_field::DATA
            + match &self.body {
                IoamBody::PreallocatedTrace(trace) => trace.buffer_len(),
                IoamBody::Other { data, .. } => data.len(),
            }
    }

    /// Writes the option data at the start of `data`.
    pub fn emit(&self, data: &mut [u8]) -> Result<()> {
        need("ioam option buffer", self.buffer_len(), data.len())?;
        data[ioam_field::RESERVED] = self.reserved;
        match &self.body {
            IoamBody::PreallocatedTrace(trace) => {
                data[ioam_field::IOAM_TYPE] = IoamType::PreallocatedTrace.into();
                trace.emit(&mut TracePacket::new_unchecked(
                    &mut data[ioam_field::DATA..],
                ))
            }
            IoamBody::Other {
                ioam_type,
                data: raw,
            } => {
                if *ioam_type == IoamType::PreallocatedTrace {
                    return Err(Error::Invalid {
                        what: "a raw ioam body cannot have type 0 (pre-allocated trace)",
                        value: 0,
                    });
                }
                data[ioam_field::IOAM_TYPE] = (*ioam_type).into();
                data[ioam_field::DATA..ioam_field::DATA + raw.len()].copy_from_slice(raw);
                Ok(())
            }
        }
    }
}

impl fmt::Display for IoamRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            IoamBody::PreallocatedTrace(trace) => write!(f, "{trace}"),
            IoamBody::Other { ioam_type, data } => {
                write!(f, "ioam type {} len {}", u8::from(*ioam_type), data.len())
            }
        }
    }
}

/// What [`fill_node`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// The entry was written at this offset of the node data.
    Filled { offset: usize },
    /// No room: the Overflow flag is now set and nothing was written.
    Overflow,
    /// The Overflow flag was already set: nothing was done.
    AlreadyOverflowed,
}

/// Adds `node`'s entry to a trace the way a transit node does (Linux's
/// `ioam6_fill_trace_data`): nothing if Overflow is set; Overflow set if
/// RemainingLen is 0 or smaller than NodeLen plus the snapshot's length;
/// otherwise the entry is written at `RemainingLen * 4 - (NodeLen + snapshot)
/// * 4` and RemainingLen decremented by NodeLen plus the snapshot. Fields the
/// trace type asks for that `node` lacks are written as all ones (see
/// [`NodeRepr::emit`]).
///
/// The encapsulating node fills its own entry the same way, as the first
/// node. Fails on a NodeLen that does not match the trace type (Linux drops
/// such packets) and on a malformed `node`.
pub fn fill_node<T: AsRef<[u8]> + AsMut<[u8]>>(
    trace: &mut TracePacket<T>,
    node: &NodeRepr<'_>,
) -> Result<FillOutcome> {
    trace.check_len()?;
    let trace_type = trace.trace_type();
    let expected = trace_type.node_len();
    if trace.node_len() != expected {
        return Err(Error::NodeLenMismatch {
            trace_type,
            found: trace.node_len(),
            expected,
        });
    }
    if trace.flags().overflow() {
        return Ok(FillOutcome::AlreadyOverflowed);
    }
    let len = node.buffer_len(trace_type);
    let units = len / 4;
    let remaining = usize::from(trace.remaining_len());
    if remaining == 0 || remaining < units {
        let flags = trace.flags().with_overflow(true);
        trace.set_flags(flags);
        return Ok(FillOutcome::Overflow);
    }
    let offset = (remaining - units) * 4;
    node.emit(trace_type, &mut trace.node_data_mut()[offset..offset + len])?;
    trace.set_remaining_len((remaining - units) as u8);
    Ok(FillOutcome::Filled { offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_entries_divides_exactly() {
        // Every node data length an option can carry, every entry size, and
        // the division path beyond them.
        for len in 0usize..1024 {
            for stride in 0..=104 {
                let expected = len.checked_div(stride).unwrap_or(0);
                assert_eq!(whole_entries(len, stride), expected, "{len} / {stride}");
            }
        }
    }

    #[test]
    fn for_each_field_by_hand() {
        // Two hops of hop_limit_node_id | interface_ids_wide | buffer
        // occupancy (a wide field, so the general walk), 16 bytes each,
        // most recent first on the wire, after 4 free bytes.
        let trace_type = TraceType::from_fields([
            TraceField::HopLimitNodeId,
            TraceField::InterfaceIdsWide,
            TraceField::BufferOccupancy,
        ]);
        let mut node_data = vec![0u8; 4];
        for (hop_limit, node_id) in [(62u8, 2u8), (63, 1)] {
            node_data.extend_from_slice(&[hop_limit, 0, 0, node_id]);
            node_data.extend_from_slice(&[0, 0, 0, 10 + node_id, 0, 0, 0, 20 + node_id]);
            node_data.extend_from_slice(&[0, 0, 1, node_id]);
        }
        let trace = TraceRepr {
            namespace_id: 1,
            node_len: trace_type.node_len(),
            flags: TraceFlags::default(),
            remaining_len: 1,
            trace_type,
            reserved: 0,
            node_data: &node_data,
        };
        let mut seen = Vec::new();
        assert_eq!(trace.for_each_field(|h, f, v| seen.push((h, f, v))), 2);
        assert_eq!(
            seen,
            [
                (0, TraceField::HopLimitNodeId, 0x3f00_0001),
                (0, TraceField::InterfaceIdsWide, (11 << 32) | 21),
                (0, TraceField::BufferOccupancy, 0x101),
                (1, TraceField::HopLimitNodeId, 0x3e00_0002),
                (1, TraceField::InterfaceIdsWide, (12 << 32) | 22),
                (1, TraceField::BufferOccupancy, 0x102),
            ]
        );
    }
}
