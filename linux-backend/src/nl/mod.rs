//! Netlink transport and typed operations.
//!
//! neli carries the messages: it opens the sockets, frames `nlmsghdr`s,
//! matches sequence numbers, and turns `NLMSG_ERROR` into errors (with the
//! kernel's extended-ack text). The payloads (generic netlink and rtnetlink
//! structs and attributes) are built and parsed by this crate's own
//! length-checked codecs in [`attr`], [`ioam6`] and [`route`], so that every
//! byte from the kernel is validated once and every message type round-trips
//! in unit tests from captured bytes.
//!
//! nfnetlink ([`nfnl`], [`nft`], [`nflog`]) is framed by this crate on
//! neli's raw socket instead: an nf_tables change is a batch of messages in
//! one `sendmsg`, which neli's request/reply router cannot express.
//!
//! Sockets belong to the network namespace of the thread that opens them:
//! open a [`Netlink`] on the thread that runs inside the target namespace.

pub mod attr;
pub mod ioam6;
pub mod nflog;
pub mod nfnl;
pub mod nft;
pub mod route;

use crate::Error;
use neli::{
    consts::{
        nl::{NlmF, Nlmsg},
        socket::NlFamily,
    },
    err::RouterError,
    nl::NlPayload,
    router::synchronous::NlRouter,
    types::Buffer,
    utils::Groups,
};
use route::{AddrRepr, LinkRepr, NeighRepr, RouteRepr, rtm};
use std::io;

/// The two netlink sockets (rtnetlink and generic netlink) of one network
/// namespace, with the `IOAM6` family id resolved once.
pub struct Netlink {
    route: NlRouter,
    genl: NlRouter,
    ioam6: Result<u16, String>,
    /// Dump messages that failed to parse and were skipped.
    pub malformed: std::cell::Cell<u64>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("ioam6", &self.ioam6)
            .finish_non_exhaustive()
    }
}

/// How many times a dump cut short by the kernel is asked again.
const DUMP_ATTEMPTS: u32 = 3;

/// What one dump request gave back.
enum Dumped {
    Complete(Vec<Vec<u8>>),
    /// The kernel flagged the dump `NLM_F_DUMP_INTR`.
    Interrupted,
}

fn router_error<T: std::fmt::Debug, P: std::fmt::Debug>(op: &str, e: RouterError<T, P>) -> Error {
    match e {
        RouterError::Nlmsgerr(e) => {
            let errno = -*e.error();
            let detail = e
                .ext_ack()
                .iter()
                .find(|a| u16::from(*a.nla_type().nla_type()) == 1)
                .map(|a| {
                    let b: &[u8] = a.nla_payload().as_ref();
                    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default())
                        .into_owned()
                })
                .filter(|s| !s.is_empty());
            Error::Kernel {
                op: op.to_string(),
                error: io::Error::from_raw_os_error(errno),
                detail,
            }
        }
        other => Error::Netlink(format!("{op}: {other}")),
    }
}

impl Netlink {
    /// Opens both sockets in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, Error> {
        let (route, _) = NlRouter::connect(NlFamily::Route, None, Groups::empty())
            .map_err(|e| Error::Netlink(format!("open rtnetlink socket: {e}")))?;
        let (genl, _) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| Error::Netlink(format!("open generic netlink socket: {e}")))?;
        // Extended acks carry the kernel's reason; best effort.
        let _ = route.enable_ext_ack(true);
        let _ = genl.enable_ext_ack(true);
        let ioam6 = genl
            .resolve_genl_family(ioam6::FAMILY_NAME)
            .map_err(|e| e.to_string());
        Ok(Netlink {
            route,
            genl,
            ioam6,
            malformed: std::cell::Cell::new(0),
        })
    }

    fn ioam6_id(&self) -> Result<u16, Error> {
        self.ioam6.clone().map_err(|e| {
            Error::Unsupported(format!(
                "the kernel has no IOAM6 generic netlink family (CONFIG_IPV6_IOAM6? {e})"
            ))
        })
    }

    /// Sends a request and waits for its acknowledgement.
    fn request(
        router: &NlRouter,
        ty: u16,
        flags: NlmF,
        payload: Vec<u8>,
        op: &str,
    ) -> Result<(), Error> {
        let handle = router
            .send::<u16, Buffer, u16, Buffer>(
                ty,
                flags | NlmF::ACK,
                NlPayload::Payload(Buffer::from(payload)),
            )
            .map_err(|e| router_error(op, e))?;
        for msg in handle {
            msg.map_err(|e| router_error(op, e))?;
        }
        Ok(())
    }

    /// Sends a dump request and returns the payloads of the replies of type
    /// `reply`.
    ///
    /// A dump is read in several receives, and the kernel builds each next
    /// part inside the receive call; when building it fails, the error is
    /// stored on the socket and surfaces as an I/O error of the *next*
    /// receive (`netlink_recvmsg` -> `sk_err`), with the rest of the dump
    /// gone. A dump the kernel flags as inconsistent (`NLM_F_DUMP_INTR`:
    /// the table changed while it was read) is just as incomplete. Both are
    /// transient, so the whole dump is asked again, at most
    /// [`DUMP_ATTEMPTS`] times; an error the kernel answers to the request
    /// itself (`NLMSG_ERROR`) is final at once.
    fn dump(
        router: &NlRouter,
        ty: u16,
        reply: u16,
        payload: Vec<u8>,
        op: &str,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let mut attempt = 1;
        loop {
            match Self::dump_once(router, ty, reply, &payload) {
                Ok(Dumped::Complete(out)) => return Ok(out),
                Ok(Dumped::Interrupted) if attempt < DUMP_ATTEMPTS => {}
                Ok(Dumped::Interrupted) => {
                    return Err(Error::Netlink(format!(
                        "{op}: the table kept changing during {DUMP_ATTEMPTS} dumps"
                    )));
                }
                Err(RouterError::Nlmsgerr(e)) => {
                    return Err(router_error(op, RouterError::<u16, Buffer>::Nlmsgerr(e)));
                }
                Err(_) if attempt < DUMP_ATTEMPTS => {}
                Err(e) => return Err(router_error(op, e)),
            }
            attempt += 1;
        }
    }

    fn dump_once(
        router: &NlRouter,
        ty: u16,
        reply: u16,
        payload: &[u8],
    ) -> Result<Dumped, RouterError<u16, Buffer>> {
        let handle = router.send::<u16, Buffer, u16, Buffer>(
            ty,
            NlmF::DUMP,
            NlPayload::Payload(Buffer::from(payload)),
        )?;
        let mut out = Vec::new();
        let mut interrupted = false;
        for msg in handle {
            let msg = msg?;
            interrupted |= msg.nl_flags().contains(NlmF::DUMP_INTR);
            if *msg.nl_type() == u16::from(Nlmsg::Done) {
                break;
            }
            if *msg.nl_type() == reply {
                if let Some(p) = msg.get_payload() {
                    out.push(p.as_ref().to_vec());
                }
            }
        }
        Ok(if interrupted {
            Dumped::Interrupted
        } else {
            Dumped::Complete(out)
        })
    }

    fn parse_all<T>(
        &self,
        payloads: Vec<Vec<u8>>,
        parse: impl Fn(&[u8]) -> Result<Option<T>, Error>,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(payloads.len());
        for p in payloads {
            match parse(&p) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => {}
                Err(_) => self.malformed.set(self.malformed.get() + 1),
            }
        }
        out
    }

    // ---- IOAM6 generic netlink ----

    pub fn namespaces(&self) -> Result<Vec<ioam6::NamespaceRepr>, Error> {
        let id = self.ioam6_id()?;
        let p = Self::dump(
            &self.genl,
            id,
            id,
            ioam6::dump(ioam6::Cmd::DumpNamespaces),
            "dump ioam namespaces",
        )?;
        Ok(self.parse_all(p, |b| ioam6::NamespaceRepr::parse(b).map(Some)))
    }

    pub fn schemas(&self) -> Result<Vec<ioam6::SchemaRepr>, Error> {
        let id = self.ioam6_id()?;
        let p = Self::dump(
            &self.genl,
            id,
            id,
            ioam6::dump(ioam6::Cmd::DumpSchemas),
            "dump ioam schemas",
        )?;
        Ok(self.parse_all(p, |b| ioam6::SchemaRepr::parse(b).map(Some)))
    }

    pub fn add_namespace(&self, ns: &ioam6::NamespaceRepr) -> Result<(), Error> {
        let payload = ns.emit(ioam6::Cmd::AddNamespace);
        Self::request(
            &self.genl,
            self.ioam6_id()?,
            NlmF::empty(),
            payload,
            &format!("add ioam namespace {}", ns.id),
        )
    }

    pub fn del_namespace(&self, id: u16) -> Result<(), Error> {
        Self::request(
            &self.genl,
            self.ioam6_id()?,
            NlmF::empty(),
            ioam6::del_namespace(id),
            &format!("delete ioam namespace {id}"),
        )
    }

    pub fn add_schema(&self, sc: &ioam6::SchemaRepr) -> Result<(), Error> {
        Self::request(
            &self.genl,
            self.ioam6_id()?,
            NlmF::empty(),
            sc.emit(ioam6::Cmd::AddSchema),
            &format!("add ioam schema {}", sc.id),
        )
    }

    pub fn del_schema(&self, id: u32) -> Result<(), Error> {
        Self::request(
            &self.genl,
            self.ioam6_id()?,
            NlmF::empty(),
            ioam6::del_schema(id),
            &format!("delete ioam schema {id}"),
        )
    }

    pub fn set_schema(&self, ns: u16, schema: Option<u32>) -> Result<(), Error> {
        Self::request(
            &self.genl,
            self.ioam6_id()?,
            NlmF::empty(),
            ioam6::set_schema(ns, schema),
            &format!("bind ioam namespace {ns} to schema {schema:?}"),
        )
    }

    // ---- rtnetlink ----

    pub fn links(&self) -> Result<Vec<LinkRepr>, Error> {
        let p = Self::dump(
            &self.route,
            rtm::GETLINK,
            rtm::NEWLINK,
            route::dump_links(),
            "dump links",
        )?;
        Ok(self.parse_all(p, |b| LinkRepr::parse(b).map(Some)))
    }

    pub fn set_link(
        &self,
        index: u32,
        up: Option<bool>,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
        name: &str,
    ) -> Result<(), Error> {
        Self::request(
            &self.route,
            rtm::NEWLINK,
            NlmF::empty(),
            route::set_link(index, up, mtu, mac),
            &format!("set link {name}"),
        )
    }

    pub fn addresses(&self) -> Result<Vec<AddrRepr>, Error> {
        let p = Self::dump(
            &self.route,
            rtm::GETADDR,
            rtm::NEWADDR,
            route::dump_family(route::AF_INET6, 8),
            "dump addresses",
        )?;
        Ok(self.parse_all(p, AddrRepr::parse))
    }

    pub fn add_address(&self, a: &AddrRepr) -> Result<(), Error> {
        Self::request(
            &self.route,
            rtm::NEWADDR,
            NlmF::CREATE | NlmF::EXCL,
            a.emit(),
            &format!("add address {}", a.address),
        )
    }

    pub fn del_address(&self, a: &AddrRepr) -> Result<(), Error> {
        Self::request(
            &self.route,
            rtm::DELADDR,
            NlmF::empty(),
            a.emit(),
            &format!("delete address {}", a.address),
        )
    }

    pub fn neighbours(&self) -> Result<Vec<NeighRepr>, Error> {
        let p = Self::dump(
            &self.route,
            rtm::GETNEIGH,
            rtm::NEWNEIGH,
            route::dump_family(route::AF_INET6, 12),
            "dump neighbours",
        )?;
        Ok(self.parse_all(p, NeighRepr::parse))
    }

    pub fn replace_neighbour(&self, n: &NeighRepr) -> Result<(), Error> {
        Self::request(
            &self.route,
            rtm::NEWNEIGH,
            NlmF::CREATE | NlmF::REPLACE,
            n.emit(),
            &format!("set neighbour {}", n.dst),
        )
    }

    pub fn del_neighbour(&self, n: &NeighRepr) -> Result<(), Error> {
        Self::request(
            &self.route,
            rtm::DELNEIGH,
            NlmF::empty(),
            n.emit(),
            &format!("delete neighbour {}", n.dst),
        )
    }

    pub fn routes(&self) -> Result<Vec<RouteRepr>, Error> {
        let p = Self::dump(
            &self.route,
            rtm::GETROUTE,
            rtm::NEWROUTE,
            route::dump_family(route::AF_INET6, 12),
            "dump routes",
        )?;
        Ok(self.parse_all(p, RouteRepr::parse))
    }

    /// Adds a route, or replaces the route with the same destination.
    pub fn replace_route(&self, r: &RouteRepr) -> Result<(), Error> {
        Self::request(
            &self.route,
            rtm::NEWROUTE,
            NlmF::CREATE | NlmF::REPLACE,
            r.emit()?,
            &format!("add route {}", r.dst),
        )
    }

    pub fn del_route(&self, r: &RouteRepr) -> Result<(), Error> {
        Self::request(
            &self.route,
            rtm::DELROUTE,
            NlmF::empty(),
            r.emit()?,
            &format!("delete route {}", r.dst),
        )
    }

    /// The interface index of the route the kernel would use to reach `dst`
    /// (`ip -6 route get`).
    pub fn route_get(&self, dst: std::net::Ipv6Addr) -> Result<Option<u32>, Error> {
        let req = RouteRepr {
            dst: ipnet::Ipv6Net::new(dst, 128).map_err(|_| Error::Plan("prefix".into()))?,
            table: 0,
            protocol: 0,
            scope: 0,
            kind: 0,
            oif: None,
            gateway: None,
            priority: None,
            encap: None,
        };
        let payload = req.emit()?;
        let op = format!("route get {dst}");
        let handle = self
            .route
            .send::<u16, Buffer, u16, Buffer>(
                rtm::GETROUTE,
                NlmF::empty(),
                NlPayload::Payload(Buffer::from(payload)),
            )
            .map_err(|e| router_error(&op, e))?;
        for msg in handle {
            let msg = msg.map_err(|e| router_error(&op, e))?;
            if *msg.nl_type() == rtm::NEWROUTE {
                if let Some(p) = msg.get_payload() {
                    return Ok(RouteRepr::parse(p.as_ref())?.and_then(|r| r.oif));
                }
            }
        }
        Ok(None)
    }

    /// Whether the kernel has the ioam6 lightweight tunnel
    /// (`CONFIG_IPV6_IOAM6_LWTUNNEL`).
    ///
    /// Asks to add an ioam6 route through an interface index that does not
    /// exist: a kernel without the encapsulation rejects the encap type
    /// (`EOPNOTSUPP`) while parsing the request; one with it gets past that
    /// and fails on the device (`ENODEV`). Nothing is ever installed.
    pub fn probe_ioam6_lwtunnel(&self) -> Result<bool, Error> {
        let probe = RouteRepr {
            dst: "2001:db8:c17::/128"
                .parse()
                .map_err(|_| Error::Plan("probe prefix".into()))?,
            table: route::RT_TABLE_MAIN,
            protocol: route::RTPROT_CLT,
            scope: route::RT_SCOPE_UNIVERSE,
            kind: route::RTN_UNICAST,
            oif: Some(0x7fff_fff0),
            gateway: None,
            priority: None,
            encap: Some(route::Encap::Ioam6(route::Ioam6EncapRepr {
                mode: Some(1),
                tundst: None,
                tunsrc: None,
                trace: route::TraceHdr {
                    namespace: 1,
                    node_len: 1,
                    flags: 0,
                    rem_len: 1,
                    trace_type: clt_wire::TraceType::from_bits(0x800000),
                },
                freq_k: None,
                freq_n: None,
            })),
        };
        match Self::request(
            &self.route,
            rtm::NEWROUTE,
            NlmF::CREATE | NlmF::EXCL,
            probe.emit()?,
            "probe ioam6 encapsulation",
        ) {
            Err(Error::Kernel { error, .. }) if error.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                Ok(false)
            }
            Err(Error::Kernel { .. }) => Ok(true),
            Err(e) => Err(e),
            Ok(()) => {
                // Cannot happen (no such device); clean up regardless.
                let _ = self.del_route(&probe);
                Ok(true)
            }
        }
    }
}
