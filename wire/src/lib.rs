//! Wire formats of CLT: the IPv6 header, the Hop-by-Hop header, the IOAM
//! pre-allocated trace option (RFC 9197, RFC 9486) and the CLT trace-context
//! option.
//!
//! See `docs/wire-format.md` for the byte layout. The crate follows smoltcp's
//! `wire` contract:
//!
//! * `Xxx<T: AsRef<[u8]>>` types ([`Ipv6Packet`], [`HbhHeader`], [`Ipv6Option`],
//!   [`TracePacket`]) are zero-copy views. `new_checked` validates the lengths
//!   once; after that no accessor panics. Setters exist when `T: AsMut<[u8]>`.
//! * `XxxRepr` types are the high-level form, with `parse(&view) -> Result`,
//!   `buffer_len()` and `emit(&mut view)`. Reprs borrow variable-length parts
//!   from the parsed buffer (no allocation), and keep every byte they do not
//!   interpret (padding contents, unknown options, the free part of a trace),
//!   so `emit(parse(x)) == x` for every `x` that parses.
//! * Every enum of wire values has an `Unknown(raw)` variant.
//!
//! Nothing in this crate panics on input: parsers return [`Error`], and the
//! option walk and the extension-header walk are bounded.
//!
//! Entry points:
//! * the agent: [`PacketRepr::parse`] over a captured IPv6 packet, then
//!   [`HbhRepr::ioam_trace`], [`TraceRepr::nodes`] (decoded, path order),
//!   [`TraceRepr::entries`] (zero-copy [`NodeEntry`] views, path order) or
//!   [`TraceRepr::for_each_field`] (every field of every hop, the fastest)
//!   and [`HbhRepr::clt`];
//! * the socket API: [`HbhBuilder`], which emits the bytes for
//!   `setsockopt(IPV6_HOPOPTS)`;
//! * transit-hop emulation (tests, P4 comparisons): [`fill_node`].
#![forbid(unsafe_code)]

pub mod clt;
pub mod hbh;
pub mod ioam;
pub mod ipv6;
pub mod node;
pub mod option;
pub mod packet;
pub mod trace_type;

pub use clt::CltRepr;
pub use hbh::{HbhBuilder, HbhHeader, HbhOptions, HbhRepr};
pub use ioam::{
    FillOutcome, IoamBody, IoamRepr, IoamType, Nodes, TraceFlags, TracePacket, TraceRepr, fill_node,
};
pub use ipv6::{IpProtocol, Ipv6Packet, Ipv6Repr, UpperLayer, upper_layer};
pub use node::{
    HopLimitNodeId, HopLimitNodeIdWide, InterfaceIds, InterfaceIdsWide, NodeEntry, NodeRepr,
    OpaqueState,
};
pub use option::{Ipv6Option, OptionRepr, OptionType, OptionsIter};
pub use packet::{PacketRepr, Printer};
pub use trace_type::{TraceField, TraceType};

/// Every way a buffer or a representation can be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the structure does.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// The IPv6 version field is not 6.
    #[error("not an ipv6 packet: version {0}")]
    BadVersion(u8),
    /// More extension headers before the upper layer than the walk allows.
    #[error("more than {max} extension headers")]
    TooManyExtensionHeaders { max: usize },
    /// The CLT option's data is not a 16-byte trace id and an 8-byte span id.
    #[error("clt option data is {0} bytes, expected 24")]
    BadCltLength(usize),
    /// NodeLen disagrees with the trace type (Linux drops such packets).
    #[error("node length {found} does not match trace type {trace_type} (expected {expected})")]
    NodeLenMismatch {
        trace_type: TraceType,
        found: u8,
        expected: u8,
    },
    /// The filled part of the node data is not a whole number of entries.
    #[error("filled node data ({filled} bytes) does not split into whole node entries")]
    PartialNode { filled: usize },
    /// A value given to an emitter or builder is out of range.
    #[error("{what} (got {value})")]
    Invalid { what: &'static str, value: u64 },
}

/// The result type of this crate.
pub type Result<T> = core::result::Result<T, Error>;

/// Returns `Err(Truncated)` unless `have >= need`.
#[inline]
pub(crate) fn need(what: &'static str, need: usize, have: usize) -> Result<()> {
    if have < need {
        Err(Error::Truncated { what, need, have })
    } else {
        Ok(())
    }
}

/// Byte ranges of fields, as in smoltcp.
pub(crate) mod field {
    pub type Field = core::ops::Range<usize>;
}

/// Big-endian reads at offsets the caller has already length-checked.
pub(crate) mod be {
    #[inline]
    pub fn u16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    #[inline]
    pub fn u32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    #[inline]
    pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    #[inline]
    pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// Declares a `u8`-backed enum of wire values with an `Unknown(raw)` variant,
/// so that every byte converts to a variant and back unchanged.
macro_rules! enum_with_unknown {
    (
        $(#[$meta:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+,
            /// A value this crate has no name for.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant ),+,
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value ),+,
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use enum_with_unknown;
