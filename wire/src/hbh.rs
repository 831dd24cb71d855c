//! The IPv6 Hop-by-Hop Options header (RFC 8200 section 4.3) and the
//! builder for the header the CLT socket API installs.

use crate::clt::CltRepr;
use crate::ioam::{IoamBody, IoamRepr, TracePacket, TraceRepr, fill_node};
use crate::ipv6::IpProtocol;
use crate::node::NodeRepr;
use crate::option::{CLT, IOAM, Ipv6Option, OptionRepr, OptionsIter, PAD1};
use crate::trace_type::TraceType;
use crate::{Error, Result, need};
use arrayvec::ArrayVec;
use std::fmt;

// The Hop-by-Hop Options header (RFC 8200 section 4.3):
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Next Header  |  Hdr Ext Len  |                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
// |                                                               |
// .                            Options                            .
// |                                                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Hdr Ext Len counts 8-byte units after the first 8 bytes.
mod field {
    pub const NXT_HDR: usize = 0;
    pub const LENGTH: usize = 1;
    pub const OPTIONS: usize = 2;
}

/// A zero-copy view of a Hop-by-Hop header. The buffer may extend past the
/// header (the rest of the packet); [`header_len`](Self::header_len) says
/// where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbhHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HbhHeader<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        HbhHeader { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// Ensures no accessor panics: the buffer holds `(Hdr Ext Len + 1) * 8`
    /// bytes. Invalidated by [`set_hdr_ext_len`](Self::set_hdr_ext_len).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        need("hop-by-hop header", 2, len)?;
        need("hop-by-hop header", self.header_len(), len)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// The raw Hdr Ext Len field.
    #[inline]
    pub fn hdr_ext_len(&self) -> u8 {
        self.buffer.as_ref()[field::LENGTH]
    }

    /// The header's length in bytes: `(Hdr Ext Len + 1) * 8`.
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(self.hdr_ext_len()) + 1) * 8
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> HbhHeader<&'a T> {
    /// The option area (after Next Header and Hdr Ext Len).
    #[inline]
    pub fn options(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// Walks the options; see [`OptionsIter`].
    pub fn options_iter(&self) -> OptionsIter<'a> {
        OptionsIter::new(self.options())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HbhHeader<T> {
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    pub fn set_hdr_ext_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::LENGTH] = value;
    }

    /// The option area, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }
}

/// Where the options of an [`HbhRepr`] come from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// The option area of a parsed header, every option validated: decoded
    /// on demand, emitted byte for byte.
    Wire(&'a [u8]),
    /// A list given to [`HbhRepr::new`].
    Built(&'a [OptionRepr<'a>]),
}

/// A Hop-by-Hop header, parsed or to be emitted.
///
/// Parsing validates every option (a truncated or malformed one is an
/// error; unknown ones are fine) and keeps the IOAM trace and the CLT option
/// at hand, but does not copy the option list: [`options`](Self::options)
/// decodes it again on demand, and `emit` of a parsed header copies its
/// option bytes. So parsing never allocates and the repr stays small. Two
/// reprs are equal when their next header and option lists are, whichever
/// way they were made.
#[derive(Debug, Clone, Copy)]
pub struct HbhRepr<'a> {
    pub next_header: IpProtocol,
    source: Source<'a>,
    clt: Option<CltRepr>,
    trace: Option<TraceRepr<'a>>,
}

impl<'a> HbhRepr<'a> {
    /// A header with these options, in this order (padding included: the
    /// total must be a multiple of 8 bytes to emit).
    pub fn new(next_header: IpProtocol, options: &'a [OptionRepr<'a>]) -> HbhRepr<'a> {
        let mut repr = HbhRepr {
            next_header,
            source: Source::Built(options),
            clt: None,
            trace: None,
        };
        for option in options {
            repr.note(option);
        }
        repr
    }

    /// Remembers the first CLT option and the first IOAM trace.
    #[inline]
    fn note(&mut self, option: &OptionRepr<'a>) {
        match option {
            OptionRepr::Clt(clt) if self.clt.is_none() => self.clt = Some(*clt),
            OptionRepr::Ioam(ioam) if self.trace.is_none() => self.trace = ioam.trace().copied(),
            _ => {}
        }
    }

    /// A parsed header from its parts, for the packet fast path (the
    /// option area validated the way [`parse`](Self::parse) does).
    #[inline(always)]
    pub(crate) fn from_wire(
        next_header: IpProtocol,
        area: &'a [u8],
        clt: Option<CltRepr>,
        trace: Option<TraceRepr<'a>>,
    ) -> HbhRepr<'a> {
        HbhRepr {
            next_header,
            source: Source::Wire(area),
            clt,
            trace,
        }
    }

    /// Parses a view. Unknown options are skipped (kept for `emit`); a
    /// truncated option or a malformed IOAM or CLT option is an error. The
    /// walk is bounded by the header's length.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &HbhHeader<&'a T>) -> Result<HbhRepr<'a>> {
        header.check_len()?;
        let area = header.options();
        let mut repr = HbhRepr {
            next_header: header.next_header(),
            source: Source::Wire(area),
            clt: None,
            trace: None,
        };
        // The same walk as `OptionsIter` and the same checks as
        // `OptionRepr::parse`, without building every option: this is the
        // agent's hot path.
        let mut at = 0usize;
        while let Some(&option_type) = area.get(at) {
            if option_type == PAD1 {
                at += 1;
                continue;
            }
            let data = match area.get(at + 1) {
                Some(&len) => area.get(at + 2..at + 2 + usize::from(len)),
                None => None,
            };
            let Some(data) = data else {
                // Let the view say what is missing.
                return Err(Ipv6Option::new_checked(&area[at..]).err().unwrap_or(
                    Error::Truncated {
                        what: "option",
                        need: 2,
                        have: area.len() - at,
                    },
                ));
            };
            match option_type {
                CLT => {
                    let clt = CltRepr::parse(data)?;
                    repr.clt.get_or_insert(clt);
                }
                IOAM => {
                    let ioam = IoamRepr::parse(data)?;
                    if repr.trace.is_none() {
                        repr.trace = ioam.trace().copied();
                    }
                }
                _ => {}
            }
            at += 2 + data.len();
        }
        Ok(repr)
    }

    /// The options in order, padding included.
    pub fn options(&self) -> HbhOptions<'a> {
        match self.source {
            Source::Wire(area) => HbhOptions::Wire(OptionsIter::new(area)),
            Source::Built(list) => HbhOptions::Built(list.iter()),
        }
    }

    /// The first IOAM pre-allocated trace, if any.
    #[inline]
    pub fn ioam_trace(&self) -> Option<&TraceRepr<'a>> {
        self.trace.as_ref()
    }

    /// The first CLT trace-context option, if any.
    #[inline]
    pub fn clt(&self) -> Option<&CltRepr> {
        self.clt.as_ref()
    }

    /// The emitted length: 2 plus the options (a multiple of 8 to emit).
    pub fn buffer_len(&self) -> usize {
        field::OPTIONS
            + match self.source {
                Source::Wire(area) => area.len(),
                Source::Built(list) => list.iter().map(|o| o.buffer_len()).sum::<usize>(),
            }
    }

    /// Writes the header at the start of `header`'s buffer. The options must
    /// add up to a multiple of 8 bytes (with the first 2 bytes), at most
    /// 2048.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut HbhHeader<T>) -> Result<()> {
        let len = self.buffer_len();
        if len % 8 != 0 || len > 256 * 8 {
            return Err(Error::Invalid {
                what: "hop-by-hop header length must be a multiple of 8, at most 2048",
                value: len as u64,
            });
        }
        need("hop-by-hop buffer", len, header.buffer.as_ref().len())?;
        header.set_next_header(self.next_header);
        header.set_hdr_ext_len((len / 8 - 1) as u8);
        match self.source {
            Source::Wire(area) => header.options_mut().copy_from_slice(area),
            Source::Built(list) => {
                let mut area = header.options_mut();
                for option in list {
                    let (this, rest) = area.split_at_mut(option.buffer_len());
                    option.emit(&mut Ipv6Option::new_unchecked(this))?;
                    area = rest;
                }
            }
        }
        Ok(())
    }
}

impl PartialEq for HbhRepr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.next_header == other.next_header && self.options().eq(other.options())
    }
}

impl Eq for HbhRepr<'_> {}

/// The options of an [`HbhRepr`], in order.
#[derive(Debug, Clone)]
pub enum HbhOptions<'a> {
    Wire(OptionsIter<'a>),
    Built(std::slice::Iter<'a, OptionRepr<'a>>),
}

impl<'a> Iterator for HbhOptions<'a> {
    type Item = OptionRepr<'a>;

    fn next(&mut self) -> Option<OptionRepr<'a>> {
        match self {
            // Validated by `parse`: an error cannot happen, but would end
            // the iteration rather than panic.
            HbhOptions::Wire(iter) => match iter.next()? {
                Ok((_, option)) => OptionRepr::parse(&option).ok(),
                Err(_) => None,
            },
            HbhOptions::Built(iter) => iter.next().copied(),
        }
    }
}

impl fmt::Display for HbhRepr<'_> {
    /// One line for the header, then one indented line per option.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hop-by-hop next={} len={}",
            self.next_header,
            self.buffer_len()
        )?;
        for option in self.options() {
            write!(f, "\n  {option}")?;
        }
        Ok(())
    }
}

/// Builds the Hop-by-Hop header that the CLT socket API passes to
/// `setsockopt(IPPROTO_IPV6, IPV6_HOPOPTS)`: an IOAM pre-allocated trace,
/// optionally with the sender's own entry filled in, and/or the CLT option.
///
/// Layout (see `docs/wire-format.md`): the CLT option first, at offset 2,
/// which puts the IOAM option at offset 28, a multiple of 4 as Linux
/// requires; without CLT, a 2-byte PadN puts it at offset 4. A 4-byte PadN
/// at the end makes the header a multiple of 8 when needed. No padding run
/// exceeds 4 bytes (Linux refuses more than 7).
#[derive(Debug, Clone, Default)]
pub struct HbhBuilder<'n> {
    next_header: Option<IpProtocol>,
    trace: Option<(u16, TraceType, usize)>,
    encap_node: Option<NodeRepr<'n>>,
    clt: Option<CltRepr>,
}

impl<'n> HbhBuilder<'n> {
    pub fn new() -> Self {
        HbhBuilder::default()
    }

    /// The Next Header byte (default No Next Header, 59). The kernel
    /// overwrites it when it sends the header from `IPV6_HOPOPTS`.
    pub fn next_header(mut self, next_header: IpProtocol) -> Self {
        self.next_header = Some(next_header);
        self
    }

    /// A pre-allocated trace of `size` bytes of node data (a multiple of 4,
    /// 4 to 244) in namespace `namespace_id`.
    pub fn trace(mut self, namespace_id: u16, trace_type: TraceType, size: usize) -> Self {
        self.trace = Some((namespace_id, trace_type, size));
        self
    }

    /// Fills the first (encapsulating) node's entry: written at the end of
    /// the node data, RemainingLen decremented (see [`fill_node`]).
    pub fn encap_node(mut self, node: NodeRepr<'n>) -> Self {
        self.encap_node = Some(node);
        self
    }

    /// Adds the CLT trace-context option.
    pub fn clt(mut self, clt: CltRepr) -> Self {
        self.clt = Some(clt);
        self
    }

    /// The options, padding included.
    fn options(&self) -> Result<ArrayVec<OptionRepr<'static>, 3>> {
        let mut options = ArrayVec::new();
        let mut len = 2usize;
        let mut push = |o: OptionRepr<'static>, len: &mut usize| {
            *len += o.buffer_len();
            options.push(o);
        };
        match (&self.trace, &self.clt) {
            (None, None) => {
                return Err(Error::Invalid {
                    what: "nothing to build: neither a trace nor a clt option",
                    value: 0,
                });
            }
            (Some(_), None) => push(OptionRepr::padn(0), &mut len),
            (_, Some(clt)) => push(OptionRepr::Clt(*clt), &mut len),
        }
        if let Some((namespace_id, trace_type, size)) = self.trace {
            let trace = TraceRepr::new(namespace_id, trace_type, size)?;
            push(
                OptionRepr::Ioam(IoamRepr {
                    reserved: 0,
                    body: IoamBody::PreallocatedTrace(trace),
                }),
                &mut len,
            );
        }
        if len % 8 != 0 {
            // Only 4 is possible: every option so far ends at a 4n offset.
            push(
                OptionRepr::padn(len.next_multiple_of(8) - len - 2),
                &mut len,
            );
        }
        Ok(options)
    }

    /// The built header's length.
    pub fn buffer_len(&self) -> Result<usize> {
        Ok(2 + self
            .options()?
            .iter()
            .map(|o| o.buffer_len())
            .sum::<usize>())
    }

    /// Writes the header at the start of `buf`; returns its length.
    pub fn build_into(&self, buf: &mut [u8]) -> Result<usize> {
        let options = self.options()?;
        let repr = HbhRepr::new(
            self.next_header.unwrap_or(IpProtocol::NoNextHeader),
            &options,
        );
        let len = repr.buffer_len();
        need("hop-by-hop buffer", len, buf.len())?;
        repr.emit(&mut HbhHeader::new_unchecked(&mut buf[..len]))?;
        if let (Some(node), Some(trace)) = (&self.encap_node, repr.ioam_trace()) {
            // The trace starts after the IOAM option's 4 bytes of header.
            let trace_at = if self.clt.is_some() { 28 } else { 4 } + 4;
            let trace_len = trace.buffer_len();
            let mut trace = TracePacket::new_checked(&mut buf[trace_at..trace_at + trace_len])?;
            fill_node(&mut trace, node)?;
        }
        Ok(len)
    }

    /// Builds the header into a new vector.
    pub fn build(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.buffer_len()?];
        self.build_into(&mut buf)?;
        Ok(buf)
    }
}
