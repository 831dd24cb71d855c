//! The CLT socket API: the paper's `CLT.enable(sockfd, trace_id, span_id)`
//! and `CLT.disable(sockfd)`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let plan: cltc::artifact::linux::LinuxPlan = serde_json::from_str("")?;
//! let sock = std::net::UdpSocket::bind("[::]:0")?;
//! sock.connect("[db02::2]:4000")?;
//! clt_linux::socket::enable(&sock, &plan.encap[0], [0x11; 16], [0x22; 8])?;
//! sock.send(b"GET /login")?; // carries IOAM + the ids; every hop fills it
//! clt_linux::socket::disable(&sock)?;
//! # Ok(()) }
//! ```
//!
//! [`enable`] sets `IPV6_HOPOPTS` (sticky: every packet the socket sends
//! until [`disable`] carries it) to a Hop-by-Hop header built by
//! [`clt_wire::HbhBuilder`]: the policy's pre-allocated IOAM trace
//! (namespace, trace type, size) and, when the policy has `context w3c`, the
//! CLT option with the request's ids. The sender's own entry is filled as a
//! Linux encapsulating node (`__ioam6_fill_trace_data` on output) fills it:
//!
//! | field | value |
//! |---|---|
//! | hop limit | the socket's unicast hop limit (`IPV6_UNICAST_HOPS`) |
//! | node id, wide node id | `net.ipv6.ioam6_id`, `net.ipv6.ioam6_id_wide` |
//! | ingress if id (and wide) | all ones: a local packet has no ingress interface |
//! | egress if id (and wide) | `net.ipv6.conf.<egress>.ioam6_id` (`_wide`); the egress comes from a route lookup for the peer (or the policy prefix), or [`EnableOptions::egress`] |
//! | namespace data (and wide) | the namespace's data in the kernel (`ip ioam namespace`) |
//! | transit delay, checksum complement, buffer occupancy, bits 12-21 | all ones, as Linux |
//! | opaque state | the schema bound to the namespace, or the "no schema" id |
//! | timestamps | the send time (seconds, microseconds) |
//! | queue depth | all ones |
//!
//! Two deliberate differences: a kernel encapsulating node writes all ones
//! for the timestamps of locally generated packets (it has no receive time),
//! while the socket API writes the time of `enable`, the request's start on
//! the wire ([`EnableOptions::timestamps`] = false restores the kernel's
//! behaviour); and it writes all ones for queue depth, which the kernel reads
//! from the egress qdisc at transmit time, after the application is done.
//! As in the kernel, nothing is filled when the namespace is not configured
//! on this node (the trace still goes out, empty).
//!
//! The kernel values are read once per network namespace (keyed by the
//! socket's `SO_NETNS_COOKIE`) and cached; cache misses read through the
//! calling thread's namespace, which must be the socket's. [`refresh`] drops
//! the cache after a reconfiguration. Setting `IPV6_HOPOPTS` needs
//! `CAP_NET_RAW`.

use crate::nl::Netlink;
use crate::{Error, sys, sysctl};
use clt_wire::node::{NO_SCHEMA, UNAVAILABLE_U32};
use clt_wire::{
    CltRepr, HbhBuilder, HopLimitNodeId, HopLimitNodeIdWide, InterfaceIds, InterfaceIdsWide,
    NodeRepr, OpaqueState, TraceField, TraceType,
};
use cltc::artifact::linux::EncapPolicy;
use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Options of [`enable_with`].
#[derive(Debug, Clone, Default)]
pub struct EnableOptions {
    /// The egress interface; looked up by route when `None`.
    pub egress: Option<String>,
    /// Write the send time (default) rather than all ones.
    pub no_timestamps: bool,
}

impl EnableOptions {
    pub fn timestamps(&self) -> bool {
        !self.no_timestamps
    }
}

/// One IOAM namespace as the sender fills it.
#[derive(Debug, Clone)]
struct NsInfo {
    data: u32,
    data_wide: u64,
    schema: Option<(u32, Vec<u8>)>,
}

/// What one network namespace's kernel says about this node.
#[derive(Debug, Default)]
struct NodeState {
    node_id: u32,
    node_id_wide: u64,
    namespaces: HashMap<u16, NsInfo>,
    /// Interface name to (ioam6_id, ioam6_id_wide).
    ifaces: Mutex<HashMap<String, (u16, u32)>>,
    /// Destination to egress interface name.
    egress: Mutex<HashMap<Ipv6Addr, Option<String>>>,
}

type Cache = Mutex<HashMap<u64, Arc<NodeState>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn parse_num(key: &str) -> Result<u64, Error> {
    let v = sysctl::read(key)?;
    v.parse().map_err(|_| Error::Sysctl {
        key: key.to_string(),
        error: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a number: {v}"),
        ),
    })
}

impl NodeState {
    fn load() -> Result<NodeState, Error> {
        let nl = Netlink::open()?;
        let schemas: HashMap<u32, Vec<u8>> = match nl.schemas() {
            Ok(s) => s.into_iter().map(|s| (s.id, s.data)).collect(),
            Err(_) => HashMap::new(),
        };
        let namespaces = nl
            .namespaces()
            .unwrap_or_default()
            .into_iter()
            .map(|n| {
                let schema = n
                    .schema
                    .and_then(|id| schemas.get(&id).map(|d| (id, d.clone())));
                (
                    n.id,
                    NsInfo {
                        data: n.data.unwrap_or(UNAVAILABLE_U32),
                        data_wide: n.data_wide.unwrap_or(u64::MAX),
                        schema,
                    },
                )
            })
            .collect();
        Ok(NodeState {
            node_id: parse_num("net.ipv6.ioam6_id")? as u32,
            node_id_wide: parse_num("net.ipv6.ioam6_id_wide")?,
            namespaces,
            ..NodeState::default()
        })
    }

    fn iface_ids(&self, dev: &str) -> Result<(u16, u32), Error> {
        let mut m = self.ifaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = m.get(dev) {
            return Ok(*v);
        }
        let id = parse_num(&format!("net.ipv6.conf.{dev}.ioam6_id"))? as u16;
        let wide = parse_num(&format!("net.ipv6.conf.{dev}.ioam6_id_wide"))? as u32;
        m.insert(dev.to_string(), (id, wide));
        Ok((id, wide))
    }

    fn egress_for(&self, dst: Ipv6Addr) -> Result<Option<String>, Error> {
        let mut m = self.egress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = m.get(&dst) {
            return Ok(v.clone());
        }
        let nl = Netlink::open()?;
        let dev = match nl.route_get(dst)? {
            None => None,
            Some(idx) => nl
                .links()?
                .into_iter()
                .find(|l| l.index == idx)
                .map(|l| l.name),
        };
        m.insert(dst, dev.clone());
        Ok(dev)
    }
}

fn state_for(fd: BorrowedFd<'_>) -> Result<Arc<NodeState>, Error> {
    let cookie = sys::netns_cookie(fd).map_err(|error| Error::Socket {
        op: "getsockopt(SO_NETNS_COOKIE)",
        error,
    })?;
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = c.get(&cookie) {
        return Ok(Arc::clone(s));
    }
    let s = Arc::new(NodeState::load()?);
    c.insert(cookie, Arc::clone(&s));
    Ok(s)
}

/// Forgets the cached kernel values (node ids, namespaces, interface ids,
/// egress interfaces) of every namespace.
pub fn refresh() {
    cache().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// All-ones values for the undefined trace-type bits 12-21 (at most 10).
static UNDEFINED: [u8; 40] = [0xff; 40];
const UNDEFINED_BITS: u32 = 0x000ffc;

/// The sender's own entry, as a Linux encapsulating node would write it.
fn own_entry<'a>(
    trace_type: TraceType,
    state: &NodeState,
    ns: &'a NsInfo,
    hop_limit: u8,
    egress: Option<(u16, u32)>,
    timestamps: bool,
) -> NodeRepr<'a> {
    let has = |f: TraceField| trace_type.contains(f);
    let (secs, micros) = match (timestamps, SystemTime::now().duration_since(UNIX_EPOCH)) {
        (true, Ok(d)) => (d.as_secs() as u32, d.subsec_micros()),
        _ => (UNAVAILABLE_U32, UNAVAILABLE_U32),
    };
    let (egress_id, egress_wide) = egress.unwrap_or((u16::MAX, u32::MAX));
    let undefined = (trace_type.bits() & UNDEFINED_BITS).count_ones() as usize * 4;
    NodeRepr {
        hop_limit_node_id: has(TraceField::HopLimitNodeId).then_some(HopLimitNodeId {
            hop_limit,
            node_id: state.node_id & 0x00ff_ffff,
        }),
        interface_ids: has(TraceField::InterfaceIds).then_some(InterfaceIds {
            ingress: u16::MAX,
            egress: egress_id,
        }),
        timestamp_secs: has(TraceField::TimestampSecs).then_some(secs),
        timestamp_frac: has(TraceField::TimestampFrac).then_some(micros),
        transit_delay: has(TraceField::TransitDelay).then_some(UNAVAILABLE_U32),
        namespace_data: has(TraceField::NamespaceData).then_some(ns.data),
        queue_depth: has(TraceField::QueueDepth).then_some(UNAVAILABLE_U32),
        checksum_complement: has(TraceField::ChecksumComplement).then_some(UNAVAILABLE_U32),
        hop_limit_node_id_wide: has(TraceField::HopLimitNodeIdWide).then_some(HopLimitNodeIdWide {
            hop_limit,
            node_id: state.node_id_wide & 0x00ff_ffff_ffff_ffff,
        }),
        interface_ids_wide: has(TraceField::InterfaceIdsWide).then_some(InterfaceIdsWide {
            ingress: u32::MAX,
            egress: egress_wide,
        }),
        namespace_data_wide: has(TraceField::NamespaceDataWide).then_some(ns.data_wide),
        buffer_occupancy: has(TraceField::BufferOccupancy).then_some(UNAVAILABLE_U32),
        undefined: &UNDEFINED[..undefined],
        opaque_state: has(TraceField::OpaqueState).then(|| match &ns.schema {
            Some((id, data)) => OpaqueState {
                schema_id: *id,
                data,
            },
            None => OpaqueState {
                schema_id: NO_SCHEMA,
                data: &[],
            },
        }),
    }
}

/// The Hop-by-Hop header [`enable_with`] would set on `fd`.
pub fn header(
    fd: &impl AsFd,
    policy: &EncapPolicy,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    opts: &EnableOptions,
) -> Result<Vec<u8>, Error> {
    let mut buf = [0u8; 512];
    let len = header_into(fd.as_fd(), policy, trace_id, span_id, opts, &mut buf)?;
    Ok(buf[..len].to_vec())
}

fn header_into(
    fd: BorrowedFd<'_>,
    policy: &EncapPolicy,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    opts: &EnableOptions,
    buf: &mut [u8],
) -> Result<usize, Error> {
    let state = state_for(fd)?;
    let mut b = HbhBuilder::new().trace(
        policy.namespace,
        policy.trace_type,
        usize::from(policy.size),
    );
    if policy.context_w3c {
        b = b.clt(CltRepr { trace_id, span_id });
    }
    let Some(ns) = state.namespaces.get(&policy.namespace) else {
        // Like the kernel: an unknown namespace inserts an empty trace.
        return Ok(b.build_into(buf)?);
    };
    let hop_limit = sys::get_int(fd, sys::IPPROTO_IPV6, sys::IPV6_UNICAST_HOPS)
        .map_err(|error| Error::Socket {
            op: "getsockopt(IPV6_UNICAST_HOPS)",
            error,
        })?
        .clamp(0, 255) as u8;
    let t = policy.trace_type;
    let needs_egress =
        t.contains(TraceField::InterfaceIds) || t.contains(TraceField::InterfaceIdsWide);
    let egress = if needs_egress {
        let dev = match &opts.egress {
            Some(d) => Some(d.clone()),
            None => {
                let dst = sys::peer_v6(fd)
                    .map_err(|error| Error::Socket {
                        op: "getpeername",
                        error,
                    })?
                    .unwrap_or(policy.dst.network());
                state.egress_for(dst)?
            }
        };
        match dev {
            Some(d) => Some(state.iface_ids(&d)?),
            None => None,
        }
    } else {
        None
    };
    let node = own_entry(t, &state, ns, hop_limit, egress, opts.timestamps());
    Ok(b.encap_node(node).build_into(buf)?)
}

/// `CLT.enable(sockfd, trace_id, span_id)`: every packet `fd` sends from now
/// on carries the policy's IOAM trace (with this node's entry) and the ids.
pub fn enable(
    fd: &impl AsFd,
    policy: &EncapPolicy,
    trace_id: [u8; 16],
    span_id: [u8; 8],
) -> Result<(), Error> {
    enable_with(fd, policy, trace_id, span_id, &EnableOptions::default())
}

/// [`enable`] with options.
pub fn enable_with(
    fd: &impl AsFd,
    policy: &EncapPolicy,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    opts: &EnableOptions,
) -> Result<(), Error> {
    let fd = fd.as_fd();
    let mut buf = [0u8; 512];
    let len = header_into(fd, policy, trace_id, span_id, opts, &mut buf)?;
    set_header(&fd, &buf[..len])
}

/// `CLT.disable(sockfd)`: removes the Hop-by-Hop header from `fd`.
pub fn disable(fd: &impl AsFd) -> Result<(), Error> {
    set_header(fd, &[])
}

/// Sets `header`, a whole Hop-by-Hop header (e.g. from
/// [`clt_wire::HbhBuilder`]), as the sticky options of every packet `fd`
/// sends (`IPV6_HOPOPTS`); an empty `header` removes them. [`enable`] and
/// [`disable`] are this with the header they build.
pub fn set_header(fd: &impl AsFd, header: &[u8]) -> Result<(), Error> {
    sys::set_hopopts(fd.as_fd(), header).map_err(|error| Error::Socket {
        op: "setsockopt(IPV6_HOPOPTS)",
        error,
    })
}

/// A socket's header prepared once, for many requests on the same socket
/// (a keep-alive connection): [`Marker::enable`] only writes the ids and the
/// timestamps into a copy of the template and makes one `setsockopt`, where
/// [`enable`] also asks the kernel for the socket's namespace, peer and hop
/// limit. Build a new `Marker` if the socket's peer or hop limit changes.
#[derive(Debug, Clone)]
pub struct Marker {
    template: Vec<u8>,
    /// Offset of the CLT option's trace id.
    ids_at: Option<usize>,
    /// Offsets of this node's timestamp seconds and fraction.
    secs_at: Option<usize>,
    frac_at: Option<usize>,
}

impl Marker {
    pub fn new(
        fd: &impl AsFd,
        policy: &EncapPolicy,
        opts: &EnableOptions,
    ) -> Result<Marker, Error> {
        let template = header(fd, policy, [0; 16], [0; 8], opts)?;
        let h = clt_wire::HbhHeader::new_checked(&template[..])?;
        let (mut ids_at, mut secs_at, mut frac_at) = (None, None, None);
        for o in h.options_iter() {
            let (at, o) = o?;
            let data_at = 2 + at + 2;
            match o.option_type() {
                clt_wire::OptionType::Clt => ids_at = Some(data_at),
                clt_wire::OptionType::Ioam => {
                    let trace_at = data_at + 2;
                    let t = clt_wire::TracePacket::new_checked(&template[trace_at..])?;
                    let tt = t.trace_type();
                    let filled = t.node_data().len() > usize::from(t.remaining_len()) * 4;
                    if filled && opts.timestamps() {
                        let mut off = trace_at + 8 + usize::from(t.remaining_len()) * 4;
                        off += 4 * usize::from(tt.contains(TraceField::HopLimitNodeId));
                        off += 4 * usize::from(tt.contains(TraceField::InterfaceIds));
                        if tt.contains(TraceField::TimestampSecs) {
                            secs_at = Some(off);
                            off += 4;
                        }
                        if tt.contains(TraceField::TimestampFrac) {
                            frac_at = Some(off);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Marker {
            template,
            ids_at,
            secs_at,
            frac_at,
        })
    }

    /// The header for one request.
    pub fn header(&self, trace_id: [u8; 16], span_id: [u8; 8], buf: &mut [u8]) -> usize {
        let len = self.template.len().min(buf.len());
        buf[..len].copy_from_slice(&self.template[..len]);
        if let Some(at) = self.ids_at {
            buf[at..at + 16].copy_from_slice(&trace_id);
            buf[at + 16..at + 24].copy_from_slice(&span_id);
        }
        if self.secs_at.is_some() || self.frac_at.is_some() {
            let d = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            if let Some(at) = self.secs_at {
                buf[at..at + 4].copy_from_slice(&(d.as_secs() as u32).to_be_bytes());
            }
            if let Some(at) = self.frac_at {
                buf[at..at + 4].copy_from_slice(&d.subsec_micros().to_be_bytes());
            }
        }
        len
    }

    /// [`enable`] for one request on the socket the marker was built for.
    pub fn enable(
        &self,
        fd: &impl AsFd,
        trace_id: [u8; 16],
        span_id: [u8; 8],
    ) -> Result<(), Error> {
        let mut buf = [0u8; 512];
        let len = self.header(trace_id, span_id, &mut buf);
        set_header(fd, &buf[..len])
    }
}

/// Asks the kernel to hand the Hop-by-Hop header of each received datagram
/// to [`recv_with_hopopts`] (`IPV6_RECVHOPOPTS`).
pub fn receive_hopopts(fd: &impl AsFd) -> Result<(), Error> {
    sys::set_int(fd.as_fd(), sys::IPPROTO_IPV6, sys::IPV6_RECVHOPOPTS, 1).map_err(|error| {
        Error::Socket {
            op: "setsockopt(IPV6_RECVHOPOPTS)",
            error,
        }
    })
}

/// Receives one datagram and its Hop-by-Hop header, if it had one.
pub fn recv_with_hopopts(
    fd: &impl AsFd,
    buf: &mut [u8],
) -> Result<(usize, Option<Vec<u8>>), Error> {
    sys::recv_with_hopopts(fd.as_fd(), buf).map_err(|error| Error::Socket {
        op: "recvmsg",
        error,
    })
}
