//! A whole captured IPv6 packet: the fixed header, the Hop-by-Hop header if
//! present, and the upper layer's ports; and a printer for it.

use crate::hbh::{HbhHeader, HbhRepr};
use crate::ipv6::{IpProtocol, Ipv6Packet, Ipv6Repr, UpperLayer, upper_layer};
use crate::{Result, need};
use std::fmt;

/// What the agent needs from one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketRepr<'a> {
    pub ipv6: Ipv6Repr,
    /// The Hop-by-Hop header, when the packet has one (it can only come
    /// first, RFC 8200 section 4.1).
    pub hbh: Option<HbhRepr<'a>>,
    /// The upper layer after the extension headers, with TCP/UDP ports.
    pub upper: UpperLayer,
}

impl<'a> PacketRepr<'a> {
    /// Parses a packet that starts with the IPv6 header (no link layer).
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<PacketRepr<'a>> {
        let packet = Ipv6Packet::new_checked(bytes)?;
        let ipv6 = Ipv6Repr::parse(&packet)?;
        let payload = packet.payload();
        let hbh = match ipv6.next_header {
            IpProtocol::HopByHop => {
                need("hop-by-hop header", 2, payload.len())?;
                Some(HbhRepr::parse(&HbhHeader::new_checked(payload)?)?)
            }
            _ => None,
        };
        let upper = upper_layer(ipv6.next_header, payload)?;
        Ok(PacketRepr { ipv6, hbh, upper })
    }
}

impl fmt::Display for PacketRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ipv6)?;
        if let Some(hbh) = &self.hbh {
            write!(f, "\n{hbh}")?;
        }
        write!(f, "\n{}", self.upper.protocol)?;
        if let (Some(src), Some(dst)) = (self.upper.src_port, self.upper.dst_port) {
            write!(f, " {src} -> {dst}")?;
        }
        Ok(())
    }
}

/// Prints any bytes as an IPv6 packet: the parsed packet, or the error
/// that stopped the parse. Never panics.
#[derive(Debug, Clone, Copy)]
pub struct Printer<'a>(pub &'a [u8]);

impl fmt::Display for Printer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PacketRepr::parse(self.0) {
            Ok(packet) => write!(f, "{packet}"),
            Err(e) => write!(f, "malformed packet ({} bytes): {e}", self.0.len()),
        }
    }
}
