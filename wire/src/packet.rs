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
    ///
    /// The agent's hot path. A packet with a Hop-by-Hop header (TCP or UDP
    /// after it, options well formed) is parsed in one walk with each
    /// length checked once; anything else, and every malformed packet,
    /// takes the general parser, which also words the error. Both give the
    /// same result for every input (a property test checks it).
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<PacketRepr<'a>> {
        fast::parse(bytes)
    }

    /// The general parser: view by view, every error worded.
    #[cold]
    #[inline(never)]
    pub(crate) fn parse_general(bytes: &'a [u8]) -> Result<PacketRepr<'a>> {
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

/// The one-walk parser of a packet with a Hop-by-Hop header: the same
/// checks as the views and reprs, in the same bytes, but each length is
/// checked once and the results are built in place. Anything it does not
/// take goes to [`PacketRepr::parse_general`] (also every error, so only
/// that parser words errors).
mod fast {
    use super::PacketRepr;
    use crate::clt::{self, CltRepr};
    use crate::hbh::HbhRepr;
    use crate::ioam::{MAX_NODE_DATA, TRACE_HEADER_LEN, TraceFlags, TraceRepr};
    use crate::ipv6::{HEADER_LEN, IpProtocol, Ipv6Repr, UpperLayer};
    use crate::option::{CLT, IOAM, PAD1};
    use crate::trace_type::TraceType;
    use crate::Result;
    use std::net::Ipv6Addr;

    const HOP_BY_HOP: u8 = 0;
    const TCP: u8 = 6;
    const UDP: u8 = 17;

    #[inline(always)]
    pub(super) fn parse(bytes: &[u8]) -> Result<PacketRepr<'_>> {
        // Builds the result in place: `?` on an `Option` here would move it.
        macro_rules! take {
            ($e:expr) => {
                match $e {
                    Some(v) => v,
                    None => return PacketRepr::parse_general(bytes),
                }
            };
        }
        let (h, rest) = take!(bytes.split_first_chunk::<HEADER_LEN>());
        if h[0] >> 4 != 6 || h[6] != HOP_BY_HOP {
            return PacketRepr::parse_general(bytes);
        }
        let payload_len = u16::from_be_bytes([h[4], h[5]]);
        let payload = take!(rest.get(..usize::from(payload_len)));
        let (&[next_header, ext_len], _) = take!(payload.split_first_chunk::<2>());
        let hbh_len = (usize::from(ext_len) + 1) * 8;
        let (hbh, upper) = take!(payload.split_at_checked(hbh_len));
        let area = take!(hbh.get(2..));

        // The option walk of `HbhRepr::parse`.
        let mut clt = None;
        let mut trace = None;
        let mut at = 0usize;
        while let Some(&option_type) = area.get(at) {
            if option_type == PAD1 {
                at += 1;
                continue;
            }
            let len = usize::from(*take!(area.get(at + 1)));
            let data = take!(area.get(at + 2..at + 2 + len));
            match option_type {
                CLT => {
                    let (ids, _) = take!(data.split_first_chunk::<{ clt::DATA_LEN }>());
                    if len != clt::DATA_LEN {
                        return PacketRepr::parse_general(bytes);
                    }
                    if clt.is_none() {
                        clt = Some(CltRepr::from_bytes(ids));
                    }
                }
                IOAM => {
                    // Reserved, IOAM-Type, then the body.
                    let (&[_, ioam_type], body) = take!(data.split_first_chunk::<2>());
                    if ioam_type == 0 {
                        let parsed = take!(preallocated_trace(body));
                        if trace.is_none() {
                            trace = Some(parsed);
                        }
                    }
                }
                _ => {}
            }
            at += 2 + len;
        }

        // The upper layer right after the Hop-by-Hop header.
        if next_header != TCP && next_header != UDP {
            return PacketRepr::parse_general(bytes);
        }
        let (ports, _) = take!(upper.split_first_chunk::<4>());
        let w0 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let src: [u8; 16] = *take!(h[8..].first_chunk::<16>());
        let dst: [u8; 16] = *take!(h[24..].first_chunk::<16>());
        Ok(PacketRepr {
            ipv6: Ipv6Repr {
                traffic_class: (w0 >> 20) as u8,
                flow_label: w0 & 0x000f_ffff,
                payload_len,
                next_header: IpProtocol::HopByHop,
                hop_limit: h[7],
                src_addr: Ipv6Addr::from(src),
                dst_addr: Ipv6Addr::from(dst),
            },
            hbh: Some(HbhRepr::from_wire(
                IpProtocol::from(next_header),
                area,
                clt,
                trace,
            )),
            upper: UpperLayer {
                protocol: IpProtocol::from(next_header),
                offset: hbh_len,
                src_port: Some(u16::from_be_bytes([ports[0], ports[1]])),
                dst_port: Some(u16::from_be_bytes([ports[2], ports[3]])),
                fragmented: false,
            },
        })
    }

    /// `TraceRepr::parse` of the body of an IOAM option of type 0.
    #[inline(always)]
    fn preallocated_trace(body: &[u8]) -> Option<TraceRepr<'_>> {
        let (h, node_data) = body.split_first_chunk::<TRACE_HEADER_LEN>()?;
        let trace_type = TraceType::from_bits(u32::from_be_bytes([0, h[4], h[5], h[6]]));
        let node_len = h[2] >> 3;
        let remaining_len = h[3] & 0x7f;
        if node_len != trace_type.node_len()
            || node_data.len() > MAX_NODE_DATA + 1
            || usize::from(remaining_len) * 4 > node_data.len()
        {
            return None;
        }
        let trace = TraceRepr {
            namespace_id: u16::from_be_bytes([h[0], h[1]]),
            node_len,
            flags: TraceFlags::from_bits(((h[2] & 0x07) << 1) | (h[3] >> 7)),
            remaining_len,
            trace_type,
            reserved: h[7],
            node_data,
        };
        trace.check_entries().ok()?;
        Some(trace)
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
