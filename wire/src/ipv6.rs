//! The IPv6 fixed header (RFC 8200 section 3) and the walk over extension
//! headers to the upper layer.

use crate::field::Field;
use crate::{Error, Result, be, enum_with_unknown, need};
use std::fmt;
use std::net::Ipv6Addr;

enum_with_unknown! {
    /// An IPv6 Next Header value (IANA "Assigned Internet Protocol Numbers").
    pub enum IpProtocol(u8) {
        /// Hop-by-Hop Options header.
        HopByHop = 0,
        Tcp = 6,
        Udp = 17,
        /// Routing header.
        Ipv6Route = 43,
        /// Fragment header.
        Ipv6Frag = 44,
        Esp = 50,
        /// Authentication header.
        Ah = 51,
        Icmpv6 = 58,
        NoNextHeader = 59,
        /// Destination Options header.
        Ipv6Opts = 60,
        /// Mobility header.
        Mobility = 135,
        Hip = 139,
        Shim6 = 140,
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::HopByHop => f.write_str("hop-by-hop"),
            IpProtocol::Tcp => f.write_str("tcp"),
            IpProtocol::Udp => f.write_str("udp"),
            IpProtocol::Ipv6Route => f.write_str("routing"),
            IpProtocol::Ipv6Frag => f.write_str("fragment"),
            IpProtocol::Esp => f.write_str("esp"),
            IpProtocol::Ah => f.write_str("ah"),
            IpProtocol::Icmpv6 => f.write_str("icmpv6"),
            IpProtocol::NoNextHeader => f.write_str("no-next-header"),
            IpProtocol::Ipv6Opts => f.write_str("destination-options"),
            IpProtocol::Mobility => f.write_str("mobility"),
            IpProtocol::Hip => f.write_str("hip"),
            IpProtocol::Shim6 => f.write_str("shim6"),
            IpProtocol::Unknown(n) => write!(f, "protocol-{n}"),
        }
    }
}

// The IPv6 fixed header (RFC 8200 section 3):
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |Version| Traffic Class |           Flow Label                  |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |         Payload Length        |  Next Header  |   Hop Limit   |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                                                               |
// +                    Source Address (16 bytes)                  +
// |                                                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                                                               |
// +                 Destination Address (16 bytes)                +
// |                                                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// The length of the IPv6 fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// A zero-copy view of an IPv6 packet (fixed header and payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic until
    /// [`check_len`](Self::check_len) succeeds.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer and checks its length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures no accessor panics: the buffer holds the fixed header and the
    /// payload length it announces (bytes beyond it, e.g. Ethernet padding,
    /// are ignored). Jumbograms (payload length 0) have an empty payload.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        need("ipv6 header", HEADER_LEN, len)?;
        need(
            "ipv6 payload",
            HEADER_LEN + self.payload_len() as usize,
            len,
        )
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (6 for IPv6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be::u16(self.buffer.as_ref(), field::VER_TC_FLOW.start) >> 4) as u8
    }

    /// The 20-bit flow label.
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be::u32(self.buffer.as_ref(), field::VER_TC_FLOW.start) & 0x000f_ffff
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        be::u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }
}

#[inline]
fn addr(bytes: &[u8]) -> Ipv6Addr {
    match bytes.first_chunk::<16>() {
        Some(octets) => Ipv6Addr::from(*octets),
        // Unreachable after `check_len`.
        None => Ipv6Addr::UNSPECIFIED,
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    /// The payload: the extension headers and the upper layer.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let end = HEADER_LEN + self.payload_len() as usize;
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the version, traffic class and flow label word.
    pub fn set_version_tc_flow(&mut self, version: u8, traffic_class: u8, flow_label: u32) {
        let word = (u32::from(version & 0xf) << 28)
            | (u32::from(traffic_class) << 20)
            | (flow_label & 0x000f_ffff);
        be::put_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, word);
    }

    pub fn set_payload_len(&mut self, value: u16) {
        be::put_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + self.payload_len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The IPv6 fixed header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    pub payload_len: u16,
    pub next_header: IpProtocol,
    pub hop_limit: u8,
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
}

impl Ipv6Repr {
    /// Parses a checked view; fails unless the version is 6.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Ipv6Packet<&T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error::BadVersion(packet.version()));
        }
        Ok(Ipv6Repr {
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
            payload_len: packet.payload_len(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
        })
    }

    /// The length of the fixed header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header (not the payload) into the first 40 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) -> Result<()> {
        need("ipv6 header", HEADER_LEN, packet.buffer.as_ref().len())?;
        if self.flow_label > 0x000f_ffff {
            return Err(Error::Invalid {
                what: "flow label exceeds 20 bits",
                value: u64::from(self.flow_label),
            });
        }
        packet.set_version_tc_flow(6, self.traffic_class, self.flow_label);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

impl fmt::Display for Ipv6Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ipv6 src={} dst={} next={} hop_limit={} payload_len={} tc={:#04x} flow={:#07x}",
            self.src_addr,
            self.dst_addr,
            self.next_header,
            self.hop_limit,
            self.payload_len,
            self.traffic_class,
            self.flow_label
        )
    }
}

/// The most extension headers [`upper_layer`] walks before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Where the extension headers end and what follows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    /// The upper-layer protocol (or the header the walk stopped at: ESP,
    /// No Next Header, or anything it does not know).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub offset: usize,
    /// TCP or UDP source port; `None` for other protocols and for
    /// non-first fragments.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Whether a Fragment header was crossed.
    pub fragmented: bool,
}

/// Walks the extension headers of an IPv6 payload (at most
/// [`MAX_EXTENSION_HEADERS`]) to the upper layer and reads TCP/UDP ports.
///
/// Hop-by-Hop, Routing, Destination Options, Mobility, HIP and Shim6 headers
/// use the generic `(len + 1) * 8` length, AH `(len + 2) * 4`, Fragment 8
/// bytes. A non-first fragment stops the walk without ports.
#[inline]
pub fn upper_layer(first: IpProtocol, payload: &[u8]) -> Result<UpperLayer> {
    // Raw protocol numbers in the loop (a `match` on them is a jump table;
    // converting to `IpProtocol` at every step is not free).
    const HOP_BY_HOP: u8 = 0;
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AH: u8 = 51;
    const DEST_OPTS: u8 = 60;
    const MOBILITY: u8 = 135;
    const HIP: u8 = 139;
    const SHIM6: u8 = 140;
    let mut protocol = u8::from(first);
    let mut offset = 0usize;
    let mut fragmented = false;
    let done = |protocol: u8, offset, ports: Option<(u16, u16)>, fragmented| UpperLayer {
        protocol: IpProtocol::from(protocol),
        offset,
        src_port: ports.map(|p| p.0),
        dst_port: ports.map(|p| p.1),
        fragmented,
    };
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let rest = payload.get(offset..).unwrap_or(&[]);
        let len = match protocol {
            HOP_BY_HOP | ROUTING | DEST_OPTS | MOBILITY | HIP | SHIM6 => {
                need("extension header", 2, rest.len())?;
                (usize::from(rest[1]) + 1) * 8
            }
            AH => {
                need("authentication header", 2, rest.len())?;
                (usize::from(rest[1]) + 2) * 4
            }
            FRAGMENT => {
                need("fragment header", 8, rest.len())?;
                fragmented = true;
                if be::u16(rest, 2) >> 3 != 0 {
                    return Ok(done(rest[0], offset + 8, None, fragmented));
                }
                8
            }
            TCP | UDP => {
                need("transport ports", 4, rest.len())?;
                let ports = (be::u16(rest, 0), be::u16(rest, 2));
                return Ok(done(protocol, offset, Some(ports), fragmented));
            }
            _ => return Ok(done(protocol, offset, None, fragmented)),
        };
        need("extension header", len, rest.len())?;
        protocol = rest[0];
        offset += len;
    }
    Err(Error::TooManyExtensionHeaders {
        max: MAX_EXTENSION_HEADERS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A UDP packet, 2001:db8::1 -> 2001:db8::2, with an 8-byte payload.
    static UDP: [u8; 48] = [
        0x60, 0x12, 0x34, 0x56, // version 6, traffic class 0x01, flow label 0x23456
        0x00, 0x08, // payload length 8
        0x11, // next header: udp
        0x40, // hop limit 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst
        0x30, 0x39, // udp source port 12345
        0x00, 0x35, // udp destination port 53
        0x00, 0x08, // udp length 8
        0x00, 0x00, // udp checksum
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            traffic_class: 0x01,
            flow_label: 0x23456,
            payload_len: 8,
            next_header: IpProtocol::Udp,
            hop_limit: 64,
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
        }
    }

    #[test]
    fn parse_and_emit_round_trip() {
        let packet = Ipv6Packet::new_checked(&UDP[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&packet).unwrap(), repr());
        let mut buf = UDP;
        buf[..40].fill(0);
        repr()
            .emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, UDP);
    }

    #[test]
    fn ports_of_a_udp_packet() {
        let packet = Ipv6Packet::new_checked(&UDP[..]).unwrap();
        let upper = upper_layer(packet.next_header(), packet.payload()).unwrap();
        assert_eq!(upper.protocol, IpProtocol::Udp);
        assert_eq!((upper.src_port, upper.dst_port), (Some(12345), Some(53)));
        assert_eq!(upper.offset, 0);
    }

    #[test]
    fn truncated_and_wrong_version_are_errors() {
        assert!(matches!(
            Ipv6Packet::new_checked(&UDP[..39]),
            Err(Error::Truncated { need: 40, .. })
        ));
        // The payload length says 8 but only 4 bytes follow.
        assert!(matches!(
            Ipv6Packet::new_checked(&UDP[..44]),
            Err(Error::Truncated { need: 48, .. })
        ));
        let mut v4 = UDP;
        v4[0] = 0x45;
        let packet = Ipv6Packet::new_checked(&v4[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&packet), Err(Error::BadVersion(4)));
    }

    #[test]
    fn walks_destination_options_and_fragments() {
        let payload = [
            0x2c, 0x00, 0x01, 0x04, 0, 0, 0, 0, // dest opts -> fragment, PadN 4
            0x06, 0x00, 0x00, 0x01, 0, 0, 0, 1, // fragment -> tcp, offset 0, M=1
            0x01, 0xbb, 0xc3, 0x50, // tcp ports 443 -> 50000
        ];
        let upper = upper_layer(IpProtocol::Ipv6Opts, &payload).unwrap();
        assert_eq!(upper.protocol, IpProtocol::Tcp);
        assert_eq!(upper.offset, 16);
        assert_eq!((upper.src_port, upper.dst_port), (Some(443), Some(50000)));
        assert!(upper.fragmented);

        let mut later = payload;
        later[10] = 0x05; // fragment offset 160 (8-byte units): not the first fragment
        let upper = upper_layer(IpProtocol::Ipv6Opts, &later).unwrap();
        assert_eq!((upper.protocol, upper.src_port), (IpProtocol::Tcp, None));
    }

    #[test]
    fn the_walk_is_bounded() {
        // Nine empty destination options headers chained to each other.
        let mut payload = Vec::new();
        for _ in 0..9 {
            payload.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            upper_layer(IpProtocol::Ipv6Opts, &payload),
            Err(Error::TooManyExtensionHeaders { max: 8 })
        );
        assert!(matches!(
            upper_layer(IpProtocol::Ipv6Opts, &payload[..5]),
            Err(Error::Truncated { .. })
        ));
    }
}
