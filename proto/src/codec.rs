//! A gRPC codec for `/ioam_api.IOAMService/Report` that accepts both variants
//! of the public `IOAMTrace` message.
//!
//! The two variants share the method path. The newer one (CLT's, with ids)
//! has `fixed64 TraceId_High = 1`, the older plain one `uint32 NamespaceId = 1`;
//! more generally fields 1-3 have different wire types (fixed64, fixed64,
//! fixed64 against varint, fixed32, length-delimited). [`classify`] scans the
//! keys of a message and decides per message; a legacy message becomes an
//! [`IoamTrace`] with zero ids, which is exactly what it means (plain IOAM).

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};

use crate::ioam_api::IoamTrace;
use crate::ioam_api::legacy::IoamTrace as LegacyIoamTrace;

/// Which variant of `IOAMTrace` a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoamVariant {
    /// `TraceId_High = 1 (fixed64)` ...: the variant with CLT ids.
    WithIds,
    /// `NamespaceId = 1 (varint)` ...: the older plain variant.
    Legacy,
}

/// Why a message could not be classified or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated protobuf message")]
    Truncated,
    #[error("invalid wire type {wire_type} for field {field}")]
    InvalidWireType { field: u32, wire_type: u8 },
    #[error("message mixes the fields of both IOAMTrace variants")]
    Ambiguous,
    #[error("invalid IOAMTrace: {0}")]
    Prost(String),
}

fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or(DecodeError::Truncated)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::Truncated)
}

fn skip(buf: &mut &[u8], n: usize) -> Result<(), DecodeError> {
    if buf.len() < n {
        return Err(DecodeError::Truncated);
    }
    *buf = &buf[n..];
    Ok(())
}

/// Tells the two `IOAMTrace` variants apart by the wire types of fields 1-3
/// (and the presence of fields 4-6, which only the variant with ids has).
/// A message with none of those fields (e.g. empty) is [`IoamVariant::WithIds`]:
/// both variants decode it to the same empty trace.
pub fn classify(mut buf: &[u8]) -> Result<IoamVariant, DecodeError> {
    let mut with_ids = false;
    let mut legacy = false;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let field = (key >> 3) as u32;
        let wire_type = (key & 7) as u8;
        match wire_type {
            0 => {
                varint(&mut buf)?;
            }
            1 => skip(&mut buf, 8)?,
            2 => {
                let len = varint(&mut buf)?;
                skip(
                    &mut buf,
                    usize::try_from(len).map_err(|_| DecodeError::Truncated)?,
                )?;
            }
            5 => skip(&mut buf, 4)?,
            _ => return Err(DecodeError::InvalidWireType { field, wire_type }),
        }
        match (field, wire_type) {
            (1..=3, 1) | (4..=6, _) => with_ids = true,
            (1, 0) | (2, 5) | (3, 2) => legacy = true,
            (1..=3, _) => return Err(DecodeError::InvalidWireType { field, wire_type }),
            _ => {} // unknown fields are skipped, as protobuf wants
        }
    }
    match (with_ids, legacy) {
        (true, true) => Err(DecodeError::Ambiguous),
        (false, true) => Ok(IoamVariant::Legacy),
        _ => Ok(IoamVariant::WithIds),
    }
}

/// Decodes either variant into an [`IoamTrace`] (zero ids for the legacy one).
pub fn decode_any(buf: &[u8]) -> Result<(IoamVariant, IoamTrace), DecodeError> {
    let variant = classify(buf)?;
    let trace = match variant {
        IoamVariant::WithIds => {
            IoamTrace::decode(buf).map_err(|e| DecodeError::Prost(e.to_string()))?
        }
        IoamVariant::Legacy => {
            let old =
                LegacyIoamTrace::decode(buf).map_err(|e| DecodeError::Prost(e.to_string()))?;
            IoamTrace {
                namespace_id: old.namespace_id,
                bit_field: old.bit_field,
                nodes: old.nodes,
                ..IoamTrace::default()
            }
        }
    };
    Ok((variant, trace))
}

/// A message type [`IoamCodec`] can decode: the request (`IoamTrace`, either
/// variant) on the server, the response (`()`, i.e. `google.protobuf.Empty`)
/// on the client.
pub trait IoamDecode: Sized + Send + 'static {
    fn decode_ioam(buf: &[u8]) -> Result<Self, Status>;
}

impl IoamDecode for IoamTrace {
    fn decode_ioam(buf: &[u8]) -> Result<Self, Status> {
        decode_any(buf)
            .map(|(_, trace)| trace)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

impl IoamDecode for () {
    fn decode_ioam(buf: &[u8]) -> Result<Self, Status> {
        <() as Message>::decode(buf).map_err(|e| Status::internal(e.to_string()))
    }
}

/// The codec of the generated `IOAMService` client and server: prost encoding,
/// and a decoder that accepts both `IOAMTrace` variants. Malformed messages
/// fail with `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct IoamCodec<E, D>(PhantomData<(E, D)>);

impl<E, D> Default for IoamCodec<E, D> {
    fn default() -> Self {
        IoamCodec(PhantomData)
    }
}

/// The decoder half of [`IoamCodec`].
#[derive(Debug)]
pub struct IoamDecoder<D>(PhantomData<D>);

impl<D: IoamDecode> Decoder for IoamDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        D::decode_ioam(&bytes).map(Some)
    }
}

impl<E, D> Codec for IoamCodec<E, D>
where
    E: Message + Send + 'static,
    D: IoamDecode,
{
    type Encode = E;
    type Decode = D;
    type Encoder = tonic_prost::ProstEncoder<E>;
    type Decoder = IoamDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(tonic::codec::BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        IoamDecoder(PhantomData)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioam_api::IoamNode;

    fn nodes() -> Vec<IoamNode> {
        vec![IoamNode {
            hop_limit: 63,
            id: 2,
            ingress_id: 11,
            egress_id: 12,
            queue_depth: 7,
            ..IoamNode::default()
        }]
    }

    #[test]
    fn tells_the_variants_apart() {
        let new = IoamTrace {
            trace_id_high: 1,
            trace_id_low: 2,
            span_id: 3,
            namespace_id: 123,
            bit_field: 0xf0_0000 << 8,
            nodes: nodes(),
        };
        let (v, t) = decode_any(&new.encode_to_vec()).unwrap();
        assert_eq!(v, IoamVariant::WithIds);
        assert_eq!(t, new);

        let old = LegacyIoamTrace {
            namespace_id: 123,
            bit_field: 0xf0_0000 << 8,
            nodes: nodes(),
        };
        let (v, t) = decode_any(&old.encode_to_vec()).unwrap();
        assert_eq!(v, IoamVariant::Legacy);
        assert_eq!((t.trace_id_high, t.span_id, t.namespace_id), (0, 0, 123));
        assert_eq!(t.nodes, old.nodes);
    }

    #[test]
    fn zero_ids_still_classify_by_later_fields() {
        // proto3 omits zero fields: TraceId_High = 0 leaves field 1 out.
        let new = IoamTrace {
            trace_id_low: 9,
            namespace_id: 1,
            ..IoamTrace::default()
        };
        assert_eq!(classify(&new.encode_to_vec()), Ok(IoamVariant::WithIds));
        let old = LegacyIoamTrace {
            bit_field: 1,
            ..LegacyIoamTrace::default()
        };
        assert_eq!(classify(&old.encode_to_vec()), Ok(IoamVariant::Legacy));
        assert_eq!(classify(&[]), Ok(IoamVariant::WithIds));
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(classify(&[0x08]), Err(DecodeError::Truncated));
        assert_eq!(classify(&[0x09, 1, 2]), Err(DecodeError::Truncated));
        assert!(matches!(
            classify(&[0x0b]),
            Err(DecodeError::InvalidWireType { .. })
        ));
        // field 1 as fixed64 then field 3 as bytes: both variants at once
        let mut mixed = vec![0x09, 0, 0, 0, 0, 0, 0, 0, 1];
        mixed.extend([0x1a, 0]);
        assert_eq!(classify(&mixed), Err(DecodeError::Ambiguous));
        assert!(IoamTrace::decode_ioam(&[0x32, 5, 1]).is_err());
    }
}
