//! Diff, apply, roll back and tear down a [`LinuxPlan`].
//!
//! Invariants:
//! - [`diff`] only reads; [`apply`] makes exactly the changes [`diff`] lists,
//!   in order, and nothing else;
//! - a failed step leaves the kernel as it was before the apply (every change
//!   has an inverse, applied in reverse order), or the error lists what could
//!   not be undone;
//! - teardown removes only what the plan names.

use crate::nl::Netlink;
use crate::nl::ioam6::{NamespaceRepr, SchemaRepr};
use crate::nl::route::{
    self, AddrRepr, Encap, IFA_F_NODAD, IFA_F_PERMANENT, Ioam6EncapRepr, LinkRepr, NUD_PERMANENT,
    NeighRepr, RouteRepr, TraceHdr,
};
use crate::{Error, sysctl};
use cltc::artifact::linux::{Ioam6Mode, LinuxPlan, RouteConfig};
use ipnet::Ipv6Net;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// How the encapsulating node inserts IOAM (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Insertion {
    /// Kernel routes with ioam6 encapsulation.
    Route,
    /// Plain routes; applications insert with the CLT socket API.
    Socket,
    /// `Route` when the kernel supports it, else `Socket`.
    #[default]
    Auto,
}

impl std::str::FromStr for Insertion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Insertion, Error> {
        match s {
            "route" => Ok(Insertion::Route),
            "socket" => Ok(Insertion::Socket),
            "auto" => Ok(Insertion::Auto),
            other => Err(Error::Plan(format!(
                "unknown insertion mode {other:?} (route, socket or auto)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub insertion: Insertion,
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Result<[u8; 6], Error> {
    let parts: Vec<_> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(Error::Plan(format!("bad mac address {s:?}")));
    }
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| Error::Plan(format!("bad mac {s:?}")))?;
    }
    Ok(m)
}

fn parse_hex(s: &str) -> Result<Vec<u8>, Error> {
    let s = s.trim_start_matches("0x");
    if s.len() % 2 != 0 {
        return Err(Error::Plan(format!("odd-length hex {s:?}")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| Error::Plan(format!("bad hex {s:?}")))
        })
        .collect()
}

/// A route as the plan wants it, with its device by name (resolved when the
/// step runs, so a missing device fails that step, not the diff).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: Ipv6Net,
    pub dev: String,
    pub via: Option<std::net::Ipv6Addr>,
    pub encap: Option<Ioam6EncapRepr>,
    /// The metric of the route this one replaces, so the replace hits it.
    pub priority: Option<u32>,
}

impl RouteSpec {
    fn repr(&self, oif: u32) -> RouteRepr {
        RouteRepr {
            dst: self.dst,
            table: route::RT_TABLE_MAIN,
            protocol: route::RTPROT_CLT,
            scope: route::RT_SCOPE_UNIVERSE,
            kind: route::RTN_UNICAST,
            oif: Some(oif),
            gateway: self.via,
            priority: self.priority,
            encap: self.encap.clone().map(Encap::Ioam6),
        }
    }
}

/// One change to the kernel. Each has an [`inverse`](Change::inverse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Sysctl {
        key: String,
        from: Option<String>,
        to: String,
    },
    LinkUp {
        dev: String,
        up: bool,
    },
    LinkMtu {
        dev: String,
        from: Option<u32>,
        to: u32,
    },
    LinkMac {
        dev: String,
        from: Option<[u8; 6]>,
        to: [u8; 6],
    },
    AddAddress {
        dev: String,
        address: Ipv6Net,
    },
    DelAddress {
        dev: String,
        address: Ipv6Net,
    },
    SetNeighbour {
        dev: String,
        new: NeighRepr,
        old: Option<NeighRepr>,
    },
    DelNeighbour {
        dev: String,
        neigh: NeighRepr,
    },
    AddSchema(SchemaRepr),
    DelSchema(SchemaRepr),
    /// Adds the namespace and, if it names one, binds its schema.
    AddNamespace(NamespaceRepr),
    DelNamespace(NamespaceRepr),
    BindSchema {
        namespace: u16,
        schema: Option<u32>,
        old: Option<u32>,
    },
    SetRoute {
        new: RouteSpec,
        old: Option<RouteRepr>,
    },
    DelRoute {
        dev: String,
        route: RouteRepr,
    },
}

impl Change {
    /// The change that undoes this one (`None` if it cannot be undone, e.g.
    /// a sysctl whose old value could not be read).
    pub fn inverse(&self, names: &HashMap<u32, String>) -> Option<Change> {
        Some(match self.clone() {
            Change::Sysctl { key, from, to } => Change::Sysctl {
                key,
                to: from?,
                from: Some(to),
            },
            Change::LinkUp { dev, up } => Change::LinkUp { dev, up: !up },
            Change::LinkMtu { dev, from, to } => Change::LinkMtu {
                dev,
                to: from?,
                from: Some(to),
            },
            Change::LinkMac { dev, from, to } => Change::LinkMac {
                dev,
                to: from?,
                from: Some(to),
            },
            Change::AddAddress { dev, address } => Change::DelAddress { dev, address },
            Change::DelAddress { dev, address } => Change::AddAddress { dev, address },
            Change::SetNeighbour { dev, new, old } => match old {
                Some(old) => Change::SetNeighbour {
                    dev,
                    new: old,
                    old: Some(new),
                },
                None => Change::DelNeighbour { dev, neigh: new },
            },
            Change::DelNeighbour { dev, neigh } => Change::SetNeighbour {
                dev,
                new: neigh,
                old: None,
            },
            Change::AddSchema(s) => Change::DelSchema(s),
            Change::DelSchema(s) => Change::AddSchema(s),
            Change::AddNamespace(n) => Change::DelNamespace(n),
            Change::DelNamespace(n) => Change::AddNamespace(n),
            Change::BindSchema {
                namespace,
                schema,
                old,
            } => Change::BindSchema {
                namespace,
                schema: old,
                old: schema,
            },
            Change::SetRoute { new, old } => match old {
                Some(old) => {
                    let dev = old
                        .oif
                        .and_then(|i| names.get(&i).cloned())
                        .unwrap_or_else(|| new.dev.clone());
                    Change::SetRoute {
                        new: spec_of(&old, dev),
                        old: None,
                    }
                }
                None => Change::DelRoute {
                    dev: new.dev.clone(),
                    route: new.repr(0),
                },
            },
            Change::DelRoute { dev, route } => Change::SetRoute {
                new: spec_of(&route, dev),
                old: None,
            },
        })
    }

    fn run(&self, nl: &Netlink, links: &HashMap<String, LinkRepr>) -> Result<(), Error> {
        let index = |dev: &str| {
            links
                .get(dev)
                .map(|l| l.index)
                .ok_or_else(|| Error::NoSuchInterface(dev.to_string()))
        };
        match self {
            Change::Sysctl { key, to, .. } => sysctl::write(key, to),
            Change::LinkUp { dev, up } => nl.set_link(index(dev)?, Some(*up), None, None, dev),
            Change::LinkMtu { dev, to, .. } => nl.set_link(index(dev)?, None, Some(*to), None, dev),
            Change::LinkMac { dev, to, .. } => nl.set_link(index(dev)?, None, None, Some(*to), dev),
            Change::AddAddress { dev, address } => nl.add_address(&AddrRepr {
                index: index(dev)?,
                address: *address,
                flags: IFA_F_NODAD | IFA_F_PERMANENT,
            }),
            Change::DelAddress { dev, address } => nl.del_address(&AddrRepr {
                index: index(dev)?,
                address: *address,
                flags: 0,
            }),
            Change::SetNeighbour { dev, new, .. } => nl.replace_neighbour(&NeighRepr {
                index: index(dev)?,
                ..new.clone()
            }),
            Change::DelNeighbour { dev, neigh } => nl.del_neighbour(&NeighRepr {
                index: index(dev)?,
                ..neigh.clone()
            }),
            Change::AddSchema(s) => nl.add_schema(s),
            Change::DelSchema(s) => nl.del_schema(s.id),
            Change::AddNamespace(n) => {
                nl.add_namespace(n)?;
                match n.schema.map(|s| nl.set_schema(n.id, Some(s))) {
                    Some(Err(e)) => {
                        // The step failed as a whole: take back its first half.
                        let _ = nl.del_namespace(n.id);
                        Err(e)
                    }
                    _ => Ok(()),
                }
            }
            Change::DelNamespace(n) => nl.del_namespace(n.id),
            Change::BindSchema {
                namespace, schema, ..
            } => nl.set_schema(*namespace, *schema),
            Change::SetRoute { new, .. } => {
                let r = new.repr(index(&new.dev)?);
                match nl.replace_route(&r) {
                    Err(Error::Kernel { error, detail, .. })
                        if new.encap.is_some()
                            && error.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                    {
                        Err(Error::Unsupported(format!(
                            "this kernel has no ioam6 route encapsulation (it needs \
                             CONFIG_IPV6_IOAM6_LWTUNNEL): {error}{}; use --insertion \
                             socket to insert IOAM with the CLT socket API instead",
                            detail.map(|d| format!(" ({d})")).unwrap_or_default()
                        )))
                    }
                    other => other,
                }
            }
            Change::DelRoute { dev, route } => nl.del_route(&RouteRepr {
                oif: Some(index(dev)?),
                ..route.clone()
            }),
        }
    }
}

fn spec_of(r: &RouteRepr, dev: String) -> RouteSpec {
    RouteSpec {
        dst: r.dst,
        dev,
        via: r.gateway,
        encap: match &r.encap {
            Some(Encap::Ioam6(e)) => Some(e.clone()),
            _ => None,
        },
        priority: r.priority,
    }
}

fn fmt_encap(e: &Ioam6EncapRepr) -> String {
    let mode = match e.mode {
        Some(1) | None => "inline".to_string(),
        Some(2) => "encap".to_string(),
        Some(3) => "auto".to_string(),
        Some(m) => format!("mode{m}"),
    };
    format!(
        " encap ioam6 freq {}/{} mode {mode}{} trace prealloc type {:#08x} ns {} size {}",
        e.freq_k.unwrap_or(1),
        e.freq_n.unwrap_or(1),
        e.tundst.map(|d| format!(" tundst {d}")).unwrap_or_default(),
        e.trace.trace_type.bits(),
        e.trace.namespace,
        u32::from(e.trace.rem_len) * 4
    )
}

fn fmt_spec(r: &RouteSpec) -> String {
    format!(
        "{}{} dev {}{}",
        r.dst,
        r.via.map(|v| format!(" via {v}")).unwrap_or_default(),
        r.dev,
        r.encap.as_ref().map(fmt_encap).unwrap_or_default()
    )
}

fn fmt_ns(n: &NamespaceRepr) -> String {
    let mut s = format!("ioam namespace {}", n.id);
    if let Some(d) = n.data {
        s += &format!(" data {d:#x}");
    }
    if let Some(d) = n.data_wide {
        s += &format!(" wide {d:#x}");
    }
    if let Some(sc) = n.schema {
        s += &format!(" schema {sc}");
    }
    s
}

fn fmt_neigh(n: &NeighRepr, dev: &str) -> String {
    format!(
        "neighbour {} lladdr {} dev {dev} permanent",
        n.dst,
        n.mac.as_ref().map(fmt_mac).unwrap_or_else(|| "-".into())
    )
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Sysctl { key, from, to } => write!(
                f,
                "~ sysctl {key} = {to} (was {})",
                from.as_deref().unwrap_or("unreadable")
            ),
            Change::LinkUp { dev, up } => {
                write!(f, "~ link {dev} {}", if *up { "up" } else { "down" })
            }
            Change::LinkMtu { dev, from, to } => {
                write!(f, "~ link {dev} mtu {to} (was {from:?})")
            }
            Change::LinkMac { dev, from, to } => write!(
                f,
                "~ link {dev} address {} (was {})",
                fmt_mac(to),
                from.as_ref().map(fmt_mac).unwrap_or_else(|| "-".into())
            ),
            Change::AddAddress { dev, address } => write!(f, "+ address {address} dev {dev}"),
            Change::DelAddress { dev, address } => write!(f, "- address {address} dev {dev}"),
            Change::SetNeighbour { dev, new, old } => write!(
                f,
                "{} {}",
                if old.is_some() { "~" } else { "+" },
                fmt_neigh(new, dev)
            ),
            Change::DelNeighbour { dev, neigh } => write!(f, "- {}", fmt_neigh(neigh, dev)),
            Change::AddSchema(s) => write!(
                f,
                "+ ioam schema {} data {}",
                s.id,
                s.data
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
            Change::DelSchema(s) => write!(f, "- ioam schema {}", s.id),
            Change::AddNamespace(n) => write!(f, "+ {}", fmt_ns(n)),
            Change::DelNamespace(n) => write!(f, "- {}", fmt_ns(n)),
            Change::BindSchema {
                namespace, schema, ..
            } => match schema {
                Some(s) => write!(f, "~ ioam namespace {namespace} schema {s}"),
                None => write!(f, "~ ioam namespace {namespace} schema none"),
            },
            Change::SetRoute { new, old } => write!(
                f,
                "{} route {}",
                if old.is_some() { "~" } else { "+" },
                fmt_spec(new)
            ),
            Change::DelRoute { dev, route } => {
                write!(f, "- route {}", fmt_spec(&spec_of(route, dev.clone())))
            }
        }
    }
}

/// What the kernel has that a plan can touch.
#[derive(Debug, Clone)]
pub struct KernelState {
    pub links: HashMap<String, LinkRepr>,
    pub addresses: Vec<AddrRepr>,
    pub neighbours: Vec<NeighRepr>,
    pub routes: Vec<RouteRepr>,
    pub namespaces: Vec<NamespaceRepr>,
    pub schemas: Vec<SchemaRepr>,
}

impl KernelState {
    pub fn read(nl: &Netlink) -> Result<KernelState, Error> {
        Ok(KernelState {
            links: nl
                .links()?
                .into_iter()
                .map(|l| (l.name.clone(), l))
                .collect(),
            addresses: nl.addresses()?,
            neighbours: nl.neighbours()?,
            routes: nl.routes()?,
            namespaces: nl.namespaces()?,
            schemas: nl.schemas()?,
        })
    }

    fn names(&self) -> HashMap<u32, String> {
        self.links
            .values()
            .map(|l| (l.index, l.name.clone()))
            .collect()
    }

    fn index(&self, dev: &str) -> Option<u32> {
        self.links.get(dev).map(|l| l.index)
    }

    /// The main-table unicast route to `dst` a plan route would replace.
    fn route_to(&self, dst: &Ipv6Net) -> Option<&RouteRepr> {
        let mut candidates = self.routes.iter().filter(|r| {
            r.dst == *dst && r.table == route::RT_TABLE_MAIN && r.kind == route::RTN_UNICAST
        });
        let first = candidates.clone().next();
        candidates
            .find(|r| r.protocol == route::RTPROT_CLT)
            .or(first)
    }
}

/// The plan's routes as this insertion mode installs them: with the ioam6
/// encapsulation (`encap = true`) or without, deduplicated by destination.
pub fn desired_routes(plan: &LinuxPlan, encap: bool) -> Result<Vec<RouteSpec>, Error> {
    let mut out: Vec<RouteSpec> = Vec::new();
    for r in &plan.routes {
        let spec = route_spec(r, encap)?;
        match out.iter_mut().find(|o| o.dst == spec.dst) {
            None => out.push(spec),
            Some(o) if o.dev == spec.dev && o.via == spec.via => {
                if o.encap.is_none() {
                    o.encap = spec.encap;
                }
            }
            Some(o) => {
                return Err(Error::Plan(format!(
                    "two routes to {} leave by different next hops ({} and {})",
                    spec.dst,
                    fmt_spec(o),
                    fmt_spec(&spec)
                )));
            }
        }
    }
    Ok(out)
}

fn route_spec(r: &RouteConfig, encap: bool) -> Result<RouteSpec, Error> {
    let e = match (&r.encap, encap) {
        (Some(e), true) => {
            let node_len = e.trace_type.node_len();
            if e.size % 4 != 0 || e.size > 244 || e.size == 0 {
                return Err(Error::Plan(format!(
                    "route {}: pre-allocated size {} is not a multiple of 4 in 4..=244",
                    r.dst, e.size
                )));
            }
            Some(Ioam6EncapRepr {
                mode: Some(match e.mode {
                    Ioam6Mode::Inline => 1,
                    Ioam6Mode::Encap => 2,
                    Ioam6Mode::Auto => 3,
                }),
                tundst: e.tundst,
                tunsrc: None,
                trace: TraceHdr {
                    namespace: e.namespace,
                    node_len,
                    flags: 0,
                    rem_len: e.size / 4,
                    trace_type: e.trace_type,
                },
                freq_k: Some(e.freq_k),
                freq_n: Some(e.freq_n),
            })
        }
        _ => None,
    };
    Ok(RouteSpec {
        dst: r.dst,
        dev: r.dev.clone(),
        via: r.via,
        encap: e,
        priority: None,
    })
}

fn encap_matches(want: &Option<Ioam6EncapRepr>, have: &Option<Encap>) -> bool {
    match (want, have) {
        (None, None) => true,
        (Some(w), Some(Encap::Ioam6(h))) => {
            w.trace.namespace == h.trace.namespace
                && w.trace.trace_type == h.trace.trace_type
                && w.trace.rem_len == h.trace.rem_len
                && w.mode.unwrap_or(1) == h.mode.unwrap_or(1)
                && w.freq_k.unwrap_or(1) == h.freq_k.unwrap_or(1)
                && w.freq_n.unwrap_or(1) == h.freq_n.unwrap_or(1)
                && (w.mode == Some(1) || w.tundst == h.tundst)
        }
        _ => false,
    }
}

fn desired_namespaces(plan: &LinuxPlan) -> Vec<NamespaceRepr> {
    plan.namespaces
        .iter()
        .map(|n| NamespaceRepr {
            id: n.id,
            data: n.data,
            data_wide: n.data_wide,
            schema: n.schema,
        })
        .collect()
}

fn desired_schemas(plan: &LinuxPlan) -> Result<Vec<SchemaRepr>, Error> {
    plan.schemas
        .iter()
        .map(|s| {
            let mut data = parse_hex(&s.data)?;
            data.resize(data.len().div_ceil(4) * 4, 0);
            if data.len() > crate::nl::ioam6::MAX_SCHEMA_DATA_LEN {
                return Err(Error::Plan(format!("schema {} data too long", s.id)));
            }
            Ok(SchemaRepr {
                id: s.id,
                data,
                namespace: None,
            })
        })
        .collect()
}

/// The outcome of choosing an insertion mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// Whether routes carry the ioam6 encapsulation.
    pub encap_routes: bool,
}

/// Resolves `auto` by probing the kernel; `notices` gets a line when the
/// plan's encap routes fall back to the socket API.
pub fn resolve_insertion(
    nl: &Netlink,
    plan: &LinuxPlan,
    insertion: Insertion,
    notices: &mut Vec<String>,
) -> Result<Resolved, Error> {
    let wants_encap = plan.routes.iter().any(|r| r.encap.is_some());
    let encap_routes = match insertion {
        Insertion::Route => true,
        Insertion::Socket => false,
        Insertion::Auto if !wants_encap => false,
        Insertion::Auto => {
            let ok = nl.probe_ioam6_lwtunnel()?;
            if !ok {
                notices.push(
                    "notice: this kernel has no ioam6 route encapsulation \
                     (CONFIG_IPV6_IOAM6_LWTUNNEL); installing plain routes, IOAM is \
                     inserted by applications through the CLT socket API"
                        .to_string(),
                );
            }
            ok
        }
    };
    Ok(Resolved { encap_routes })
}

/// Lists the changes that make the kernel match the plan.
pub fn diff_against(
    plan: &LinuxPlan,
    state: &KernelState,
    resolved: Resolved,
) -> Result<Vec<Change>, Error> {
    let mut changes = Vec::new();

    for s in &plan.sysctls {
        let from = sysctl::read(&s.key).ok();
        if from.as_deref().is_none_or(|f| !sysctl::same(f, &s.value)) {
            changes.push(Change::Sysctl {
                key: s.key.clone(),
                from,
                to: s.value.clone(),
            });
        }
    }

    for i in &plan.interfaces {
        let link = state.links.get(&i.name);
        if let Some(mtu) = i.mtu {
            let from = link.and_then(|l| l.mtu);
            if from != Some(u32::from(mtu)) {
                changes.push(Change::LinkMtu {
                    dev: i.name.clone(),
                    from,
                    to: u32::from(mtu),
                });
            }
        }
        if let Some(mac) = &i.mac {
            let to = parse_mac(mac)?;
            let from = link.and_then(|l| l.mac);
            if from != Some(to) {
                changes.push(Change::LinkMac {
                    dev: i.name.clone(),
                    from,
                    to,
                });
            }
        }
        if !link.is_some_and(LinkRepr::is_up) {
            changes.push(Change::LinkUp {
                dev: i.name.clone(),
                up: true,
            });
        }
        if let Some(address) = i.address {
            let present = state.index(&i.name).is_some_and(|idx| {
                state
                    .addresses
                    .iter()
                    .any(|a| a.index == idx && a.address == address)
            });
            if !present {
                changes.push(Change::AddAddress {
                    dev: i.name.clone(),
                    address,
                });
            }
        }
    }

    for n in &plan.neighbors {
        let mac = parse_mac(&n.mac)?;
        let idx = state.index(&n.dev);
        let old = idx.and_then(|idx| {
            state
                .neighbours
                .iter()
                .find(|k| k.index == idx && k.dst == n.address)
        });
        let new = NeighRepr {
            index: idx.unwrap_or(0),
            dst: n.address,
            mac: Some(mac),
            state: NUD_PERMANENT,
        };
        if old.is_none_or(|o| o.mac != Some(mac) || o.state & NUD_PERMANENT == 0) {
            changes.push(Change::SetNeighbour {
                dev: n.dev.clone(),
                new,
                old: old.cloned(),
            });
        }
    }

    let mut replaced_schemas = Vec::new();
    for s in desired_schemas(plan)? {
        match state.schemas.iter().find(|k| k.id == s.id) {
            None => changes.push(Change::AddSchema(s)),
            Some(k) if k.data != s.data => {
                changes.push(Change::DelSchema(k.clone()));
                changes.push(Change::AddSchema(s.clone()));
                replaced_schemas.push(s.id);
            }
            Some(_) => {}
        }
    }

    for n in desired_namespaces(plan) {
        match state.namespaces.iter().find(|k| k.id == n.id) {
            None => changes.push(Change::AddNamespace(n)),
            Some(k) if k.data != n.data || k.data_wide != n.data_wide => {
                changes.push(Change::DelNamespace(k.clone()));
                changes.push(Change::AddNamespace(n));
            }
            Some(k) => {
                let stale = n.schema.is_some_and(|s| replaced_schemas.contains(&s));
                if k.schema != n.schema || stale {
                    changes.push(Change::BindSchema {
                        namespace: n.id,
                        schema: n.schema,
                        old: if stale { None } else { k.schema },
                    });
                }
            }
        }
    }

    for mut r in desired_routes(plan, resolved.encap_routes)? {
        let idx = state.index(&r.dev);
        let old = state.route_to(&r.dst);
        let same = old.is_some_and(|o| {
            idx.is_some() && o.oif == idx && o.gateway == r.via && encap_matches(&r.encap, &o.encap)
        });
        if !same {
            r.priority = old.and_then(|o| o.priority);
            changes.push(Change::SetRoute {
                new: r,
                old: old.cloned(),
            });
        }
    }
    Ok(changes)
}

/// Lists the changes that remove what the plan adds.
pub fn teardown_against(plan: &LinuxPlan, state: &KernelState) -> Result<Vec<Change>, Error> {
    let mut changes = Vec::new();
    let names = state.names();
    let mut seen = Vec::new();
    for r in &plan.routes {
        if seen.contains(&r.dst) {
            continue;
        }
        seen.push(r.dst);
        for k in state.routes.iter().filter(|k| {
            k.dst == r.dst && k.protocol == route::RTPROT_CLT && k.table == route::RT_TABLE_MAIN
        }) {
            let dev = k
                .oif
                .and_then(|i| names.get(&i).cloned())
                .unwrap_or_else(|| r.dev.clone());
            changes.push(Change::DelRoute {
                dev,
                route: k.clone(),
            });
        }
    }
    for n in &plan.neighbors {
        if let Some(idx) = state.index(&n.dev)
            && let Some(k) = state
                .neighbours
                .iter()
                .find(|k| k.index == idx && k.dst == n.address)
        {
            changes.push(Change::DelNeighbour {
                dev: n.dev.clone(),
                neigh: k.clone(),
            });
        }
    }
    for i in &plan.interfaces {
        if let (Some(address), Some(idx)) = (i.address, state.index(&i.name))
            && state
                .addresses
                .iter()
                .any(|a| a.index == idx && a.address == address)
        {
            changes.push(Change::DelAddress {
                dev: i.name.clone(),
                address,
            });
        }
    }
    for n in &plan.namespaces {
        if let Some(k) = state.namespaces.iter().find(|k| k.id == n.id) {
            changes.push(Change::DelNamespace(k.clone()));
        }
    }
    for s in &plan.schemas {
        if let Some(k) = state.schemas.iter().find(|k| k.id == s.id) {
            // Deleting the namespace above unbinds it; the inverse re-adds
            // the schema before the namespace (reverse order), so keep the
            // schema without its binding.
            changes.push(Change::DelSchema(SchemaRepr {
                namespace: None,
                ..k.clone()
            }));
        }
    }
    for s in &plan.sysctls {
        let Some(default) = sysctl::default_of(&s.key).ok().flatten() else {
            continue;
        };
        if let Ok(cur) = sysctl::read(&s.key)
            && !sysctl::same(&cur, &default)
        {
            changes.push(Change::Sysctl {
                key: s.key.clone(),
                from: Some(cur),
                to: default,
            });
        }
    }
    Ok(changes)
}

/// What an apply, diff or teardown did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The changes made (or, for a dry run or diff, that would be made).
    pub changes: Vec<Change>,
    /// Whether the changes were made.
    pub applied: bool,
    /// One-line notices (e.g. the insertion mode fallback).
    pub notices: Vec<String>,
    /// Sysctls teardown could not restore (no known default).
    pub left_alone: Vec<String>,
    /// Whether this is a teardown (for the wording).
    pub teardown: bool,
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.notices {
            writeln!(f, "{n}")?;
        }
        if self.changes.is_empty() {
            if self.teardown {
                writeln!(f, "no changes: nothing of the plan is left to remove")?;
            } else {
                writeln!(f, "no changes: the kernel already matches the plan")?;
            }
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for k in &self.left_alone {
            writeln!(f, "note: sysctl {k} left as is (no known default)")?;
        }
        if !self.changes.is_empty() {
            writeln!(
                f,
                "{} change(s) {}",
                self.changes.len(),
                if self.applied {
                    "applied"
                } else {
                    "not applied (dry run)"
                }
            )?;
        }
        Ok(())
    }
}

/// Runs `changes` in order; on failure undoes the ones made, in reverse.
pub fn execute(nl: &Netlink, changes: &[Change]) -> Result<(), Error> {
    let state_links = |nl: &Netlink| -> Result<HashMap<String, LinkRepr>, Error> {
        Ok(nl
            .links()?
            .into_iter()
            .map(|l| (l.name.clone(), l))
            .collect())
    };
    let links = state_links(nl)?;
    let names: HashMap<u32, String> = links.values().map(|l| (l.index, l.name.clone())).collect();
    for (i, c) in changes.iter().enumerate() {
        if let Err(e) = c.run(nl, &links) {
            let mut rollback_errors = Vec::new();
            let mut rolled_back = 0;
            for done in changes[..i].iter().rev() {
                match done.inverse(&names) {
                    Some(undo) => match undo.run(nl, &links) {
                        Ok(()) => rolled_back += 1,
                        Err(e) => rollback_errors.push(format!("{undo}: {e}")),
                    },
                    None => rollback_errors.push(format!("cannot undo {done}")),
                }
            }
            return Err(Error::StepFailed {
                index: i + 1,
                total: changes.len(),
                step: c.to_string(),
                cause: Box::new(e),
                rolled_back,
                rollback_errors,
            });
        }
    }
    Ok(())
}

/// The changes [`apply`] would make, with any notices.
pub fn diff(nl: &Netlink, plan: &LinuxPlan, opts: &Options) -> Result<Report, Error> {
    let start = Instant::now();
    let mut notices = Vec::new();
    let resolved = resolve_insertion(nl, plan, opts.insertion, &mut notices)?;
    let state = KernelState::read(nl)?;
    let changes = diff_against(plan, &state, resolved)?;
    Ok(Report {
        changes,
        applied: false,
        notices,
        left_alone: Vec::new(),
        teardown: false,
        elapsed: start.elapsed(),
    })
}

/// Makes the kernel match the plan (see the module docs).
pub fn apply(nl: &Netlink, plan: &LinuxPlan, opts: &Options) -> Result<Report, Error> {
    let start = Instant::now();
    let mut report = diff(nl, plan, opts)?;
    execute(nl, &report.changes)?;
    report.applied = true;
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Removes what the plan adds; `dry_run` only lists it.
pub fn teardown(nl: &Netlink, plan: &LinuxPlan, dry_run: bool) -> Result<Report, Error> {
    let start = Instant::now();
    let state = KernelState::read(nl)?;
    let changes = teardown_against(plan, &state)?;
    let left_alone = plan
        .sysctls
        .iter()
        .filter(|s| !matches!(sysctl::default_of(&s.key), Ok(Some(_))))
        .map(|s| s.key.clone())
        .collect();
    if !dry_run {
        execute(nl, &changes)?;
    }
    Ok(Report {
        changes,
        applied: !dry_run,
        notices: Vec::new(),
        left_alone,
        teardown: true,
        elapsed: start.elapsed(),
    })
}

/// A human-readable view of the kernel state the plan touches.
pub fn show(nl: &Netlink, plan: &LinuxPlan) -> Result<String, Error> {
    let state = KernelState::read(nl)?;
    let names = state.names();
    let mut out = String::new();
    let mark = |ok: bool| if ok { "  ok " } else { "  -- " };
    out += &format!("node {}\n", plan.node);
    for s in &plan.sysctls {
        let cur = sysctl::read(&s.key).unwrap_or_else(|e| format!("<{e}>"));
        out += &format!(
            "{}sysctl {} = {cur} (plan {})\n",
            mark(sysctl::same(&cur, &s.value)),
            s.key,
            s.value
        );
    }
    for i in &plan.interfaces {
        let l = state.links.get(&i.name);
        out += &format!(
            "{}link {} {}\n",
            mark(l.is_some_and(LinkRepr::is_up)),
            i.name,
            match l {
                None => "missing".to_string(),
                Some(l) => format!(
                    "index {} {} mtu {}",
                    l.index,
                    if l.is_up() { "up" } else { "down" },
                    l.mtu.unwrap_or(0)
                ),
            }
        );
        if let Some(a) = i.address {
            let ok = state.index(&i.name).is_some_and(|idx| {
                state
                    .addresses
                    .iter()
                    .any(|k| k.index == idx && k.address == a)
            });
            out += &format!("{}address {a} dev {}\n", mark(ok), i.name);
        }
    }
    for s in &state.schemas {
        out += &format!(
            "{}ioam schema {} data {} namespace {:?}\n",
            mark(plan.schemas.iter().any(|p| p.id == s.id)),
            s.id,
            s.data
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            s.namespace
        );
    }
    for n in &state.namespaces {
        out += &format!(
            "{}{}\n",
            mark(plan.namespaces.iter().any(|p| p.id == n.id)),
            fmt_ns(n)
        );
    }
    for r in state
        .routes
        .iter()
        .filter(|r| r.protocol == route::RTPROT_CLT || plan.routes.iter().any(|p| p.dst == r.dst))
    {
        let dev = r
            .oif
            .and_then(|i| names.get(&i).cloned())
            .unwrap_or_else(|| "?".into());
        out += &format!(
            "{}route {} (proto {})\n",
            mark(r.protocol == route::RTPROT_CLT),
            fmt_spec(&spec_of(r, dev)),
            r.protocol
        );
    }
    if nl.malformed.get() > 0 {
        out += &format!(
            "{} malformed kernel message(s) skipped\n",
            nl.malformed.get()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clt_wire::TraceType;
    use cltc::artifact::linux::Ioam6Encap;

    fn plan_with(routes: Vec<RouteConfig>) -> LinuxPlan {
        LinuxPlan {
            node: "a".into(),
            sysctls: vec![],
            interfaces: vec![],
            neighbors: vec![],
            schemas: vec![],
            namespaces: vec![],
            routes,
            encap: vec![],
        }
    }

    fn route(dst: &str, dev: &str, via: Option<&str>, size: Option<u8>) -> RouteConfig {
        RouteConfig {
            dst: dst.parse().unwrap(),
            dev: dev.into(),
            via: via.map(|v| v.parse().unwrap()),
            encap: size.map(|size| Ioam6Encap {
                mode: Ioam6Mode::Inline,
                tundst: None,
                trace_type: TraceType::from_bits(0xc20000),
                namespace: 123,
                size,
                freq_k: 1,
                freq_n: 1,
            }),
        }
    }

    #[test]
    fn socket_insertion_strips_the_encapsulation_and_dedups() {
        let p = plan_with(vec![
            route("db02::/64", "eth0", Some("db01::2"), None),
            route("db02::/64", "eth0", Some("db01::2"), Some(36)),
        ]);
        let plain = desired_routes(&p, false).unwrap();
        assert_eq!(plain.len(), 1);
        assert!(plain[0].encap.is_none());
        let encap = desired_routes(&p, true).unwrap();
        assert_eq!(encap.len(), 1);
        let e = encap[0].encap.as_ref().unwrap();
        assert_eq!((e.trace.rem_len, e.trace.node_len, e.mode), (9, 3, Some(1)));
        assert!(fmt_spec(&encap[0]).contains("encap ioam6 freq 1/1 mode inline"));
    }

    #[test]
    fn conflicting_routes_and_bad_sizes_are_plan_errors() {
        let p = plan_with(vec![
            route("db02::/64", "eth0", None, None),
            route("db02::/64", "eth1", None, None),
        ]);
        let e = desired_routes(&p, false).unwrap_err().to_string();
        assert!(e.contains("different next hops"), "{e}");
        let p = plan_with(vec![route("db02::/64", "eth0", None, Some(6))]);
        assert!(desired_routes(&p, true).is_err());
        assert!(desired_routes(&p, false).is_ok());
    }

    #[test]
    fn every_change_has_an_inverse_that_undoes_it() {
        let names = HashMap::from([(3, "eth0".to_string())]);
        let ns = NamespaceRepr {
            id: 1,
            data: Some(2),
            data_wide: None,
            schema: Some(7),
        };
        let spec = RouteSpec {
            dst: "db02::/64".parse().unwrap(),
            dev: "eth0".into(),
            via: None,
            encap: None,
            priority: None,
        };
        let changes = vec![
            Change::Sysctl {
                key: "net.ipv6.ioam6_id".into(),
                from: Some("16777215".into()),
                to: "1".into(),
            },
            Change::LinkUp {
                dev: "eth0".into(),
                up: true,
            },
            Change::AddAddress {
                dev: "eth0".into(),
                address: "db01::1/64".parse().unwrap(),
            },
            Change::AddNamespace(ns.clone()),
            Change::BindSchema {
                namespace: 1,
                schema: Some(7),
                old: None,
            },
            Change::SetRoute {
                new: spec.clone(),
                old: None,
            },
        ];
        for c in &changes {
            let undo = c.inverse(&names).unwrap();
            assert_ne!(&undo, c);
            // (An added route is undone by deleting its netlink form, and
            // that by adding the same spec back.)
            assert_eq!(undo.inverse(&names).as_ref(), Some(c), "{c}");
        }
        // A sysctl whose old value could not be read cannot be undone.
        let blind = Change::Sysctl {
            key: "k".into(),
            from: None,
            to: "1".into(),
        };
        assert!(blind.inverse(&names).is_none());
        assert_eq!(
            Change::AddNamespace(ns).to_string(),
            "+ ioam namespace 1 data 0x2 schema 7"
        );
    }
}
