//! IPv6 options, the TLVs inside a Hop-by-Hop header (RFC 8200 section 4.2).

use crate::clt::CltRepr;
use crate::field::Field;
use crate::ioam::IoamRepr;
use crate::{Error, Result, enum_with_unknown, need};
use std::fmt;

/// Raw option type values, for `match` on the hot path (a test checks
/// they agree with [`OptionType`]).
pub(crate) const PAD1: u8 = 0x00;
pub(crate) const CLT: u8 = 0x1e;
pub(crate) const IOAM: u8 = 0x31;

enum_with_unknown! {
    /// An IPv6 option type.
    pub enum OptionType(u8) {
        /// One byte of padding, no length byte.
        Pad1 = 0x00,
        /// `len` bytes of padding after the type and length bytes.
        PadN = 0x01,
        /// The CLT trace-context option (RFC 4727 experimental 0x1E: skip if
        /// unknown, not changed en route).
        Clt = 0x1e,
        /// IOAM (RFC 9486: skip if unknown, may change en route).
        Ioam = 0x31,
    }
}

impl OptionType {
    /// The two high-order bits: what a node that does not know the option
    /// does (0 = skip, 1 = discard, 2 = discard and send ICMP, 3 = discard
    /// and send ICMP unless multicast).
    pub fn action(self) -> u8 {
        u8::from(self) >> 6
    }

    /// The third bit: the option data may change en route.
    pub fn may_change(self) -> bool {
        u8::from(self) & 0x20 != 0
    }
}

impl fmt::Display for OptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionType::Pad1 => f.write_str("pad1"),
            OptionType::PadN => f.write_str("padn"),
            OptionType::Clt => f.write_str("clt"),
            OptionType::Ioam => f.write_str("ioam"),
            OptionType::Unknown(t) => write!(f, "option-{t:#04x}"),
        }
    }
}

// An option (RFC 8200 section 4.2); Pad1 is the single type byte.
//
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+- - - - - - - - -
// |  Option Type  |  Opt Data Len |  Option Data
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+- - - - - - - - -
mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const LENGTH: usize = 1;
    pub const fn data(len: u8) -> Field {
        2..2 + len as usize
    }
}

/// A zero-copy view of one option. The buffer may extend past the option;
/// [`buffer_len`](Self::buffer_len) says where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Option<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Option<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Option { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let option = Self::new_unchecked(buffer);
        option.check_len()?;
        Ok(option)
    }

    /// Ensures no accessor panics: the type byte, and for every type but
    /// Pad1 the length byte and the data it announces.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        need("option", 1, buf.len())?;
        if buf[field::TYPE] == u8::from(OptionType::Pad1) {
            return Ok(());
        }
        need("option length", 2, buf.len())?;
        need(
            "option data",
            field::data(buf[field::LENGTH]).end,
            buf.len(),
        )
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn option_type(&self) -> OptionType {
        OptionType::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The Opt Data Len byte; 0 for Pad1.
    #[inline]
    pub fn data_len(&self) -> u8 {
        match self.option_type() {
            OptionType::Pad1 => 0,
            _ => self.buffer.as_ref()[field::LENGTH],
        }
    }

    /// The whole option's length: 1 for Pad1, else 2 + Opt Data Len.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        match self.option_type() {
            OptionType::Pad1 => 1,
            _ => field::data(self.data_len()).end,
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Option<&'a T> {
    /// The option data (empty for Pad1).
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        match self.option_type() {
            OptionType::Pad1 => &[],
            _ => &self.buffer.as_ref()[field::data(self.data_len())],
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Option<T> {
    pub fn set_option_type(&mut self, value: OptionType) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Sets Opt Data Len (not for Pad1).
    pub fn set_data_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::LENGTH] = value;
    }

    /// The option data, mutable (empty for Pad1).
    pub fn data_mut(&mut self) -> &mut [u8] {
        match self.option_type() {
            OptionType::Pad1 => &mut [],
            _ => {
                let range = field::data(self.data_len());
                &mut self.buffer.as_mut()[range]
            }
        }
    }
}

/// Iterates over the options in the option area of a Hop-by-Hop header,
/// yielding each option's offset in that area and its view.
///
/// The walk is bounded by the area's length (each step consumes at least one
/// byte). A truncated option yields one `Err` and ends the iteration.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> OptionsIter<'a> {
    /// Walks `data`, the bytes after Next Header and Hdr Ext Len.
    pub fn new(data: &'a [u8]) -> Self {
        OptionsIter {
            data,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<(usize, Ipv6Option<&'a [u8]>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let at = self.pos;
        let rest = &self.data[at..];
        match Ipv6Option::new_checked(rest) {
            Ok(option) => {
                self.pos += option.buffer_len();
                Some(Ok((at, option)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One option, parsed. Unknown options and the contents of padding are kept
/// as raw bytes so that emitting reproduces the input exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionRepr<'a> {
    Pad1,
    /// PadN and its data bytes (zero when well formed).
    PadN(&'a [u8]),
    Clt(CltRepr),
    Ioam(IoamRepr<'a>),
    /// Any other option, skipped by this crate.
    Unknown {
        option_type: u8,
        data: &'a [u8],
    },
}

impl<'a> OptionRepr<'a> {
    /// Parses one option from its view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(option: &Ipv6Option<&'a T>) -> Result<OptionRepr<'a>> {
        option.check_len()?;
        Ok(match option.option_type() {
            OptionType::Pad1 => OptionRepr::Pad1,
            OptionType::PadN => OptionRepr::PadN(option.data()),
            OptionType::Clt => OptionRepr::Clt(CltRepr::parse(option.data())?),
            OptionType::Ioam => OptionRepr::Ioam(IoamRepr::parse(option.data())?),
            OptionType::Unknown(option_type) => OptionRepr::Unknown {
                option_type,
                data: option.data(),
            },
        })
    }

    /// PadN with `len` zero bytes of data (at most 5 for Linux: it refuses
    /// more than 7 bytes of padding in a row).
    pub fn padn(len: usize) -> OptionRepr<'static> {
        OptionRepr::PadN(&crate::ioam::ZEROS[..len.min(crate::ioam::ZEROS.len())])
    }

    /// The option type this representation emits.
    pub fn option_type(&self) -> OptionType {
        match self {
            OptionRepr::Pad1 => OptionType::Pad1,
            OptionRepr::PadN(_) => OptionType::PadN,
            OptionRepr::Clt(_) => OptionType::Clt,
            OptionRepr::Ioam(_) => OptionType::Ioam,
            OptionRepr::Unknown { option_type, .. } => OptionType::from(*option_type),
        }
    }

    /// The length of the option data.
    pub fn data_len(&self) -> usize {
        match self {
            OptionRepr::Pad1 => 0,
            OptionRepr::PadN(data) | OptionRepr::Unknown { data, .. } => data.len(),
            OptionRepr::Clt(clt) => clt.buffer_len(),
            OptionRepr::Ioam(ioam) => ioam.buffer_len(),
        }
    }

    /// The emitted length, type and length bytes included.
    pub fn buffer_len(&self) -> usize {
        match self {
            OptionRepr::Pad1 => 1,
            _ => 2 + self.data_len(),
        }
    }

    /// Emits the option at the start of `option`'s buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, option: &mut Ipv6Option<T>) -> Result<()> {
        let len = self.buffer_len();
        need("option buffer", len, option.buffer.as_ref().len())?;
        if let OptionRepr::Unknown { option_type, .. } = self {
            // Pad1, PadN, CLT and IOAM have their own variants: emitting them
            // from raw bytes would not parse back to this variant.
            if !matches!(OptionType::from(*option_type), OptionType::Unknown(_)) {
                return Err(Error::Invalid {
                    what: "an unknown option must not use a known option type",
                    value: u64::from(*option_type),
                });
            }
        }
        let data_len = u8::try_from(self.data_len()).map_err(|_| Error::Invalid {
            what: "option data longer than 255 bytes",
            value: self.data_len() as u64,
        })?;
        option.set_option_type(self.option_type());
        if let OptionRepr::Pad1 = self {
            return Ok(());
        }
        option.set_data_len(data_len);
        let data = option.data_mut();
        match self {
            OptionRepr::Pad1 => {}
            OptionRepr::PadN(bytes) | OptionRepr::Unknown { data: bytes, .. } => {
                data.copy_from_slice(bytes)
            }
            OptionRepr::Clt(clt) => clt.emit(data)?,
            OptionRepr::Ioam(ioam) => ioam.emit(data)?,
        }
        Ok(())
    }
}

impl fmt::Display for OptionRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionRepr::Pad1 => f.write_str("pad1"),
            OptionRepr::PadN(data) => write!(f, "padn {}", data.len()),
            OptionRepr::Clt(clt) => write!(f, "{clt}"),
            OptionRepr::Ioam(ioam) => write!(f, "{ioam}"),
            OptionRepr::Unknown { option_type, data } => {
                write!(f, "option {option_type:#04x} len {}", data.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_agree_with_the_enum() {
        assert_eq!(OptionType::from(PAD1), OptionType::Pad1);
        assert_eq!(OptionType::from(CLT), OptionType::Clt);
        assert_eq!(OptionType::from(IOAM), OptionType::Ioam);
    }

    #[test]
    fn option_type_bits() {
        assert_eq!(OptionType::Clt.action(), 0);
        assert!(!OptionType::Clt.may_change());
        assert_eq!(OptionType::Ioam.action(), 0);
        assert!(OptionType::Ioam.may_change());
        assert_eq!(OptionType::from(0xc2), OptionType::Unknown(0xc2));
        assert_eq!(OptionType::Unknown(0xc2).action(), 3);
    }

    #[test]
    fn iterator_stops_at_a_truncated_option() {
        let area = [
            0x00, // pad1
            0x01, 0x01, 0x00, // padn, 1 byte
            0x3e, 0x04, 0xaa, // unknown 0x3e announcing 4 bytes, only 1 present
        ];
        let items: Vec<_> = OptionsIter::new(&area).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().0, 0);
        assert_eq!(items[1].as_ref().unwrap().0, 1);
        assert!(matches!(
            items[2],
            Err(Error::Truncated {
                need: 6,
                have: 3,
                ..
            })
        ));
    }

    #[test]
    fn unknown_option_round_trips() {
        let raw = [0x3e, 0x02, 0xde, 0xad]; // type 0x3e, 2 bytes of data
        let option = Ipv6Option::new_checked(&raw[..]).unwrap();
        let repr = OptionRepr::parse(&option).unwrap();
        assert_eq!(
            repr,
            OptionRepr::Unknown {
                option_type: 0x3e,
                data: &[0xde, 0xad]
            }
        );
        let mut out = [0u8; 4];
        repr.emit(&mut Ipv6Option::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out, raw);
    }
}
