//! Wire formats of CLT: the IPv6 Hop-by-Hop header, the IOAM pre-allocated
//! trace option (RFC 9197, RFC 9486) and the CLT trace-context option.
//!
//! See `docs/wire-format.md` for the byte layout. The crate follows smoltcp's
//! `wire` contract: `Packet<T: AsRef<[u8]>>` views are zero-copy, `new_checked`
//! validates lengths once and no accessor panics afterwards; `Repr` types are the
//! owned, high-level form with `parse`, `buffer_len` and `emit`.
#![forbid(unsafe_code)]

pub mod trace_type;

pub use trace_type::{TraceField, TraceType};
