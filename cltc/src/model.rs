//! The checker: [`ast::File`] to a checked [`Model`], or diagnostics.
//!
//! It resolves names, builds the topology (a petgraph graph of nodes and
//! links), computes every policy's path (shortest, ties broken towards the
//! neighbour declared first), each node's role per policy, the domains' trace
//! sizes and the IPv6 routes. Every check of the language is here; lowering to
//! the IR cannot fail.
//!
//! Checks never stop at the first error: a broken item is reported and left
//! out (or given a placeholder), and checks that depend on it are skipped.

use crate::ast::{self, DomainStmt, IfaceStmt, Item, MatchClause, NodeStmt, PolicyStmt};
use crate::diag::{Code, Diagnostic, Diagnostics, Span};
use crate::ir::{
    DomainIdx, Endpoint, FlowMatch, Hop, Mac, NextHop, NodeIdx, NodeKind, P4Runtime, PolicyIdx,
    Role, RoleAssignment, Route, Sample, Schema,
};
use clt_wire::{TraceField, TraceType};
use ipnet::Ipv6Net;
use petgraph::graph::{NodeIndex, UnGraph};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

/// RFC 9486: the pre-allocated node data fits the option's 8-bit length.
pub const MAX_PREALLOC: u32 = 244;
/// Bytes of the Hop-by-Hop header before the node data: next header and
/// length (2), PadN (2), IOAM option type/length/reserved/type (4), trace
/// header (8).
pub const HBH_FIXED: u32 = 16;
/// The CLT trace-context option: type and length (2) and the ids (24).
pub const CLT_OPTION: u32 = 26;
/// What the CLT option adds to the header: it replaces the leading PadN(2),
/// so 24 bytes (the IOAM option stays 4n-aligned).
pub const CLT_OPTION_ALIGNED: u32 = CLT_OPTION - 2;
/// IPv6 header and a minimal TCP segment (a 20-byte header).
pub const IPV6_TCP: u32 = 40 + 20;
/// The MTU an interface has unless it declares `mtu N`.
pub const DEFAULT_MTU: u16 = 1500;
/// The largest data-plane port number (9 bits in v1model and TNA).
pub const MAX_PORT: u64 = 511;

/// The checked fabric: resolved, with paths, roles and routes.
#[derive(Debug, Clone)]
pub struct Model {
    pub domains: Vec<MDomain>,
    pub nodes: Vec<MNode>,
    pub links: Vec<MLink>,
    pub policies: Vec<MPolicy>,
    /// Nodes and links; node weights are `NodeIdx`, edge weights link indices.
    pub graph: UnGraph<NodeIdx, u32>,
}

#[derive(Debug, Clone)]
pub struct MDomain {
    pub name: String,
    pub span: Span,
    pub namespace: u16,
    pub namespace_data: Option<u32>,
    pub namespace_data_wide: Option<u64>,
    pub trace_type: TraceType,
    pub context_w3c: bool,
    pub max_hops: u8,
    pub schema: Option<Schema>,
    pub per_hop_len: u8,
    pub prealloc_len: u8,
    pub collector: String,
}

#[derive(Debug, Clone)]
pub struct MNode {
    pub name: String,
    pub span: Span,
    pub kind: NodeKind,
    pub id: u32,
    pub id_wide: u64,
    pub interfaces: Vec<MIface>,
    pub p4runtime: Option<P4Runtime>,
    /// The domains the node may take part in (`None`: all).
    pub allowed: Option<Vec<DomainIdx>>,
    /// The domains it takes part in (it is on one of their policy paths).
    pub domains: Vec<DomainIdx>,
    pub routes: Vec<Route>,
    pub roles: Vec<RoleAssignment>,
    /// Whether other nodes' routes go through it (Linux: enable forwarding).
    pub forwards: bool,
}

#[derive(Debug, Clone)]
pub struct MIface {
    pub name: String,
    pub span: Span,
    pub port: Option<u32>,
    pub if_id: u16,
    pub address: Option<Ipv6Net>,
    pub mac: Option<Mac>,
    pub mtu: u16,
    pub peer: Option<Endpoint>,
    /// A statement of it was invalid: checks that need it stay quiet.
    pub broken: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct MLink {
    pub a: Endpoint,
    pub b: Endpoint,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct MPolicy {
    pub name: String,
    pub span: Span,
    pub domain: DomainIdx,
    pub from: NodeIdx,
    pub to: NodeIdx,
    pub flow: FlowMatch,
    pub sample: Sample,
    pub path: Vec<Hop>,
}

/// Checks a parsed file. Returns the model when there is no error.
pub fn check(file: &ast::File, diags: &mut Diagnostics) -> Option<Model> {
    let before = diags.errors().count();
    let mut cx = Cx {
        diags,
        lost: file.lost.clone(),
        links_broken: false,
        domain_names: HashMap::new(),
        node_names: HashMap::new(),
    };
    let domains = cx.domains(file);
    let mut nodes = cx.nodes(file);
    let links = cx.links(file, &mut nodes);
    let graph = build_graph(&nodes, &links);
    let policies = cx.policies(file, &nodes, &graph);
    let mut model = Model {
        domains,
        nodes,
        links,
        policies,
        graph,
    };
    cx.roles_and_sizes(file, &mut model);
    cx.tofino_digests(file, &model);
    cx.tofino_egress_reach(file, &model);
    cx.routes(&mut model);
    cx.mtu_checks(file, &model);
    if cx.diags.errors().count() > before {
        None
    } else {
        Some(model)
    }
}

struct Cx<'d> {
    diags: &'d mut Diagnostics,
    /// Names lost to syntax errors: never reported as unknown.
    lost: Vec<(String, String)>,
    /// A link was dropped by an error: "no path" would only repeat it.
    links_broken: bool,
    domain_names: HashMap<String, (DomainIdx, Span)>,
    node_names: HashMap<String, (NodeIdx, Span)>,
}

/// Per-domain facts gathered while checking, used for later checks.
struct DomainSrc {
    trace_span: Span,
    field_spans: Vec<(TraceField, Span)>,
    max_hops: Option<(u64, Span)>,
    valid_trace: bool,
}

fn err(code: Code, span: Span, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(code, span, msg)
}

impl Cx<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// A number in `lo..=hi`, or an error naming `what`.
    fn range(&mut self, n: ast::Num, lo: u64, hi: u64, what: &str, hint: &str) -> Option<u64> {
        match n.value {
            Some(v) if (lo..=hi).contains(&v) => Some(v),
            _ => {
                let d = err(
                    Code::E0008Range,
                    n.span,
                    format!("{what} out of range ({lo}..={hi})"),
                );
                self.push(if hint.is_empty() { d } else { d.hint(hint) });
                None
            }
        }
    }

    fn once<T>(&mut self, slot: &mut Option<(T, Span)>, value: T, span: Span, what: &str) {
        if let Some((_, first)) = slot {
            let first = *first;
            self.push(
                err(
                    Code::E0020DuplicateStmt,
                    span,
                    format!("`{what}` given twice"),
                )
                .related(first, "first given here")
                .hint("keep one"),
            );
        } else {
            *slot = Some((value, span));
        }
    }

    fn domains(&mut self, file: &ast::File) -> Vec<MDomain> {
        let mut out = Vec::new();
        for item in &file.items {
            let Item::Domain(d) = item else { continue };
            if let Some((_, first)) = self.domain_names.get(&d.name.text) {
                let first = *first;
                self.push(
                    err(
                        Code::E0004Duplicate,
                        d.name.span,
                        format!("duplicate domain `{}`", d.name.text),
                    )
                    .related(first, "first declared here")
                    .hint("rename one of the domains"),
                );
                continue;
            }
            let idx = DomainIdx(out.len() as u32);
            self.domain_names
                .insert(d.name.text.clone(), (idx, d.name.span));
            let md = self.domain(d);
            let ns_span = d.stmts.iter().find_map(|s| match s {
                DomainStmt::Namespace { id, .. } => Some(id.span),
                _ => None,
            });
            if let (Some(span), Some(first)) = (
                ns_span,
                out.iter().find(|o: &&MDomain| o.namespace == md.namespace),
            ) {
                self.push(
                    err(
                        Code::E0031DuplicateNamespace,
                        span,
                        format!(
                            "domains `{}` and `{}` both use namespace {}",
                            first.name, md.name, md.namespace
                        ),
                    )
                    .related(first.span, "first domain")
                    .hint("an IOAM namespace identifies one domain: give each domain its own"),
                );
            }
            out.push(md);
        }
        out
    }

    fn domain(&mut self, d: &ast::Domain) -> MDomain {
        let mut namespace = None;
        let mut trace: Option<(TraceType, Span)> = None;
        let mut context = None;
        let mut max_hops = None;
        let mut collector = None;
        let mut schema = None;
        let mut ns_data = None;
        let mut ns_wide = None;
        for s in &d.stmts {
            match s {
                DomainStmt::Namespace {
                    id,
                    data,
                    wide,
                    span,
                } => {
                    let v = self.range(
                        *id,
                        0,
                        65535,
                        "namespace",
                        "IOAM-Namespace-IDs are 16-bit; 65535 is the default namespace",
                    );
                    self.once(&mut namespace, v.unwrap_or(0) as u16, *span, "namespace");
                    if let Some(n) = data {
                        ns_data = self
                            .range(*n, 0, u32::MAX as u64, "namespace data", "it is 32-bit")
                            .map(|v| v as u32);
                    }
                    if let Some(n) = wide {
                        ns_wide = n.value;
                        if n.value.is_none() {
                            self.range(*n, 0, u64::MAX, "wide namespace data", "it is 64-bit");
                        }
                    }
                }
                DomainStmt::Trace { fields, span } => {
                    let mut tt = TraceType::default();
                    for f in fields {
                        match TraceField::from_name(&f.text) {
                            Some(field) => tt = TraceType::from_bits(tt.bits() | field.mask()),
                            None => {
                                let names: Vec<&str> =
                                    TraceField::ALL.iter().map(|f| f.name()).collect();
                                self.push(
                                    err(
                                        Code::E0010TraceField,
                                        f.span,
                                        format!("unknown trace field `{}`", f.text),
                                    )
                                    .hint(format!("trace fields are {}", names.join(", "))),
                                );
                            }
                        }
                    }
                    if fields.is_empty() {
                        self.push(
                            err(Code::E0011EmptyTrace, *span, "empty trace")
                                .hint("name at least one field, e.g. `trace hop_limit_node_id`"),
                        );
                    }
                    self.once(&mut trace, tt, *span, "trace");
                }
                DomainStmt::Context { kind, span } => {
                    if kind.text != "w3c" {
                        self.push(
                            err(
                                Code::E0025Context,
                                kind.span,
                                format!("unknown context `{}`", kind.text),
                            )
                            .hint("the only context is `w3c` (OpenTelemetry trace and span ids)"),
                        );
                    }
                    self.once(&mut context, (), *span, "context");
                }
                DomainStmt::MaxHops { value, span } => {
                    let v = self.range(*value, 1, 255, "max_hops", "").unwrap_or(1);
                    self.once(&mut max_hops, (v, value.span), *span, "max_hops");
                }
                DomainStmt::Collector { address, span } => {
                    self.host_port(address);
                    self.once(&mut collector, address.text.clone(), *span, "collector");
                }
                DomainStmt::Schema { id, data, span } => {
                    let id = self
                        .range(*id, 0, 0xff_ffff, "schema id", "schema ids are 24-bit")
                        .unwrap_or(0) as u32;
                    let bytes = data.text.as_bytes().to_vec();
                    if bytes
                        .iter()
                        .any(|b| !(0x20..0x7f).contains(b) || *b == b'\\')
                    {
                        self.push(
                            err(Code::E0002BadLiteral, data.span, "schema data is not printable ascii")
                                .hint("write the snapshot as printable ascii text (it goes to `ip ioam schema add` as is)"),
                        );
                    }
                    if bytes.is_empty() || bytes.len() > 1020 {
                        self.push(err(
                            Code::E0008Range,
                            data.span,
                            "schema data length out of range (1..=1020 bytes)",
                        ));
                    }
                    let mut padded = bytes;
                    padded.resize(padded.len().div_ceil(4) * 4, 0);
                    self.once(&mut schema, Schema { id, data: padded }, *span, "schema");
                }
            }
        }
        let name_span = d.name.span;
        let missing = |what: &str, hint: &str| {
            err(
                Code::E0019Missing,
                name_span,
                format!("domain `{}` has no `{what}`", d.name.text),
            )
            .hint(hint.to_string())
        };
        if namespace.is_none() {
            self.push(missing(
                "namespace",
                "add `namespace N` (0..=65535; 65535 is the default namespace)",
            ));
        }
        if trace.is_none() {
            self.push(missing(
                "trace",
                "add `trace F, F, ...`, e.g. `trace hop_limit_node_id, interface_ids`",
            ));
        }
        if collector.is_none() {
            self.push(missing("collector", "add `collector HOST:PORT`"));
        }
        let trace_type = trace.map(|t| t.0).unwrap_or_default();
        let has_opaque = trace_type.contains(TraceField::OpaqueState);
        match (&schema, has_opaque) {
            (Some((_, span)), false) => {
                let span = *span;
                self.push(
                    err(
                        Code::W0002Schema,
                        span,
                        "schema without `opaque_state` in the trace",
                    )
                    .hint("nodes only write the snapshot when the trace has `opaque_state`"),
                );
            }
            (None, true) => {
                let span = trace.map(|t| t.1).unwrap_or(name_span);
                self.push(
                    err(
                        Code::W0002Schema,
                        span,
                        "`opaque_state` without a schema: nodes write an empty snapshot",
                    )
                    .hint("add `schema ID \"DATA\"` to the domain"),
                );
            }
            _ => {}
        }
        MDomain {
            name: d.name.text.clone(),
            span: name_span,
            namespace: namespace.map(|n| n.0).unwrap_or(0xffff),
            namespace_data: ns_data,
            namespace_data_wide: ns_wide,
            trace_type,
            context_w3c: context.is_some(),
            max_hops: max_hops.map(|m| m.0.0 as u8).unwrap_or(0),
            schema: schema.map(|s| s.0),
            per_hop_len: 0,
            prealloc_len: 0,
            collector: collector.map(|c| c.0).unwrap_or_default(),
        }
    }

    fn domain_src(&self, file: &ast::File, idx: DomainIdx) -> Option<DomainSrc> {
        let name = self
            .domain_names
            .iter()
            .find(|(_, v)| v.0 == idx)
            .map(|(_, v)| v.1)?;
        file.items.iter().find_map(|item| match item {
            Item::Domain(d) if d.name.span == name => {
                let mut src = DomainSrc {
                    trace_span: d.name.span,
                    field_spans: Vec::new(),
                    max_hops: None,
                    valid_trace: false,
                };
                for s in &d.stmts {
                    match s {
                        DomainStmt::Trace { fields, span } => {
                            src.trace_span = *span;
                            src.valid_trace = !fields.is_empty()
                                && fields
                                    .iter()
                                    .all(|f| TraceField::from_name(&f.text).is_some());
                            src.field_spans = fields
                                .iter()
                                .filter_map(|f| TraceField::from_name(&f.text).map(|t| (t, f.span)))
                                .collect();
                        }
                        DomainStmt::MaxHops { value, span } => {
                            src.max_hops = value.value.map(|v| (v, *span));
                        }
                        _ => {}
                    }
                }
                Some(src)
            }
            _ => None,
        })
    }

    fn host_port(&mut self, t: &ast::Text) -> bool {
        let ok = t.text.rsplit_once(':').is_some_and(|(host, port)| {
            let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
                None => !host.is_empty() && !host.contains(['[', ']']),
            };
            host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            self.push(
                err(
                    Code::E0002BadLiteral,
                    t.span,
                    format!("`{}` is not a valid host:port", t.text),
                )
                .hint("write HOST:PORT with a port in 1..=65535, e.g. `127.0.0.1:7123` or `[::1]:7123`"),
            );
        }
        ok
    }

    fn mac(&mut self, t: &ast::Text) -> Option<Mac> {
        let parts: Vec<&str> = t.text.split([':', '-']).collect();
        let mut mac = [0u8; 6];
        let ok = parts.len() == 6
            && parts
                .iter()
                .zip(mac.iter_mut())
                .all(|(p, b)| p.len() == 2 && u8::from_str_radix(p, 16).map(|v| *b = v).is_ok());
        if !ok {
            self.push(
                err(
                    Code::E0002BadLiteral,
                    t.span,
                    format!("`{}` is not a MAC address", t.text),
                )
                .hint("write six hex bytes, e.g. `02:00:00:00:01:01`"),
            );
            return None;
        }
        if mac[0] & 1 == 1 {
            self.push(
                err(
                    Code::E0002BadLiteral,
                    t.span,
                    format!("`{}` is a multicast MAC address", t.text),
                )
                .hint("an interface MAC has the low bit of its first byte clear, e.g. `02:...`"),
            );
            return None;
        }
        Some(mac)
    }

    /// An IPv6 prefix; `host` allows a bare address (a /128).
    fn prefix(&mut self, t: &ast::Text, host: bool) -> Option<Ipv6Net> {
        if let Ok(net) = t.text.parse::<Ipv6Net>() {
            return Some(net);
        }
        if let Ok(addr) = t.text.parse::<Ipv6Addr>() {
            if host {
                return Ipv6Net::new(addr, 128).ok();
            }
            self.push(
                err(
                    Code::E0002BadLiteral,
                    t.span,
                    format!("`{}` has no prefix length", t.text),
                )
                .hint(format!("write ADDRESS/LEN, e.g. `{}/64`", t.text)),
            );
            return None;
        }
        self.push(
            err(
                Code::E0002BadLiteral,
                t.span,
                format!("`{}` is not an IPv6 prefix", t.text),
            )
            .hint("write an IPv6 address and length, e.g. `db01::1/64`"),
        );
        None
    }

    fn nodes(&mut self, file: &ast::File) -> Vec<MNode> {
        let mut out = Vec::new();
        for item in &file.items {
            let Item::Node(n) = item else { continue };
            if let Some((_, first)) = self.node_names.get(&n.name.text) {
                let first = *first;
                self.push(
                    err(
                        Code::E0004Duplicate,
                        n.name.span,
                        format!("duplicate node `{}`", n.name.text),
                    )
                    .related(first, "first declared here")
                    .hint("rename one of the nodes"),
                );
                continue;
            }
            let idx = NodeIdx(out.len() as u32);
            self.node_names
                .insert(n.name.text.clone(), (idx, n.name.span));
            out.push(self.node(n));
        }
        out
    }

    fn node(&mut self, n: &ast::Node) -> MNode {
        let kind = match n.kind.text.as_str() {
            "linux" => NodeKind::Linux,
            "bmv2" => NodeKind::Bmv2,
            "tofino" => NodeKind::Tofino,
            other => {
                self.push(
                    err(
                        Code::E0021UnknownKind,
                        n.kind.span,
                        format!("unknown node kind `{other}`"),
                    )
                    .hint("a node is `linux`, `bmv2` or `tofino`"),
                );
                NodeKind::Linux
            }
        };
        let is_linux = kind == NodeKind::Linux;
        let mut id = None;
        let mut id_wide = None;
        let mut p4rt: Option<(P4Runtime, Span)> = None;
        let mut allowed: Option<(Vec<DomainIdx>, Span)> = None;
        let mut ifaces: Vec<MIface> = Vec::new();
        let mut names: HashMap<String, Span> = HashMap::new();
        let mut ids: HashMap<u16, Span> = HashMap::new();
        for s in &n.stmts {
            match s {
                NodeStmt::Id { wide, value, span } => {
                    if *wide {
                        let v = self
                            .range(
                                *value,
                                0,
                                (1 << 56) - 1,
                                "wide node id",
                                "wide node ids are 56-bit",
                            )
                            .unwrap_or(0);
                        self.once(&mut id_wide, v, *span, "id wide");
                    } else {
                        let v = self
                            .range(
                                *value,
                                0,
                                0xff_ffff,
                                "node id",
                                "node ids are 24-bit; use `id wide N` for a 56-bit id",
                            )
                            .unwrap_or(0);
                        self.once(&mut id, v as u32, *span, "id");
                    }
                }
                NodeStmt::Interface(i) | NodeStmt::Port(i) => {
                    let is_port = matches!(s, NodeStmt::Port(_));
                    if is_port && is_linux && n.kind.text == "linux" {
                        self.push(
                            err(Code::E0017WrongIfaceKind, i.span, format!("linux node `{}` has a port", n.name.text))
                                .hint("linux nodes have `interface IF { id N address PFX }`; ports belong to bmv2 and tofino nodes"),
                        );
                        continue;
                    }
                    if !is_port && !is_linux {
                        self.push(
                            err(Code::E0017WrongIfaceKind, i.span, format!("{} node `{}` has an interface", n.kind.text, n.name.text))
                                .hint("switches have `port P { id N [mac MAC] }`; interfaces belong to linux nodes"),
                        );
                        continue;
                    }
                    if let Some(iface) = self.iface(i, is_port, &mut names, &mut ids) {
                        ifaces.push(iface);
                    }
                }
                NodeStmt::P4Runtime {
                    address,
                    device,
                    span,
                } => {
                    if is_linux {
                        if n.kind.text == "linux" {
                            self.push(
                                err(Code::E0022Misplaced, *span, "`p4runtime` on a linux node")
                                    .hint("only bmv2 and tofino nodes have a P4Runtime server"),
                            );
                        }
                        continue;
                    }
                    self.host_port(address);
                    let device_id = device.value.unwrap_or_else(|| {
                        self.range(*device, 0, u64::MAX, "device id", "");
                        0
                    });
                    self.once(
                        &mut p4rt,
                        P4Runtime {
                            address: address.text.clone(),
                            device_id,
                        },
                        *span,
                        "p4runtime",
                    );
                }
                NodeStmt::Domains { names: dn, span } => {
                    let mut v = Vec::new();
                    for name in dn {
                        match self.domain_names.get(&name.text) {
                            Some((d, _)) => v.push(*d),
                            None => self.unknown_domain(name),
                        }
                    }
                    self.once(&mut allowed, v, *span, "domain");
                }
            }
        }
        if id.is_none() && id_wide.is_none() {
            self.push(
                err(
                    Code::E0019Missing,
                    n.name.span,
                    format!("node `{}` has no `id`", n.name.text),
                )
                .hint("add `id N` (24-bit) or `id wide N` (56-bit)"),
            );
        }
        if !is_linux && p4rt.is_none() {
            self.push(
                err(
                    Code::E0016NoP4Runtime,
                    n.name.span,
                    format!("{} node `{}` has no `p4runtime`", n.kind.text, n.name.text),
                )
                .hint("add `p4runtime HOST:PORT device N`"),
            );
        }
        let id_v = id.map(|i| i.0);
        let wide_v = id_wide.map(|i| i.0);
        MNode {
            name: n.name.text.clone(),
            span: n.name.span,
            kind,
            id: id_v.unwrap_or(match wide_v {
                Some(w) if w <= 0xff_ffff => w as u32,
                _ => 0xff_ffff,
            }),
            id_wide: wide_v.unwrap_or(id_v.unwrap_or(0) as u64),
            interfaces: ifaces,
            p4runtime: p4rt.map(|p| p.0),
            allowed: allowed.map(|a| a.0),
            domains: Vec::new(),
            routes: Vec::new(),
            roles: Vec::new(),
            forwards: false,
        }
    }

    fn is_lost(&self, kind: &str, name: &str) -> bool {
        self.lost.iter().any(|(k, n)| k == kind && n == name)
    }

    fn unknown_domain(&mut self, name: &ast::Ident) {
        if self.is_lost("domain", &name.text) {
            return;
        }
        let mut known: Vec<&String> = self.domain_names.keys().collect();
        known.sort();
        let hint = if known.is_empty() {
            "declare it with `domain NAME { ... }`".to_string()
        } else {
            format!(
                "declared domains: {}",
                known
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.push(
            err(
                Code::E0003Unknown,
                name.span,
                format!("unknown domain `{}`", name.text),
            )
            .hint(hint),
        );
    }

    fn iface(
        &mut self,
        i: &ast::Iface,
        is_port: bool,
        names: &mut HashMap<String, Span>,
        ids: &mut HashMap<u16, Span>,
    ) -> Option<MIface> {
        let what = if is_port { "port" } else { "interface" };
        let mut port = None;
        let mut name = i.name.text.clone();
        if is_port {
            let num = ast::Num {
                value: parse_num(&i.name.text),
                span: i.name.span,
            };
            let p = self.range(
                num,
                0,
                MAX_PORT,
                "port number",
                "data-plane ports are 9-bit",
            )? as u32;
            port = Some(p);
            name = p.to_string();
        }
        if let Some(first) = names.get(&name) {
            let first = *first;
            self.push(
                err(
                    Code::E0004Duplicate,
                    i.name.span,
                    format!("duplicate {what} `{name}`"),
                )
                .related(first, "first declared here")
                .hint(format!("each {what} of a node has its own name")),
            );
            return None;
        }
        names.insert(name.clone(), i.name.span);
        let mut if_id = None;
        let mut address = None;
        let mut mac = None;
        let mut mtu = None;
        let before = self.diags.len();
        let mut had_id = false;
        let mut had_address = false;
        for s in &i.stmts {
            match s {
                IfaceStmt::Id { wide, value, span } => {
                    had_id = true;
                    if *wide {
                        self.push(
                            err(Code::E0022Misplaced, *span, format!("`id wide` on an {what}"))
                                .hint("interface ids are 16-bit (`id N`); the wide id is the same value zero-extended"),
                        );
                        continue;
                    }
                    if let Some(v) = self.range(
                        *value,
                        0,
                        65535,
                        "interface id",
                        "IOAM interface ids are 16-bit",
                    ) {
                        let v = v as u16;
                        if let Some(first) = ids.get(&v) {
                            let first = *first;
                            self.push(
                                err(
                                    Code::E0006DuplicateIfaceId,
                                    value.span,
                                    format!("interface id {v} used twice on this node"),
                                )
                                .related(first, "first used here")
                                .hint("give every interface or port of a node its own id"),
                            );
                        } else {
                            ids.insert(v, value.span);
                        }
                        self.once(&mut if_id, v, *span, "id");
                    }
                }
                IfaceStmt::Address { text, span } => {
                    had_address = true;
                    if is_port {
                        self.push(
                            err(Code::E0022Misplaced, *span, "`address` on a switch port")
                                .hint("switch ports have no IPv6 address; Linux hosts reach them through the link-local address of their `mac`"),
                        );
                        continue;
                    }
                    if let Some(p) = self.prefix(text, false) {
                        self.once(&mut address, p, *span, "address");
                    }
                }
                IfaceStmt::Mac { text, span } => {
                    if let Some(m) = self.mac(text) {
                        self.once(&mut mac, m, *span, "mac");
                    }
                }
                IfaceStmt::Mtu { value, span } => {
                    if let Some(v) = self.range(
                        *value,
                        1280,
                        65535,
                        "mtu",
                        "IPv6 links have an MTU of at least 1280",
                    ) {
                        self.once(&mut mtu, v as u16, *span, "mtu");
                    }
                }
            }
        }
        if if_id.is_none() && !had_id {
            self.push(
                err(
                    Code::E0019Missing,
                    i.name.span,
                    format!("{what} `{name}` has no `id`"),
                )
                .hint("add `id N`, the 16-bit IOAM interface id"),
            );
        }
        if !is_port && address.is_none() && !had_address {
            self.push(
                err(
                    Code::E0019Missing,
                    i.name.span,
                    format!("interface `{name}` has no `address`"),
                )
                .hint("add `address PFX`, e.g. `address db01::1/64`"),
            );
        }
        Some(MIface {
            name,
            span: i.name.span,
            port,
            if_id: if_id.map(|i| i.0).unwrap_or(0),
            address: address.map(|a| a.0),
            mac: mac.map(|m| m.0),
            mtu: mtu.map(|m| m.0).unwrap_or(DEFAULT_MTU),
            peer: None,
            broken: self.diags.len() > before || (!is_port && address.is_none()),
        })
    }

    fn node_ref(&mut self, name: &ast::Ident) -> Option<NodeIdx> {
        match self.node_names.get(&name.text) {
            Some((i, _)) => Some(*i),
            None if self.is_lost("node", &name.text) => None,
            None => {
                let mut known: Vec<&String> = self.node_names.keys().collect();
                known.sort();
                let hint = if known.is_empty() {
                    "declare it with `node NAME KIND { ... }`".to_string()
                } else if known.len() <= 8 {
                    format!(
                        "declared nodes: {}",
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    "declare it with `node NAME KIND { ... }`".to_string()
                };
                self.push(
                    err(
                        Code::E0003Unknown,
                        name.span,
                        format!("unknown node `{}`", name.text),
                    )
                    .hint(hint),
                );
                None
            }
        }
    }

    fn endpoint(&mut self, e: &ast::Endpoint, nodes: &[MNode]) -> Option<Endpoint> {
        let node = self.node_ref(&e.node)?;
        let n = &nodes[node.0 as usize];
        let wanted = match n.kind {
            NodeKind::Linux => e.iface.text.clone(),
            _ => parse_num(&e.iface.text).map_or(e.iface.text.clone(), |v| v.to_string()),
        };
        match n.interfaces.iter().position(|i| i.name == wanted) {
            Some(i) => Some(Endpoint {
                node,
                iface: i as u32,
            }),
            None => {
                let what = if n.kind == NodeKind::Linux {
                    "interface"
                } else {
                    "port"
                };
                let known: Vec<&str> = n.interfaces.iter().map(|i| i.name.as_str()).collect();
                let hint = if known.is_empty() {
                    format!("node `{}` declares no {what}", n.name)
                } else {
                    format!("`{}` has {what}s {}", n.name, known.join(", "))
                };
                self.push(
                    err(
                        Code::E0018UnknownEndpoint,
                        e.iface.span,
                        format!("node `{}` has no {what} `{}`", n.name, e.iface.text),
                    )
                    .related(n.span, "node declared here")
                    .hint(hint),
                );
                None
            }
        }
    }

    fn links(&mut self, file: &ast::File, nodes: &mut [MNode]) -> Vec<MLink> {
        let mut out = Vec::new();
        let mut used: HashMap<(NodeIdx, u32), Span> = HashMap::new();
        for item in &file.items {
            let Item::Link(l) = item else { continue };
            let a = self.endpoint(&l.a, nodes);
            let b = self.endpoint(&l.b, nodes);
            let (Some(a), Some(b)) = (a, b) else {
                self.links_broken = true;
                continue;
            };
            let mut ok = true;
            for (e, ast_e) in [(a, &l.a), (b, &l.b)] {
                if let Some(first) = used.get(&(e.node, e.iface)) {
                    let first = *first;
                    self.push(
                        err(
                            Code::E0007LinkedTwice,
                            ast_e.span,
                            format!(
                                "`{}.{}` is in more than one link",
                                ast_e.node.text, ast_e.iface.text
                            ),
                        )
                        .related(first, "first linked here")
                        .hint("links are point to point: declare another interface or port"),
                    );
                    ok = false;
                }
            }
            if a.node == b.node {
                self.push(
                    err(Code::E0024BadLink, l.span, "a link from a node to itself")
                        .hint("a link joins two different nodes"),
                );
                ok = false;
            }
            if !ok {
                self.links_broken = true;
                continue;
            }
            let ia = &nodes[a.node.0 as usize].interfaces[a.iface as usize];
            let ib = &nodes[b.node.0 as usize].interfaces[b.iface as usize];
            if let (Some(pa), Some(pb)) = (ia.address, ib.address)
                && pa.trunc() != pb.trunc()
            {
                self.push(
                    err(
                        Code::E0024BadLink,
                        l.span,
                        format!(
                            "the ends of this link are in different prefixes ({} and {})",
                            pa.trunc(),
                            pb.trunc()
                        ),
                    )
                    .hint("give both interfaces addresses in the same prefix so they are on-link"),
                );
            }
            used.insert((a.node, a.iface), l.a.span);
            used.insert((b.node, b.iface), l.b.span);
            nodes[a.node.0 as usize].interfaces[a.iface as usize].peer = Some(b);
            nodes[b.node.0 as usize].interfaces[b.iface as usize].peer = Some(a);
            out.push(MLink { a, b, span: l.span });
        }
        out
    }

    fn policies(
        &mut self,
        file: &ast::File,
        nodes: &[MNode],
        graph: &UnGraph<NodeIdx, u32>,
    ) -> Vec<MPolicy> {
        let adj = adjacency(graph, nodes);
        let mut names: HashMap<String, Span> = HashMap::new();
        let mut out = Vec::new();
        let mut trees = Trees::new(nodes.len());
        for item in &file.items {
            let Item::Policy(p) = item else { continue };
            if let Some(first) = names.get(&p.name.text) {
                let first = *first;
                self.push(
                    err(
                        Code::E0004Duplicate,
                        p.name.span,
                        format!("duplicate policy `{}`", p.name.text),
                    )
                    .related(first, "first declared here")
                    .hint("rename one of the policies"),
                );
                continue;
            }
            names.insert(p.name.text.clone(), p.name.span);
            if let Some(mp) = self.policy(p, nodes, &adj, &mut trees) {
                out.push(mp);
            }
        }
        out
    }

    fn policy(
        &mut self,
        p: &ast::Policy,
        nodes: &[MNode],
        adj: &[Vec<Adj>],
        trees: &mut Trees,
    ) -> Option<MPolicy> {
        let mut domain: Option<(Option<DomainIdx>, Span)> = None;
        type Ends = (Option<NodeIdx>, Option<NodeIdx>);
        let mut ends: Option<(Ends, Span)> = None;
        let mut dst: Option<(Option<Ipv6Net>, Span)> = None;
        let mut src: Option<(Option<Ipv6Net>, Span)> = None;
        let mut proto: Option<(Option<u8>, Span)> = None;
        let mut dport: Option<(Option<u16>, Span)> = None;
        let mut sport: Option<(Option<u16>, Span)> = None;
        let mut sample: Option<(Option<Sample>, Span)> = None;
        let mut from_to_span = p.name.span;
        for s in &p.stmts {
            match s {
                PolicyStmt::Domain { name, span } => {
                    let d = match self.domain_names.get(&name.text) {
                        Some((d, _)) => Some(*d),
                        None => {
                            self.unknown_domain(name);
                            None
                        }
                    };
                    self.once(&mut domain, d, *span, "domain");
                }
                PolicyStmt::FromTo { from, to, span } => {
                    from_to_span = *span;
                    let f = self.node_ref(from);
                    let t = self.node_ref(to);
                    if f.is_some() && f == t {
                        self.push(
                            err(Code::E0030SameEnds, *span, format!("policy `{}` starts and ends at `{}`", p.name.text, from.text))
                                .hint("`from` is the encapsulating node and `to` the decapsulating node: name two different nodes"),
                        );
                    }
                    self.once(&mut ends, (f, t), *span, "from ... to");
                }
                PolicyStmt::Match { clauses, .. } => {
                    for c in clauses {
                        match c {
                            MatchClause::Dst(t) => {
                                let v = self.prefix(t, true).map(|n| n.trunc());
                                self.once(&mut dst, v, t.span, "dst");
                            }
                            MatchClause::Src(t) => {
                                let v = self.prefix(t, true).map(|n| n.trunc());
                                self.once(&mut src, v, t.span, "src");
                            }
                            MatchClause::Proto(t) => {
                                let v = match t.text.as_str() {
                                    "tcp" => Some(6),
                                    "udp" => Some(17),
                                    "icmpv6" => Some(58),
                                    other => {
                                        self.push(
                                            err(
                                                Code::E0003Unknown,
                                                t.span,
                                                format!("unknown protocol `{other}`"),
                                            )
                                            .hint(
                                                "match `proto tcp`, `proto udp` or `proto icmpv6`",
                                            ),
                                        );
                                        None
                                    }
                                };
                                self.once(&mut proto, v, t.span, "proto");
                            }
                            MatchClause::Dport(n) => {
                                let v = self.range(*n, 0, 65535, "port", "").map(|v| v as u16);
                                self.once(&mut dport, v, n.span, "dport");
                            }
                            MatchClause::Sport(n) => {
                                let v = self.range(*n, 0, 65535, "port", "").map(|v| v as u16);
                                self.once(&mut sport, v, n.span, "sport");
                            }
                        }
                    }
                }
                PolicyStmt::Sample { k, n, span } => {
                    let v = match (k.value, n.value) {
                        (Some(kv), Some(nv))
                            if nv >= 1 && kv >= 1 && kv <= nv && nv <= u32::MAX as u64 =>
                        {
                            Some(Sample {
                                k: kv as u32,
                                n: nv as u32,
                            })
                        }
                        _ => {
                            self.push(err(Code::E0009Sample, *span, "invalid sample rate").hint(
                                "`sample K/N` inserts IOAM in K of every N packets: 1 <= K <= N",
                            ));
                            None
                        }
                    };
                    self.once(&mut sample, v, *span, "sample");
                }
            }
        }
        let missing = |what: &str, hint: &str| {
            err(
                Code::E0019Missing,
                p.name.span,
                format!("policy `{}` has no `{what}`", p.name.text),
            )
            .hint(hint.to_string())
        };
        if domain.is_none() {
            self.push(missing("domain", "add `domain NAME`"));
        }
        if ends.is_none() {
            self.push(missing("from", "add `from ENCAP_NODE to DECAP_NODE`"));
        }
        if dst.is_none() {
            self.push(missing(
                "match dst",
                "add `match dst PFX` (and optionally src, proto, dport, sport)",
            ));
        }
        let domain = domain?.0?;
        let ((from, to), _) = ends?;
        let (from, to) = (from?, to?);
        if from == to {
            return None;
        }
        let dst = dst?.0?;
        let flow = FlowMatch {
            dst,
            src: match src {
                Some((v, _)) => Some(v?),
                None => None,
            },
            proto: match proto {
                Some((v, _)) => Some(v?),
                None => None,
            },
            dport: match dport {
                Some((v, _)) => Some(v?),
                None => None,
            },
            sport: match sport {
                Some((v, _)) => Some(v?),
                None => None,
            },
        };
        let sample = match sample {
            Some((v, _)) => v?,
            None => Sample { k: 1, n: 1 },
        };
        // The path: shortest from `from` to `to`, ties to the lowest neighbour.
        let Some(path) = trees.path(adj, from, to) else {
            if self.links_broken {
                return None;
            }
            self.push(
                err(
                    Code::E0012NoPath,
                    from_to_span,
                    format!(
                        "no path from `{}` to `{}`",
                        nodes[from.0 as usize].name, nodes[to.0 as usize].name
                    ),
                )
                .hint("add `link` items that connect the two nodes"),
            );
            return None;
        };
        // Every node on the path must be in the domain.
        for hop in &path {
            let n = &nodes[hop.node.0 as usize];
            if let Some(allowed) = &n.allowed
                && !allowed.contains(&domain)
            {
                let dname = self
                    .domain_names
                    .iter()
                    .find(|(_, v)| v.0 == domain)
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default();
                self.push(
                    err(
                        Code::E0013NotInDomain,
                        from_to_span,
                        format!("node `{}` on the path of policy `{}` is not in domain `{dname}`", n.name, p.name.text),
                    )
                    .related(n.span, "node declared here")
                    .hint(format!("add `{dname}` to the node's `domain` list, or change the links so the path avoids it")),
                );
            }
        }
        // The dst should belong to `to`, or IOAM packets travel past it.
        let to_node = &nodes[to.0 as usize];
        let at_to = to_node
            .interfaces
            .iter()
            .filter_map(|i| i.address)
            .any(|a| a.trunc().contains(&dst) || dst.contains(&a.addr()));
        let to_broken = to_node.interfaces.iter().any(|i| i.broken);
        if to_node.kind == NodeKind::Linux && !at_to && !to_broken {
            let span = p.stmts.iter().find_map(|s| match s {
                PolicyStmt::Match { clauses, .. } => clauses.iter().find_map(|c| match c {
                    MatchClause::Dst(t) => Some(t.span),
                    _ => None,
                }),
                _ => None,
            });
            self.push(
                err(
                    Code::W0003DstNotAtTo,
                    span.unwrap_or(p.name.span),
                    format!("`{dst}` is not an address of `{}`, the decapsulating node", to_node.name),
                )
                .hint("packets with IOAM may travel past the decapsulating node; match a prefix of the `to` node"),
            );
        }
        Some(MPolicy {
            name: p.name.text.clone(),
            span: p.name.span,
            domain,
            from,
            to,
            flow,
            sample,
            path,
        })
    }

    fn roles_and_sizes(&mut self, file: &ast::File, m: &mut Model) {
        // Roles and domain membership.
        for (pi, p) in m.policies.iter().enumerate() {
            let last = p.path.len() - 1;
            for (i, hop) in p.path.iter().enumerate() {
                let role = if i == 0 {
                    Role::Encap
                } else if i == last {
                    Role::Decap
                } else {
                    Role::Transit
                };
                let n = &mut m.nodes[hop.node.0 as usize];
                n.roles.push(RoleAssignment {
                    policy: PolicyIdx(pi as u32),
                    role,
                    ingress: hop.ingress,
                    egress: hop.egress,
                });
                if !n.domains.contains(&p.domain) {
                    n.domains.push(p.domain);
                }
            }
        }
        for n in &mut m.nodes {
            n.domains.sort();
        }
        for di in 0..m.domains.len() {
            let idx = DomainIdx(di as u32);
            let Some(src) = self.domain_src(file, idx) else {
                continue;
            };
            let policies: Vec<&MPolicy> = m.policies.iter().filter(|p| p.domain == idx).collect();
            let longest = policies.iter().map(|p| p.path.len()).max().unwrap_or(1);
            let d = &mut m.domains[di];
            let max_hops = match src.max_hops {
                Some((v, span)) if (1..=255).contains(&v) => {
                    if (v as usize) < longest {
                        let p = policies.iter().find(|p| p.path.len() == longest);
                        self.diags.push(
                            err(
                                Code::W0004Overflow,
                                span,
                                format!(
                                    "`max_hops {v}` is less than the {longest} nodes on the path of policy `{}`",
                                    p.map(|p| p.name.as_str()).unwrap_or("?")
                                ),
                            )
                            .hint("the trace overflows and the last nodes record nothing; raise `max_hops` or remove it"),
                        );
                    }
                    v as u32
                }
                _ => longest.min(255) as u32,
            };
            let opaque = if d.trace_type.contains(TraceField::OpaqueState) {
                4 + d.schema.as_ref().map_or(0, |s| s.data.len() as u32)
            } else {
                0
            };
            let per_hop = d.trace_type.node_len() as u32 * 4 + opaque;
            let prealloc = max_hops * per_hop;
            d.max_hops = max_hops as u8;
            d.per_hop_len = per_hop.min(255) as u8;
            d.prealloc_len = prealloc.min(255) as u8;
            if !src.valid_trace {
                continue;
            }
            if prealloc > MAX_PREALLOC {
                let span = src.max_hops.map(|m| m.1).unwrap_or(src.trace_span);
                self.diags.push(
                    err(
                        Code::E0014TraceTooLarge,
                        span,
                        format!(
                            "the pre-allocated trace of domain `{}` is {prealloc} bytes ({max_hops} hops x {per_hop} bytes), more than 244",
                            d.name
                        ),
                    )
                    .hint(format!(
                        "RFC 9486 allows at most 244 bytes: trace fewer fields or set `max_hops {}` or less",
                        (MAX_PREALLOC / per_hop.max(1)).max(1)
                    )),
                );
                continue;
            }
        }
        // Node ids unique per domain, and wide enough for the traced field.
        for di in 0..m.domains.len() {
            let idx = DomainIdx(di as u32);
            let tt = m.domains[di].trace_type;
            let src = self.domain_src(file, idx);
            let mut seen: HashMap<u32, usize> = HashMap::new();
            let mut seen_wide: HashMap<u64, usize> = HashMap::new();
            for (ni, n) in m.nodes.iter().enumerate() {
                if !n.domains.contains(&idx) {
                    continue;
                }
                let short_matters = tt.contains(TraceField::HopLimitNodeId)
                    || !tt.contains(TraceField::HopLimitNodeIdWide);
                if !short_matters {
                } else if let Some(&first) = seen.get(&n.id) {
                    self.diags.push(
                        err(
                            Code::E0005DuplicateNodeId,
                            n.span,
                            format!(
                                "nodes `{}` and `{}` have the same id {} in domain `{}`",
                                m.nodes[first].name, n.name, n.id, m.domains[di].name
                            ),
                        )
                        .related(m.nodes[first].span, "first node")
                        .hint("give every node of a domain its own `id`"),
                    );
                } else {
                    seen.insert(n.id, ni);
                }
                if tt.contains(TraceField::HopLimitNodeIdWide) {
                    if let Some(&first) = seen_wide.get(&n.id_wide) {
                        {
                            self.diags.push(
                                err(
                                    Code::E0005DuplicateNodeId,
                                    n.span,
                                    format!("nodes `{}` and `{}` have the same wide id {} in domain `{}`", m.nodes[first].name, n.name, n.id_wide, m.domains[di].name),
                                )
                                .related(m.nodes[first].span, "first node")
                                .hint("give every node of a domain its own `id wide`"),
                            );
                        }
                    } else {
                        seen_wide.insert(n.id_wide, ni);
                    }
                }
                if tt.contains(TraceField::HopLimitNodeId)
                    && n.id_wide > 0xff_ffff
                    && !has_short_id(file, &n.name)
                {
                    self.diags.push(
                        err(
                            Code::E0027IdWidth,
                            n.span,
                            format!("node `{}` has only a wide id ({}), but domain `{}` traces the 24-bit `hop_limit_node_id`", n.name, n.id_wide, m.domains[di].name),
                        )
                        .hint("add `id N` (24-bit) beside `id wide N`, or trace `hop_limit_node_id_wide`"),
                    );
                }
            }
            // What node kinds cannot fill.
            if let Some(src) = &src {
                for (field, span) in &src.field_spans {
                    for kind in [NodeKind::Linux, NodeKind::Bmv2, NodeKind::Tofino] {
                        if !cannot_fill(kind).contains(field) {
                            continue;
                        }
                        let who: Vec<&str> = m
                            .nodes
                            .iter()
                            .filter(|n| n.kind == kind && n.domains.contains(&idx))
                            .map(|n| n.name.as_str())
                            .collect();
                        if who.is_empty() {
                            continue;
                        }
                        let list = if who.len() > 3 {
                            format!("{} and {} more", who[..3].join(", "), who.len() - 3)
                        } else {
                            who.join(", ")
                        };
                        self.diags.push(
                            err(
                                Code::W0001CannotFill,
                                *span,
                                format!("{} nodes cannot fill `{field}`: {list} will write all-ones", kind_name(kind)),
                            )
                            .hint("the field keeps its place in the trace; drop it if no node can fill it"),
                        );
                    }
                }
            }
        }
    }

    /// E0032, E0033: a Tofino reports the traces of the domains it
    /// decapsulates with TNA learning digests (`p4src/README.md`, "How TNA
    /// differs"). bf-p4c refuses a digest over 48 bytes (E0032: 36 bytes of
    /// ids and header fields plus the node data), and the digest type, the
    /// domain's number on the node, has 3 bits (E0033: only the node's first
    /// 7 domains, in declaration order, can report). The sizes come from the
    /// P4 backend's own digest layout (`objects::tna_digest_bytes`).
    fn tofino_digests(&mut self, file: &ast::File, m: &Model) {
        use crate::backend::p4::objects::{
            MAX_LEARNING_QUANTA_BYTES, MAX_TNA_DIGEST_TYPE, tna_digest_bytes,
        };
        for n in m.nodes.iter().filter(|n| n.kind == NodeKind::Tofino) {
            // The node's domains in the P4 backend's order: the domain
            // number is the position + 1 (`layout::domains_of`).
            for (i, &idx) in n.domains.iter().enumerate() {
                let Some(role) = n.roles.iter().find(|r| {
                    r.role == Role::Decap && m.policies[r.policy.0 as usize].domain == idx
                }) else {
                    continue;
                };
                let policy = &m.policies[role.policy.0 as usize];
                let d = &m.domains[idx.0 as usize];
                let number = i + 1;
                if number > usize::from(MAX_TNA_DIGEST_TYPE) {
                    self.push(
                        err(
                            Code::E0033DigestType,
                            n.span,
                            format!(
                                "tofino node `{}` decapsulates domain `{}` (policy `{}`), its domain number {number}: a TNA digest type holds 1 to {MAX_TNA_DIGEST_TYPE}",
                                n.name, d.name, policy.name
                            ),
                        )
                        .related(d.span, format!("domain number {number} of `{}`", n.name))
                        .hint(format!(
                            "a tofino node reports only its first {MAX_TNA_DIGEST_TYPE} domains (in declaration order): declare `{}` among the first {MAX_TNA_DIGEST_TYPE} domains `{}` takes part in, or make a bmv2 or linux node the `to` of policy `{}`",
                            d.name, n.name, policy.name
                        )),
                    );
                }
                let Some(src) = self.domain_src(file, idx) else {
                    continue;
                };
                // E0014 (or the trace's own error) already covers these.
                let prealloc = u32::from(d.max_hops) * u32::from(d.per_hop_len);
                if !src.valid_trace || prealloc > MAX_PREALLOC {
                    continue;
                }
                let bytes = tna_digest_bytes(prealloc);
                if bytes > MAX_LEARNING_QUANTA_BYTES {
                    let fit = (MAX_LEARNING_QUANTA_BYTES - tna_digest_bytes(0))
                        / u32::from(d.per_hop_len).max(1);
                    let fewer = if fit == 0 {
                        "trace fewer fields".to_string()
                    } else {
                        format!("trace fewer fields or set `max_hops {fit}` or less")
                    };
                    self.push(
                        err(
                            Code::E0032DigestTooLarge,
                            src.trace_span,
                            format!(
                                "tofino node `{}` decapsulates domain `{}` (policy `{}`): its learning digest would be {bytes} bytes ({} + {prealloc} bytes of node data, {} hops x {} bytes), more than bf-p4c's {MAX_LEARNING_QUANTA_BYTES}",
                                n.name, d.name, policy.name, tna_digest_bytes(0), d.max_hops, d.per_hop_len
                            ),
                        )
                        .related(n.span, "the decapsulating tofino node")
                        .hint(format!(
                            "a Tofino reports at most {} bytes of node data: {fewer}, or make a bmv2 or linux node the `to` of policy `{}`",
                            (MAX_LEARNING_QUANTA_BYTES - tna_digest_bytes(0)) / 4 * 4,
                            policy.name
                        )),
                    );
                }
            }
        }
    }

    /// W0005: a Tofino writes the queue depth and transit delay in egress,
    /// whose parser reads at most 160 bytes (Tofino 1): an entry past that
    /// keeps the all-ones ingress wrote (`p4src/README.md`, "How TNA
    /// differs"; `layout::tna_egress_entries`). Entry i (wire order) is
    /// filled by the hop `max_hops - i` of the trace, so it is the first
    /// hops that lose the values. The CLT layout counts only for a domain
    /// with `context w3c` (no other packet carries the CLT option).
    fn tofino_egress_reach(&mut self, file: &ast::File, m: &Model) {
        use crate::backend::p4::layout::tna_egress_entries;
        for (di, d) in m.domains.iter().enumerate() {
            let idx = DomainIdx(di as u32);
            let Some(src) = self.domain_src(file, idx) else {
                continue;
            };
            let egress: Vec<&(TraceField, Span)> = src
                .field_spans
                .iter()
                .filter(|(f, _)| matches!(f, TraceField::QueueDepth | TraceField::TransitDelay))
                .collect();
            let Some((_, span)) = egress.first() else {
                continue;
            };
            if !src.valid_trace || d.max_hops == 0 {
                continue;
            }
            let tstamp = egress.iter().any(|(f, _)| *f == TraceField::TransitDelay);
            let per_hop = u32::from(d.per_hop_len);
            let plain = tna_egress_entries(per_hop, d.max_hops, tstamp, false);
            let clt = if d.context_w3c {
                tna_egress_entries(per_hop, d.max_hops, tstamp, true)
            } else {
                plain
            };
            let reached = plain.min(clt);
            if reached >= d.max_hops {
                continue;
            }
            let tofinos: Vec<_> = m
                .nodes
                .iter()
                .filter(|n| n.kind == NodeKind::Tofino && n.domains.contains(&idx))
                .collect();
            let Some(first) = tofinos.first() else {
                continue;
            };
            let names: Vec<&str> = tofinos.iter().map(|n| n.name.as_str()).collect();
            let fields: Vec<String> = egress.iter().map(|(f, _)| format!("`{f}`")).collect();
            let lost = d.max_hops - reached;
            let layouts = if clt < plain {
                format!(" (with the CLT option; {plain} of {} without)", d.max_hops)
            } else {
                String::new()
            };
            self.diags.push(
                err(
                    Code::W0005TofinoEgressReach,
                    *span,
                    format!(
                        "tofino {} {} {} {} of domain `{}` into {reached} of its {} entries{layouts}: as one of the first {lost} hops of a trace {} all-ones there",
                        if names.len() == 1 { "node" } else { "nodes" },
                        names.join(", "),
                        if names.len() == 1 { "writes" } else { "write" },
                        fields.join(" and "),
                        d.name,
                        d.max_hops,
                        if names.len() == 1 { "it leaves" } else { "they leave" }
                    ),
                )
                .related(first.span, "Tofino 1's egress parser reads 160 bytes of a packet")
                .hint("fewer `max_hops` or fewer fields per hop reach further; a bmv2 or linux node has no such limit"),
            );
        }
    }

    /// E0015: a node that inserts IOAM into packets in flight (a switch
    /// encapsulating, or a Linux router whose encap route catches forwarded
    /// traffic) makes full-size packets grow by the Hop-by-Hop header, so
    /// every link after it on the policy's path must carry the largest packet
    /// that can arrive (the largest MTU of its other links) plus that header.
    /// A Linux host encapsulating only its own traffic is not checked: the
    /// CLT socket API makes the kernel count the header in TCP's MSS, and the
    /// host fragments its own datagrams (see docs/policy-language.md).
    fn mtu_checks(&mut self, file: &ast::File, m: &Model) {
        for p in &m.policies {
            let d = &m.domains[p.domain.0 as usize];
            let Some(src) = self.domain_src(file, p.domain) else {
                continue;
            };
            if !src.valid_trace || u32::from(d.prealloc_len) > MAX_PREALLOC || p.path.len() < 2 {
                continue;
            }
            let first = p.path[0];
            let encap = &m.nodes[first.node.0 as usize];
            if encap.kind == NodeKind::Linux && !encap.forwards {
                continue;
            }
            let Some(egress) = first.egress else { continue };
            // Where packets for the policy can arrive: every other link.
            let entry = encap
                .interfaces
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 != egress)
                .filter_map(|(i, iface)| {
                    let peer = iface.peer?;
                    let far = &m.nodes[peer.node.0 as usize].interfaces[peer.iface as usize];
                    Some((i, iface.mtu.min(far.mtu), peer))
                })
                .fold(None, |best: Option<(usize, u16, Endpoint)>, c| match best {
                    Some(b) if b.1 >= c.1 => Some(b),
                    _ => Some(c),
                });
            let Some((_, entry_mtu, entry_peer)) = entry else {
                continue;
            };
            // The narrowest link from the encapsulating node on.
            let mut narrow: Option<(u16, Endpoint, Endpoint)> = None;
            for w in p.path.windows(2) {
                let (Some(out), Some(inn)) = (w[0].egress, w[1].ingress) else {
                    continue;
                };
                let a = Endpoint {
                    node: w[0].node,
                    iface: out,
                };
                let b = Endpoint {
                    node: w[1].node,
                    iface: inn,
                };
                let mtu = m.nodes[a.node.0 as usize].interfaces[out as usize]
                    .mtu
                    .min(m.nodes[b.node.0 as usize].interfaces[inn as usize].mtu);
                if narrow.is_none_or(|n| mtu < n.0) {
                    narrow = Some((mtu, a, b));
                }
            }
            let Some((path_mtu, a, b)) = narrow else {
                continue;
            };
            let hbh = hbh_len(u32::from(d.prealloc_len), false);
            let need = u32::from(entry_mtu) + hbh;
            if u32::from(path_mtu) >= need {
                continue;
            }
            let name = |e: Endpoint| {
                let n = &m.nodes[e.node.0 as usize];
                format!("{}.{}", n.name, n.interfaces[e.iface as usize].name)
            };
            let iface_of = |e: Endpoint| &m.nodes[e.node.0 as usize].interfaces[e.iface as usize];
            // The ends of the narrow link below what is needed.
            let raise: Vec<String> = [a, b]
                .into_iter()
                .filter(|e| u32::from(iface_of(*e).mtu) < need)
                .map(name)
                .collect();
            let lower = u32::from(path_mtu) - hbh;
            let mut hint = format!(
                "raise the MTU of {} to at least {need}",
                raise.join(" and ")
            );
            if lower >= 1280 {
                let _ = write!(hint, " or lower {}'s MTU to {lower}", name(entry_peer));
            } else {
                hint.push_str(" or trace less");
            }
            let _ = write!(
                hint,
                " (a full-size packet from {} grows by the {hbh}-byte Hop-by-Hop header)",
                name(entry_peer)
            );
            let what = if encap.kind == NodeKind::Linux {
                "routes forwarded packets through its ioam6 encap route"
            } else {
                "inserts the trace into packets in flight"
            };
            let narrow_span = iface_of(if iface_of(a).mtu <= iface_of(b).mtu {
                a
            } else {
                b
            })
            .span;
            self.diags.push(
                err(
                    Code::E0015Mtu,
                    p.span,
                    format!(
                        "policy `{}`: `{}` {what}, so packets of up to {entry_mtu} bytes arriving from {} leave {hbh} bytes larger, but the link {} -- {} has an MTU of {path_mtu}",
                        p.name,
                        encap.name,
                        name(entry_peer),
                        name(a),
                        name(b)
                    ),
                )
                .related(narrow_span, format!("MTU {path_mtu} on the path"))
                .hint(hint),
            );
        }
    }

    /// Routes, compacted: every node forwards each fabric prefix it is not on
    /// along a shortest path (ties to the neighbour declared first); its
    /// default route (`::/0`) goes to the next hop most prefixes use, and only
    /// the prefixes with another next hop get a route of their own. Defaults
    /// never form a loop (see `break_default_loops`).
    ///
    /// Cost: one breadth-first search per distinct anchor (the nodes a
    /// prefix is on, a stub replaced by its neighbour: every path to a host
    /// goes through its switch), so a leaf-spine fabric needs one per leaf,
    /// not one per host.
    fn routes(&mut self, m: &mut Model) {
        let adj = adjacency(&m.graph, &m.nodes);
        let n = m.nodes.len();
        // Prefixes and the nodes they are on, in declaration order.
        let mut prefixes: Vec<(Ipv6Net, Vec<NodeIdx>, Span)> = Vec::new();
        let mut by_prefix: HashMap<Ipv6Net, usize> = HashMap::new();
        for (ni, node) in m.nodes.iter().enumerate() {
            for iface in &node.interfaces {
                let Some(addr) = iface.address else { continue };
                let net = addr.trunc();
                match by_prefix.get(&net) {
                    Some(&i) => {
                        let (_, on, first) = &mut prefixes[i];
                        let same_link = on.iter().any(|o| iface.peer.is_some_and(|p| p.node == *o));
                        if !same_link {
                            let first = *first;
                            self.diags.push(
                                err(
                                    Code::E0028DuplicatePrefix,
                                    iface.span,
                                    format!("prefix {net} is on two links"),
                                )
                                .related(first, "also here")
                                .hint("give every link its own prefix"),
                            );
                        } else if !on.contains(&NodeIdx(ni as u32)) {
                            on.push(NodeIdx(ni as u32));
                        }
                    }
                    None => {
                        by_prefix.insert(net, prefixes.len());
                        prefixes.push((net, vec![NodeIdx(ni as u32)], iface.span));
                    }
                }
            }
        }
        let degree: Vec<usize> = adj.iter().map(|a| a.len()).collect();
        let stub_peer = |v: NodeIdx| (degree[v.0 as usize] == 1).then(|| adj[v.0 as usize][0]);
        // Group prefixes by anchor. `except[x]` lists the prefixes whose
        // next hop at `x` is not the group's: a replaced stub's own prefix
        // (none: on-link) and, at its neighbour, the route to the stub.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut anchors: Vec<Vec<NodeIdx>> = Vec::new();
        let mut group_of_anchor: HashMap<Vec<NodeIdx>, usize> = HashMap::new();
        let mut group_of = vec![0usize; prefixes.len()];
        let mut except: Vec<Vec<(usize, Option<Adj>)>> = vec![Vec::new(); n];
        for (pi, (_, on, _)) in prefixes.iter().enumerate() {
            let mut anchor = on.clone();
            if let [v] = on[..]
                && let Some(a) = stub_peer(v)
            {
                anchor = vec![a.node];
                except[v.0 as usize].push((pi, None));
                let back = Adj {
                    node: v,
                    local: a.remote,
                    remote: a.local,
                };
                except[a.node.0 as usize].push((pi, Some(back)));
            } else if on.len() > 1 {
                // A stub linked to another node of the prefix: drop it.
                let keep: Vec<NodeIdx> = on
                    .iter()
                    .copied()
                    .filter(|&v| {
                        !stub_peer(v)
                            .is_some_and(|a| on.contains(&a.node) && degree[a.node.0 as usize] != 1)
                    })
                    .collect();
                if keep.len() < on.len() {
                    for &v in on.iter().filter(|v| !keep.contains(v)) {
                        except[v.0 as usize].push((pi, None));
                    }
                    anchor = keep;
                }
            }
            anchor.sort_unstable();
            let g = *group_of_anchor.entry(anchor.clone()).or_insert_with(|| {
                groups.push(Vec::new());
                anchors.push(anchor);
                groups.len() - 1
            });
            groups[g].push(pi);
            group_of[pi] = g;
        }
        // Stubs route everything through their one neighbour: they need
        // only how many prefixes they reach (their component's, not their own).
        let mut bfs = Bfs::new(n);
        let mut comp = vec![u32::MAX; n];
        let mut comps = 0;
        for s in 0..n {
            if comp[s] == u32::MAX {
                bfs.run(&adj, [NodeIdx(s as u32)]);
                for &t in &bfs.touched {
                    comp[t] = comps;
                }
                comps += 1;
            }
        }
        let mut comp_prefixes = vec![0usize; comps as usize];
        let mut own = vec![0usize; n];
        for (_, on, _) in &prefixes {
            comp_prefixes[comp[on[0].0 as usize] as usize] += 1;
            for v in on {
                own[v.0 as usize] += 1;
            }
        }
        // Per core node: the next hop towards each group it is not on. The
        // searches skip stubs, so they cost the core, not the hosts.
        let mut via: Vec<Vec<(usize, Adj)>> = vec![Vec::new(); n];
        for (g, anchor) in anchors.iter().enumerate() {
            bfs.run_core(&adj, anchor.iter().copied());
            for &x in &bfs.touched {
                if bfs.dist[x] == 0 {
                    continue;
                }
                if let Some(a) = bfs.next_hop(&adj, NodeIdx(x as u32)) {
                    via[x].push((g, a));
                }
            }
        }
        // Count, per node, how many prefixes each neighbour is the next hop
        // for; mark the neighbours that forward for others.
        let mut forwards = vec![false; n];
        let mut counts: Vec<Vec<usize>> = adj.iter().map(|a| vec![0; a.len()]).collect();
        let pos = |x: usize, a: Adj| adj[x].binary_search(&a).unwrap_or(0);
        for x in 0..n {
            if degree[x] == 1 {
                let nb = adj[x][0];
                let reached = comp_prefixes[comp[x] as usize] - own[x];
                counts[x][0] = reached;
                let on_link = link_prefixes(m, x, nb)
                    .into_iter()
                    .flatten()
                    .filter_map(|net| by_prefix.get(&net))
                    .filter(|&&p| !prefixes[p].1.contains(&NodeIdx(x as u32)))
                    .count();
                if reached > on_link {
                    forwards[nb.node.0 as usize] = true;
                }
                continue;
            }
            for &(g, a) in &via[x] {
                // Prefixes of the group that leave through `a` from `x`: all
                // but the exceptions at `x`.
                let excepted = except[x].iter().filter(|(p, _)| group_of[*p] == g).count();
                counts[x][pos(x, a)] += groups[g].len() - excepted;
                if forwards[a.node.0 as usize] {
                    continue;
                }
                let mut skip: Vec<usize> = except[x]
                    .iter()
                    .filter(|(p, _)| group_of[*p] == g)
                    .map(|(p, _)| *p)
                    .collect();
                for net in link_prefixes(m, x, a).into_iter().flatten() {
                    if let Some(&p) = by_prefix.get(&net)
                        && group_of[p] == g
                        && !skip.contains(&p)
                    {
                        skip.push(p);
                    }
                }
                if groups[g].len() > skip.len() {
                    forwards[a.node.0 as usize] = true;
                }
            }
            for &(p, a) in &except[x] {
                let Some(a) = a else { continue };
                counts[x][pos(x, a)] += 1;
                if !forwards[a.node.0 as usize]
                    && !link_prefixes(m, x, a).contains(&Some(prefixes[p].0))
                {
                    forwards[a.node.0 as usize] = true;
                }
            }
        }
        // Defaults: the most used next hop, ties to the first declared; only
        // where it saves a route (two prefixes or more), or at a node with a
        // single neighbour (a host), which has nothing but its default.
        let mut default: Vec<Option<(Adj, usize)>> = (0..n)
            .map(|x| {
                let (i, &c) = counts[x]
                    .iter()
                    .enumerate()
                    .max_by(|(i, a), (j, b)| a.cmp(b).then(j.cmp(i)))?;
                (c >= 2 || (c == 1 && degree[x] == 1)).then(|| (adj[x][i], c))
            })
            .collect();
        break_default_loops(&mut default, &degree);
        // Explicit routes: prefixes whose next hop differs from what the
        // node would do without the route. With nested prefixes that is the
        // route of the closest enclosing prefix the node knows.
        let parents = enclosing(&prefixes);
        let nested = parents.iter().any(Option::is_some);
        let mut routes: Vec<Vec<Route>> = vec![Vec::new(); n];
        let mut mac_errors: Vec<(NodeIdx, u32)> = Vec::new();
        let mut hop_of: HashMap<usize, Option<Adj>> = HashMap::new();
        for x in 0..n {
            let d = default[x].map(|(a, _)| a);
            // (prefix, next hop) of every prefix the node routes.
            let mut all: Vec<(usize, Adj)> = Vec::new();
            let emit = |p: usize, a: Adj, all: &mut Vec<(usize, Adj)>| {
                if nested || Some(a) != d {
                    all.push((p, a));
                }
            };
            if degree[x] == 1 && (nested || d.is_none()) {
                // A stub routes its component's prefixes (not its own) to
                // its neighbour; explicit routes only where the default does
                // not do it (no default, or inside its own prefix).
                let nb = adj[x][0];
                for (p, (_, on, _)) in prefixes.iter().enumerate() {
                    if comp[on[0].0 as usize] == comp[x] && !on.contains(&NodeIdx(x as u32)) {
                        emit(p, nb, &mut all);
                    }
                }
            }
            if degree[x] != 1 {
                for &(g, a) in &via[x] {
                    if !nested && Some(a) == d {
                        continue;
                    }
                    for &p in &groups[g] {
                        if !except[x].iter().any(|(q, _)| *q == p) {
                            emit(p, a, &mut all);
                        }
                    }
                }
                for &(p, a) in &except[x] {
                    if let Some(a) = a {
                        emit(p, a, &mut all);
                    }
                }
            }
            if nested {
                hop_of.clear();
                for &(p, a) in &all {
                    hop_of.insert(p, Some(a));
                }
                for iface in &m.nodes[x].interfaces {
                    if let Some(&p) = iface.address.and_then(|a| by_prefix.get(&a.trunc())) {
                        hop_of.insert(p, None);
                    }
                }
                all.retain(|&(p, a)| {
                    let mut up = parents[p];
                    while let Some(q) = up {
                        if let Some(h) = hop_of.get(&q) {
                            return *h != Some(a);
                        }
                        up = parents[q];
                    }
                    Some(a) != d
                });
            }
            let mut kept: Vec<(usize, Ipv6Net, Adj)> = all
                .into_iter()
                .map(|(p, a)| (p, prefixes[p].0, a))
                .collect();
            if kept.len() > 1 {
                aggregate(&mut kept, &by_prefix);
            }
            kept.sort_unstable_by_key(|&(order, _, _)| order);
            let mut r = Vec::with_capacity(kept.len() + 1);
            if let Some(a) = d {
                let any = Ipv6Net::new(Ipv6Addr::UNSPECIFIED, 0).expect("::/0 is valid");
                r.push(self.route(m, x, a, any, &mut mac_errors));
            }
            for (_, net, a) in kept {
                r.push(self.route(m, x, a, net, &mut mac_errors));
            }
            routes[x] = r;
        }
        for (x, r) in routes.into_iter().enumerate() {
            m.nodes[x].routes = r;
            m.nodes[x].forwards = forwards[x];
        }
    }

    fn route(
        &mut self,
        m: &Model,
        x: usize,
        a: Adj,
        prefix: Ipv6Net,
        errs: &mut Vec<(NodeIdx, u32)>,
    ) -> Route {
        let me = &m.nodes[x];
        let peer = &m.nodes[a.node.0 as usize];
        let pif = &peer.interfaces[a.remote as usize];
        let address = match peer.kind {
            NodeKind::Linux => pif.address.map(|p| p.addr()),
            _ => pif.mac.map(link_local),
        };
        let needs_mac = match (me.kind, peer.kind) {
            (NodeKind::Linux, NodeKind::Linux) => false,
            (NodeKind::Linux, _) => pif.mac.is_none(),
            (_, NodeKind::Linux) => pif.mac.is_none(),
            _ => false,
        };
        if needs_mac && !pif.broken && !errs.contains(&(NodeIdx(x as u32), a.local)) {
            errs.push((NodeIdx(x as u32), a.local));
            let (what, hint) = if me.kind == NodeKind::Linux {
                (
                    format!(
                        "port {} of `{}` has no `mac`, but `{}` routes through it",
                        pif.name, peer.name, me.name
                    ),
                    "a Linux host reaches a switch through the link-local address derived from the port's MAC: add `mac MAC` to the port",
                )
            } else {
                (
                    format!(
                        "interface `{}` of `{}` has no `mac`, but switch `{}` forwards to it",
                        pif.name, peer.name, me.name
                    ),
                    "a switch rewrites the destination MAC to its next hop's: add `mac MAC` to the interface",
                )
            };
            self.diags
                .push(err(Code::E0023NextHopMac, pif.span, what).hint(hint));
        }
        Route {
            prefix,
            iface: a.local,
            next_hop: NextHop {
                address,
                mac: pif.mac,
                node: a.node,
            },
        }
    }
}

/// Bytes of a CLT Hop-by-Hop header with `prealloc` bytes of node data, as
/// it goes on the wire (`p4src/README.md`, `clt-wire`'s `HbhBuilder`):
/// plain (what a switch or the kernel's encap route inserts) `16 + data`, or
/// with the CLT option first (what the CLT socket API inserts) `40 + data`,
/// plus PadN(4) when the node data is 8n+4 bytes long.
pub fn hbh_len(prealloc: u32, clt_option: bool) -> u32 {
    let fixed = if clt_option {
        HBH_FIXED + CLT_OPTION_ALIGNED
    } else {
        HBH_FIXED
    };
    (fixed + prealloc).div_ceil(8) * 8
}

/// The smallest packet carrying the trace: IPv6 header, the Hop-by-Hop
/// header ([`hbh_len`], with the CLT option when `context_w3c`) and a TCP
/// header.
pub fn packet_floor(prealloc: u32, context_w3c: bool) -> u32 {
    IPV6_TCP + hbh_len(prealloc, context_w3c)
}

/// Removes default routes until following them from any node ends at a node
/// without one: a packet to an address outside the fabric is then dropped
/// there instead of looping until its hop limit runs out. In each loop the
/// default that saves the fewest routes goes (a node with one neighbour keeps
/// its default if any other can go; ties: the node declared first); that
/// node gets explicit routes instead.
fn break_default_loops(default: &mut [Option<(Adj, usize)>], degree: &[usize]) {
    const NEW: u8 = 0;
    const ON_WALK: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; default.len()];
    let mut walk: Vec<usize> = Vec::new();
    for s in 0..default.len() {
        walk.clear();
        let mut x = s;
        while state[x] == NEW {
            state[x] = ON_WALK;
            walk.push(x);
            match default[x] {
                Some((a, _)) => x = a.node.0 as usize,
                None => break,
            }
        }
        if state[x] == ON_WALK && default[x].is_some() {
            // `x` is on the walk again: the walk from `x` on is a loop.
            let start = walk.iter().position(|&w| w == x).unwrap_or(0);
            if let Some(&cut) = walk[start..]
                .iter()
                .min_by_key(|&&w| (degree[w] == 1, default[w].map_or(0, |(_, c)| c), w))
            {
                default[cut] = None;
            }
        }
        for &w in &walk {
            state[w] = DONE;
        }
    }
}

/// Merges routes of sibling prefixes (the two halves of one supernet) with
/// the same next hop into the supernet, as long as it lasts. Exact: the
/// supernet is their union, so every address it covers went to that next hop
/// before. A supernet that is a fabric prefix itself, or `::/0`, is never
/// made. Each route is `(order, prefix, next hop)`; a merged one keeps the
/// smaller order.
fn aggregate(routes: &mut Vec<(usize, Ipv6Net, Adj)>, fabric: &HashMap<Ipv6Net, usize>) {
    let mut map: HashMap<Ipv6Net, (usize, Adj)> =
        routes.iter().map(|&(o, net, a)| (net, (o, a))).collect();
    let mut work: Vec<Ipv6Net> = routes.iter().map(|r| r.1).collect();
    let mut merged = false;
    while let Some(p) = work.pop() {
        let Some(&(order, hop)) = map.get(&p) else {
            continue;
        };
        let len = p.prefix_len();
        if len <= 1 {
            continue;
        }
        let Some(sup) = p.supernet() else { continue };
        let sibling_addr = u128::from(p.network()) ^ (1u128 << (128 - u32::from(len)));
        let Ok(sibling) = Ipv6Net::new(Ipv6Addr::from(sibling_addr), len) else {
            continue;
        };
        let Some(&(order2, hop2)) = map.get(&sibling) else {
            continue;
        };
        if hop2 != hop || fabric.contains_key(&sup) || map.contains_key(&sup) {
            continue;
        }
        map.remove(&p);
        map.remove(&sibling);
        map.insert(sup, (order.min(order2), hop));
        work.push(sup);
        merged = true;
    }
    if merged {
        *routes = map.into_iter().map(|(net, (o, a))| (o, net, a)).collect();
    }
}

/// For each prefix, the closest other prefix of the list that contains it.
fn enclosing(prefixes: &[(Ipv6Net, Vec<NodeIdx>, Span)]) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..prefixes.len()).collect();
    order.sort_unstable_by_key(|&i| (prefixes[i].0.network(), prefixes[i].0.prefix_len()));
    let mut parent = vec![None; prefixes.len()];
    let mut open: Vec<usize> = Vec::new();
    for i in order {
        let net = prefixes[i].0;
        while let Some(&top) = open.last() {
            if prefixes[top].0.contains(&net) {
                break;
            }
            open.pop();
        }
        parent[i] = open.last().copied();
        open.push(i);
    }
    parent
}

/// The prefixes of the link from `x` through `a` (both ends' addresses).
fn link_prefixes(m: &Model, x: usize, a: Adj) -> [Option<Ipv6Net>; 2] {
    let mine = m.nodes[x].interfaces[a.local as usize].address;
    let theirs = m.nodes[a.node.0 as usize].interfaces[a.remote as usize].address;
    [mine.map(|p| p.trunc()), theirs.map(|p| p.trunc())]
}

fn has_short_id(file: &ast::File, name: &str) -> bool {
    file.items.iter().any(|i| match i {
        Item::Node(n) if n.name.text == name => n
            .stmts
            .iter()
            .any(|s| matches!(s, NodeStmt::Id { wide: false, .. })),
        _ => false,
    })
}

/// Fields a node kind writes as all-ones because it cannot supply them.
pub fn cannot_fill(kind: NodeKind) -> &'static [TraceField] {
    match kind {
        NodeKind::Linux => &[
            TraceField::TransitDelay,
            TraceField::ChecksumComplement,
            TraceField::BufferOccupancy,
        ],
        NodeKind::Bmv2 => &[TraceField::ChecksumComplement, TraceField::BufferOccupancy],
        NodeKind::Tofino => &[TraceField::ChecksumComplement],
    }
}

pub fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Linux => "linux",
        NodeKind::Bmv2 => "bmv2",
        NodeKind::Tofino => "tofino",
    }
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The EUI-64 link-local address of a MAC (RFC 4291 appendix A).
pub fn link_local(mac: Mac) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

fn build_graph(nodes: &[MNode], links: &[MLink]) -> UnGraph<NodeIdx, u32> {
    let mut g = UnGraph::with_capacity(nodes.len(), links.len());
    for i in 0..nodes.len() {
        g.add_node(NodeIdx(i as u32));
    }
    for (li, l) in links.iter().enumerate() {
        g.add_edge(
            NodeIndex::new(l.a.node.0 as usize),
            NodeIndex::new(l.b.node.0 as usize),
            li as u32,
        );
    }
    g
}

/// One neighbour of a node: through which local interface, to which remote one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Adj {
    node: NodeIdx,
    local: u32,
    remote: u32,
}

/// Neighbours per node, sorted (by node, then interface) for tie-breaks.
fn adjacency(graph: &UnGraph<NodeIdx, u32>, nodes: &[MNode]) -> Vec<Vec<Adj>> {
    let mut adj = vec![Vec::new(); nodes.len()];
    for (x, node) in nodes.iter().enumerate() {
        for (li, iface) in node.interfaces.iter().enumerate() {
            if let Some(peer) = iface.peer {
                adj[x].push(Adj {
                    node: peer.node,
                    local: li as u32,
                    remote: peer.iface,
                });
            }
        }
        adj[x].sort_unstable();
    }
    // The graph is the source of truth for which links exist.
    debug_assert_eq!(
        adj.iter().map(Vec::len).sum::<usize>(),
        graph.edge_count() * 2
    );
    adj
}

/// Shortest-path trees towards policy destinations, kept per anchor: the
/// destination, or its neighbour when it has only one (every path to a host
/// goes through its switch), so policies to the hosts of one leaf share one
/// search.
struct Trees {
    bfs: Bfs,
    dist: HashMap<NodeIdx, Vec<u32>>,
}

impl Trees {
    fn new(n: usize) -> Trees {
        Trees {
            bfs: Bfs::new(n),
            dist: HashMap::new(),
        }
    }

    /// The shortest path from `from` to `to`, ties to the neighbour declared
    /// first at each node; `None` when they are not connected.
    fn path(&mut self, adj: &[Vec<Adj>], from: NodeIdx, to: NodeIdx) -> Option<Vec<Hop>> {
        let stub = (adj[to.0 as usize].len() == 1).then(|| adj[to.0 as usize][0]);
        let anchor = stub.map_or(to, |a| a.node);
        let Trees { bfs, dist } = self;
        let dist = dist.entry(anchor).or_insert_with(|| {
            bfs.run_core(adj, [anchor]);
            let mut d = vec![u32::MAX; adj.len()];
            for &t in &bfs.touched {
                d[t] = bfs.dist[t];
            }
            d
        });
        let mut path = Vec::new();
        let mut cur = from;
        let mut ingress = None;
        while cur != to {
            let here = &adj[cur.0 as usize];
            if path.len() > adj.len() {
                return None;
            }
            let a = if stub.is_some_and(|s| s.node == cur) {
                here.iter().find(|b| b.node == to).copied()?
            } else if let [only] = here[..] {
                // A stub `from` (the core search skips it): its only way.
                only
            } else {
                let want = dist[cur.0 as usize].checked_sub(1)?;
                here.iter()
                    .find(|b| dist[b.node.0 as usize] == want)
                    .copied()?
            };
            path.push(Hop {
                node: cur,
                ingress,
                egress: Some(a.local),
            });
            ingress = Some(a.remote);
            cur = a.node;
        }
        path.push(Hop {
            node: to,
            ingress,
            egress: None,
        });
        Some(path)
    }
}

/// A reusable breadth-first search (unit link costs).
struct Bfs {
    dist: Vec<u32>,
    touched: Vec<usize>,
    queue: std::collections::VecDeque<usize>,
}

impl Bfs {
    fn new(n: usize) -> Bfs {
        Bfs {
            dist: vec![u32::MAX; n],
            touched: Vec::new(),
            queue: Default::default(),
        }
    }

    fn run(&mut self, adj: &[Vec<Adj>], sources: impl IntoIterator<Item = NodeIdx>) {
        self.search(adj, sources, false);
    }

    /// Like `run`, but never enters a node with a single neighbour (a stub:
    /// no shortest path goes through one), so the search costs the size of
    /// the fabric's core, not of all its hosts. Sources are always settled.
    fn run_core(&mut self, adj: &[Vec<Adj>], sources: impl IntoIterator<Item = NodeIdx>) {
        self.search(adj, sources, true);
    }

    fn search(
        &mut self,
        adj: &[Vec<Adj>],
        sources: impl IntoIterator<Item = NodeIdx>,
        skip_stubs: bool,
    ) {
        for &t in &self.touched {
            self.dist[t] = u32::MAX;
        }
        self.touched.clear();
        for s in sources {
            let s = s.0 as usize;
            if self.dist[s] == u32::MAX {
                self.dist[s] = 0;
                self.touched.push(s);
                self.queue.push_back(s);
            }
        }
        while let Some(x) = self.queue.pop_front() {
            let d = self.dist[x] + 1;
            for a in &adj[x] {
                let y = a.node.0 as usize;
                if self.dist[y] == u32::MAX && !(skip_stubs && adj[y].len() <= 1) {
                    self.dist[y] = d;
                    self.touched.push(y);
                    self.queue.push_back(y);
                }
            }
        }
    }

    /// The neighbour one step closer to the sources: lowest node, then
    /// interface, among the closest.
    fn next_hop(&self, adj: &[Vec<Adj>], x: NodeIdx) -> Option<Adj> {
        let want = self.dist[x.0 as usize].checked_sub(1)?;
        adj[x.0 as usize]
            .iter()
            .find(|a| self.dist[a.node.0 as usize] == want)
            .copied()
    }
}

/// A readable dump of the model (`cltc compile --emit model`).
pub fn print(m: &Model) -> String {
    let mut out = String::new();
    for d in &m.domains {
        let _ = writeln!(
            out,
            "domain {} namespace {} trace {} ({}) max_hops {} per_hop {} prealloc {}",
            d.name,
            d.namespace,
            d.trace_type,
            d.trace_type
                .fields()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(","),
            d.max_hops,
            d.per_hop_len,
            d.prealloc_len
        );
    }
    for n in &m.nodes {
        let doms: Vec<&str> = n
            .domains
            .iter()
            .map(|d| m.domains[d.0 as usize].name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "node {} {} id {} wide {} domains [{}]{}",
            n.name,
            kind_name(n.kind),
            n.id,
            n.id_wide,
            doms.join(", "),
            if n.forwards { " forwards" } else { "" }
        );
        for i in &n.interfaces {
            let peer = i.peer.map(|p| {
                let pn = &m.nodes[p.node.0 as usize];
                format!(" -- {}.{}", pn.name, pn.interfaces[p.iface as usize].name)
            });
            let _ = writeln!(
                out,
                "  {} id {}{}",
                i.name,
                i.if_id,
                peer.unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        out,
        "topology: {} nodes, {} links",
        m.graph.node_count(),
        m.graph.edge_count()
    );
    for p in &m.policies {
        let path: Vec<String> = p
            .path
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let role = if i == 0 {
                    "encap"
                } else if i + 1 == p.path.len() {
                    "decap"
                } else {
                    "transit"
                };
                format!("{}({role})", m.nodes[h.node.0 as usize].name)
            })
            .collect();
        let _ = writeln!(
            out,
            "policy {} domain {}: {}",
            p.name,
            m.domains[p.domain.0 as usize].name,
            path.join(" -> ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hbh_len_is_the_wire_layout() {
        // Plain: 16 + data, PadN(4) when the data is 8n+4 bytes.
        assert_eq!(hbh_len(32, false), 48);
        assert_eq!(hbh_len(36, false), 56);
        // With the CLT option first: 40 + data (+ PadN(4)).
        assert_eq!(hbh_len(32, true), 72);
        assert_eq!(hbh_len(36, true), 80);
        assert_eq!(hbh_len(MAX_PREALLOC, false), 264);
    }

    #[test]
    fn packet_floor_adds_ipv6_and_tcp() {
        assert_eq!(packet_floor(36, false), 40 + 56 + 20);
        assert_eq!(packet_floor(36, true), 40 + 80 + 20);
    }

    #[test]
    fn link_local_flips_the_universal_bit() {
        let ll = link_local([0x02, 0, 0, 0, 0x02, 0x01]);
        assert_eq!(ll, "fe80::ff:fe00:201".parse::<Ipv6Addr>().unwrap());
    }
}
