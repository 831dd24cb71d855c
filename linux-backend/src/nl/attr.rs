//! Netlink attributes (`struct nlattr` / `struct rtattr`, same layout): a
//! zero-copy, length-checked iterator and an emitter.
//!
//! ```text
//!  0               1               2               3
//! +---------------+---------------+---------------+---------------+
//! | nla_len (u16, native endian)  | nla_type (u16; bit 15 nested) |
//! +---------------+---------------+---------------+---------------+
//! | payload: nla_len - 4 bytes, then padding to a multiple of 4   |
//! ```
//!
//! Every accessor checks lengths; a malformed attribute is an error, never a
//! panic, and stops the walk (the rest of the buffer cannot be framed).

use crate::Error;
use std::net::Ipv6Addr;

/// Bits of `nla_type` that are flags, not the type.
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
const HEADER_LEN: usize = 4;

/// Rounds up to the netlink alignment (4 bytes).
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// One attribute: its type (flags stripped) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nla<'a> {
    pub kind: u16,
    pub nested: bool,
    pub payload: &'a [u8],
}

impl<'a> Nla<'a> {
    fn exact<const N: usize>(&self) -> Result<[u8; N], Error> {
        self.payload.try_into().map_err(|_| {
            Error::Malformed(format!(
                "attribute {} has {} bytes, expected {N}",
                self.kind,
                self.payload.len()
            ))
        })
    }

    pub fn u8(&self) -> Result<u8, Error> {
        Ok(self.exact::<1>()?[0])
    }

    pub fn u16(&self) -> Result<u16, Error> {
        Ok(u16::from_ne_bytes(self.exact()?))
    }

    pub fn u32(&self) -> Result<u32, Error> {
        Ok(u32::from_ne_bytes(self.exact()?))
    }

    pub fn u64(&self) -> Result<u64, Error> {
        Ok(u64::from_ne_bytes(self.exact()?))
    }

    /// A big-endian (network order) integer, as nfnetlink carries them:
    /// `nla.be(u32::from_be_bytes)`.
    pub fn be<const N: usize, T>(&self, from_be_bytes: fn([u8; N]) -> T) -> Result<T, Error> {
        Ok(from_be_bytes(self.exact()?))
    }

    pub fn ipv6(&self) -> Result<Ipv6Addr, Error> {
        Ok(Ipv6Addr::from(self.exact::<16>()?))
    }

    /// A NUL-terminated string (the terminator is optional).
    pub fn string(&self) -> Result<String, Error> {
        let bytes = match self.payload.iter().position(|b| *b == 0) {
            Some(end) => &self.payload[..end],
            None => self.payload,
        };
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::Malformed(format!("attribute {} is not utf-8", self.kind)))
    }

    /// The attributes nested in this one.
    pub fn nested(&self) -> NlaIter<'a> {
        NlaIter::new(self.payload)
    }
}

/// Walks the attributes of a buffer.
#[derive(Debug, Clone)]
pub struct NlaIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> NlaIter<'a> {
    pub fn new(buf: &'a [u8]) -> NlaIter<'a> {
        NlaIter {
            rest: buf,
            failed: false,
        }
    }
}

impl<'a> Iterator for NlaIter<'a> {
    type Item = Result<Nla<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.len() < HEADER_LEN {
            // Fewer than 4 trailing bytes can only be padding.
            return None;
        }
        let len = u16::from_ne_bytes([self.rest[0], self.rest[1]]) as usize;
        let raw_kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]);
        if len < HEADER_LEN || len > self.rest.len() {
            self.failed = true;
            return Some(Err(Error::Malformed(format!(
                "attribute {raw_kind} claims {len} bytes, {} remain",
                self.rest.len()
            ))));
        }
        let payload = &self.rest[HEADER_LEN..len];
        self.rest = self.rest.get(align(len)..).unwrap_or(&[]);
        Some(Ok(Nla {
            kind: raw_kind & NLA_TYPE_MASK,
            nested: raw_kind & NLA_F_NESTED != 0,
            payload,
        }))
    }
}

/// Appends attributes to a message buffer, padding each to 4 bytes.
#[derive(Debug, Default)]
pub struct NlaWriter {
    pub buf: Vec<u8>,
}

impl NlaWriter {
    pub fn new(header: &[u8]) -> NlaWriter {
        NlaWriter {
            buf: header.to_vec(),
        }
    }

    pub fn put(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = (HEADER_LEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub fn u8(&mut self, kind: u16, v: u8) -> &mut Self {
        self.put(kind, &[v])
    }

    pub fn u16(&mut self, kind: u16, v: u16) -> &mut Self {
        self.put(kind, &v.to_ne_bytes())
    }

    pub fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.put(kind, &v.to_ne_bytes())
    }

    pub fn u64(&mut self, kind: u16, v: u64) -> &mut Self {
        self.put(kind, &v.to_ne_bytes())
    }

    /// A NUL-terminated string (`NLA_STRING`/`NLA_NUL_STRING`).
    pub fn string(&mut self, kind: u16, s: &[u8]) -> &mut Self {
        let len = (HEADER_LEN + s.len() + 1) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(s);
        self.buf.push(0);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub fn flag(&mut self, kind: u16) -> &mut Self {
        self.put(kind, &[])
    }

    /// A nested attribute whose payload `inner` writes.
    pub fn nested(&mut self, kind: u16, inner: impl FnOnce(&mut NlaWriter)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        inner(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_padded_attributes() {
        let mut w = NlaWriter::default();
        w.u16(1, 0x7b).u32(2, 0xdeadbeef).put(5, b"abc");
        let buf = w.finish();
        assert_eq!(buf.len(), 8 + 8 + 8);
        let attrs: Vec<_> = NlaIter::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[0].u16().unwrap(), 0x7b);
        assert_eq!(attrs[1].u32().unwrap(), 0xdeadbeef);
        assert_eq!(attrs[2].payload, b"abc");
        assert!(attrs[0].u32().is_err());
    }

    #[test]
    fn network_order_and_strings() {
        let mut w = NlaWriter::default();
        w.put(1, &0x86ddu16.to_be_bytes())
            .put(2, &7u32.to_be_bytes())
            .put(3, &(1u64 << 40).to_be_bytes())
            .string(4, b"ab");
        let buf = w.finish();
        // be16: the bytes in network order, then 2 bytes of padding.
        assert_eq!(&buf[..8], &[6, 0, 1, 0, 0x86, 0xdd, 0, 0]);
        // The string carries its terminator: 4 + 3 bytes, padded to 8.
        assert_eq!(&buf[buf.len() - 8..], &[7, 0, 4, 0, b'a', b'b', 0, 0]);
        let a: Vec<_> = NlaIter::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(a[0].be(u16::from_be_bytes).unwrap(), 0x86dd);
        assert_eq!(a[1].be(u32::from_be_bytes).unwrap(), 7);
        assert_eq!(a[2].be(u64::from_be_bytes).unwrap(), 1 << 40);
        assert_eq!(a[3].string().unwrap(), "ab");
        assert!(a[1].be(u16::from_be_bytes).is_err() && a[0].be(u64::from_be_bytes).is_err());
    }

    #[test]
    fn nested_lengths_cover_children() {
        let mut w = NlaWriter::default();
        w.nested(10, |w| {
            w.u8(1, 2).u32(4, 1);
        });
        let buf = w.finish();
        let outer = NlaIter::new(&buf).next().unwrap().unwrap();
        assert!(outer.nested);
        assert_eq!(outer.kind, 10);
        let inner: Vec<_> = outer.nested().collect::<Result<_, _>>().unwrap();
        assert_eq!(inner.len(), 2);
        assert_eq!(inner[1].u32().unwrap(), 1);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        for bytes in [
            &[0xff, 0x00, 0x01, 0x00][..],
            &[0x02, 0x00, 0x01, 0x00],
            &[0x08, 0x00, 0x01, 0x00, 0x01],
        ] {
            let mut it = NlaIter::new(bytes);
            assert!(matches!(it.next(), Some(Err(Error::Malformed(_)))));
            assert!(it.next().is_none());
        }
        // Every prefix of a valid buffer either parses or errors.
        let mut w = NlaWriter::default();
        w.u64(3, 1).put(5, &[1; 13]);
        let buf = w.finish();
        for n in 0..=buf.len() {
            for a in NlaIter::new(&buf[..n]) {
                let _ = a;
            }
        }
    }
}
