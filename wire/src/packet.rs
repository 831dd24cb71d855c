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
    use crate::Result;
    use crate::clt::{self, CltRepr};
    use crate::hbh::HbhRepr;
    use crate::ioam::{MAX_NODE_DATA, TRACE_HEADER_LEN, TraceFlags, TraceRepr};
    use crate::ipv6::{HEADER_LEN, IpProtocol, Ipv6Repr, UpperLayer};
    use crate::option::{CLT, IOAM, PAD1};
    use crate::trace_type::TraceType;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        CltRepr, HbhBuilder, HopLimitNodeId, InterfaceIds, NodeRepr, TracePacket, TraceType,
        fill_node,
    };
    use proptest::prelude::*;

    /// The fast path and the general parser agree: same result, same
    /// error, and the same CLT ids and trace (which `HbhRepr`'s equality,
    /// over the option list, does not compare).
    fn agree(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
        let fast = PacketRepr::parse(bytes);
        let general = PacketRepr::parse_general(bytes);
        prop_assert_eq!(&fast, &general);
        if let (Ok(fast), Ok(general)) = (&fast, &general) {
            let (fast, general) = (fast.hbh.as_ref(), general.hbh.as_ref());
            prop_assert_eq!(fast.map(|h| h.clt()), general.map(|h| h.clt()));
            prop_assert_eq!(
                fast.map(|h| h.ioam_trace()),
                general.map(|h| h.ioam_trace())
            );
        }
        Ok(())
    }

    /// A packet as the socket API sends it, after `hops` transit fills.
    fn packet(
        bits: u32,
        size_words: usize,
        clt: bool,
        hops: usize,
        next: u8,
        tail: &[u8],
    ) -> Option<Vec<u8>> {
        let trace_type = TraceType::from_bits(bits & TraceType::KNOWN);
        let node = |i: usize| {
            NodeRepr {
                hop_limit_node_id: Some(HopLimitNodeId {
                    hop_limit: 64 - i as u8,
                    node_id: i as u32,
                }),
                interface_ids: Some(InterfaceIds {
                    ingress: i as u16,
                    egress: 7,
                }),
                queue_depth: Some(i as u32 * 3),
                ..NodeRepr::default()
            }
            .for_trace_type(trace_type)
        };
        let mut builder = HbhBuilder::new().next_header(IpProtocol::from(next)).trace(
            7,
            trace_type,
            size_words * 4,
        );
        if clt {
            builder = builder.clt(CltRepr::from_ids(u128::MAX / 3, 42));
        }
        let mut hbh = builder.build().ok()?;
        let trace_at = if clt { 32 } else { 8 };
        for i in 0..hops {
            let mut trace = TracePacket::new_checked(&mut hbh[trace_at..]).ok()?;
            fill_node(&mut trace, &node(i)).ok()?;
        }
        let mut bytes = vec![0x60, 0x01, 0x23, 0x45, 0, 0, 0, 57];
        bytes.extend_from_slice(&[0x20; 32]);
        let payload_len = (hbh.len() + tail.len()) as u16;
        bytes[4..6].copy_from_slice(&payload_len.to_be_bytes());
        bytes.extend_from_slice(&hbh);
        bytes.extend_from_slice(tail);
        Some(bytes)
    }

    #[test]
    fn the_benchmark_packet_takes_the_fast_path() {
        let bits = 0xc2_0000; // hop_limit_node_id | interface_ids | queue_depth
        let bytes = packet(bits, 24, true, 8, 17, &[0x30, 0x39, 0, 0x35, 0, 8, 0, 0]).unwrap();
        let parsed = PacketRepr::parse(&bytes).unwrap();
        assert_eq!(parsed, PacketRepr::parse_general(&bytes).unwrap());
        assert_eq!(parsed.upper.src_port, Some(12345));
        let trace = parsed.hbh.as_ref().and_then(|h| h.ioam_trace()).unwrap();
        assert_eq!(trace.check_entries(), Ok(8));
        assert!(fast::parse(&bytes).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn fast_path_agrees_on_built_and_corrupted_packets(
            bits in prop_oneof![Just(0xc2_0000u32), Just(0xff_f002), 0u32..=0xff_ffff],
            size_words in 1usize..=61,
            clt in any::<bool>(),
            hops in 0usize..10,
            next in prop_oneof![Just(17u8), Just(6), Just(59), Just(60), Just(44), any::<u8>()],
            tail in proptest::collection::vec(any::<u8>(), 0..12),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let Some(mut bytes) = packet(bits, size_words, clt, hops, next, &tail) else {
                return Ok(());
            };
            agree(&bytes)?;
            for &(at, value) in &flips {
                let at = at % bytes.len();
                bytes[at] = value;
                agree(&bytes)?;
            }
            agree(&bytes[..cut % (bytes.len() + 1)])?;
        }

        #[test]
        fn fast_path_agrees_on_arbitrary_hop_by_hop_bytes(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            hel in any::<u8>(),
        ) {
            let mut bytes = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
            bytes.extend_from_slice(&[0u8; 32]);
            let mut payload = payload;
            if payload.len() >= 2 {
                payload[1] = hel % 40;
            }
            bytes[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&payload);
            agree(&bytes)?;
        }
    }
}
