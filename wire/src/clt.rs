//! The CLT trace-context option: the request's W3C trace id and span id in
//! their own Hop-by-Hop option (type 0x1E), so stock IOAM nodes skip it and
//! write their node data where RFC 9197 says.

use crate::{Error, Result, need};
use std::fmt;

// The CLT option (type 0x1E, Opt Data Len 24). In the headers built by
// `HbhBuilder` it starts at offset 2 of the Hop-by-Hop header (alignment
// 4n+2), so both ids are 4-byte aligned.
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//                                 +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//                                 |  Type = 0x1E  |  Len = 24     |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                                                               |
// +                    Trace ID (16 bytes)                        +
// |                                                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                    Span ID (8 bytes)                          |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
mod field {
    use crate::field::Field;
    pub const TRACE_ID: Field = 0..16;
    pub const SPAN_ID: Field = 16..24;
}

/// The option's data length.
pub const DATA_LEN: usize = field::SPAN_ID.end;

/// The trace context carried by the CLT option, byte for byte as in a W3C
/// `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CltRepr {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl CltRepr {
    /// Parses the option data (exactly 24 bytes).
    #[inline]
    pub fn parse(data: &[u8]) -> Result<CltRepr> {
        if data.len() != DATA_LEN {
            return Err(Error::BadCltLength(data.len()));
        }
        let mut repr = CltRepr::default();
        repr.trace_id.copy_from_slice(&data[field::TRACE_ID]);
        repr.span_id.copy_from_slice(&data[field::SPAN_ID]);
        Ok(repr)
    }

    /// The option data as it is on the wire.
    #[inline]
    pub fn from_bytes(data: &[u8; DATA_LEN]) -> CltRepr {
        let (trace_id, span_id) = data.split_at(16);
        let mut repr = CltRepr::default();
        repr.trace_id.copy_from_slice(trace_id);
        repr.span_id.copy_from_slice(span_id);
        repr
    }

    /// Builds it from the integer forms OpenTelemetry SDKs use.
    pub fn from_ids(trace_id: u128, span_id: u64) -> CltRepr {
        CltRepr {
            trace_id: trace_id.to_be_bytes(),
            span_id: span_id.to_be_bytes(),
        }
    }

    pub fn trace_id_u128(&self) -> u128 {
        u128::from_be_bytes(self.trace_id)
    }

    pub fn span_id_u64(&self) -> u64 {
        u64::from_be_bytes(self.span_id)
    }

    /// The trace id as the IOAM agent API's `(TraceId_High, TraceId_Low)`.
    pub fn trace_id_high_low(&self) -> (u64, u64) {
        let id = self.trace_id_u128();
        ((id >> 64) as u64, id as u64)
    }

    /// The option data length (24).
    pub const fn buffer_len(&self) -> usize {
        DATA_LEN
    }

    /// Writes the option data (24 bytes) at the start of `data`.
    pub fn emit(&self, data: &mut [u8]) -> Result<()> {
        need("clt option data", DATA_LEN, data.len())?;
        data[field::TRACE_ID].copy_from_slice(&self.trace_id);
        data[field::SPAN_ID].copy_from_slice(&self.span_id);
        Ok(())
    }
}

impl fmt::Display for CltRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("clt trace_id=")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str(" span_id=")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ids of the W3C trace-context example
    // 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01.
    static DATA: [u8; 24] = [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, // trace id, high 8 bytes
        0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c, // trace id, low 8 bytes
        0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31, // span id
    ];

    #[test]
    fn parse_emit_and_print() {
        let repr = CltRepr::from_ids(0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331);
        assert_eq!(CltRepr::parse(&DATA).unwrap(), repr);
        let mut out = [0u8; 24];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, DATA);
        assert_eq!(
            repr.to_string(),
            "clt trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331"
        );
        assert_eq!(
            repr.trace_id_high_low(),
            (0x0af7651916cd43dd, 0x8448eb211c80319c)
        );
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert_eq!(CltRepr::parse(&DATA[..23]), Err(Error::BadCltLength(23)));
        assert_eq!(CltRepr::parse(&[0; 25]), Err(Error::BadCltLength(25)));
    }
}
