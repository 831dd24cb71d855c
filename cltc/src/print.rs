//! Readable dumps of the stages (`cltc compile --emit ...`, snapshots).

use crate::ir::{Fabric, Hop, Interface, NodeKind, Role};
use crate::model::kind_name;
use std::fmt::Write as _;

fn iface_ref(f: &Fabric, e: crate::ir::Endpoint) -> String {
    format!("{}.{}", f.node(e.node).name, f.interface(e).name)
}

fn iface_line(f: &Fabric, kind: NodeKind, i: &Interface) -> String {
    let mut s = format!(
        "{} {} id {}",
        if kind == NodeKind::Linux {
            "interface"
        } else {
            "port"
        },
        i.name,
        i.if_id
    );
    if let Some(a) = i.address {
        let _ = write!(s, " address {a}");
    }
    if let Some(m) = i.mac {
        let _ = write!(s, " mac {}", crate::backend::linux::mac_string(m));
    }
    let _ = write!(s, " mtu {}", i.mtu);
    if let Some(p) = i.peer {
        let _ = write!(s, " -- {}", iface_ref(f, p));
    }
    s
}

/// The IR as text (`--emit ir`).
pub fn ir(f: &Fabric) -> String {
    let mut out = String::new();
    for d in &f.domains {
        let _ = writeln!(out, "domain {}", d.name);
        let _ = write!(out, "  namespace {}", d.namespace);
        if let Some(x) = d.namespace_data {
            let _ = write!(out, " data {x:#010x}");
        }
        if let Some(x) = d.namespace_data_wide {
            let _ = write!(out, " wide {x:#018x}");
        }
        out.push('\n');
        let fields: Vec<&str> = d.trace_type.fields().map(|f| f.name()).collect();
        let _ = writeln!(out, "  trace {} = {}", d.trace_type, fields.join(", "));
        let _ = writeln!(
            out,
            "  node_len {} per_hop {} bytes, max_hops {}, prealloc {} bytes",
            d.node_len, d.per_hop_len, d.max_hops, d.prealloc_len
        );
        if let Some(s) = &d.schema {
            let hex: String = s.data.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "  schema {} data {hex}", s.id);
        }
        let _ = writeln!(
            out,
            "  context {}",
            if d.context_w3c { "w3c" } else { "none" }
        );
        let _ = writeln!(out, "  collector {}", d.collector);
    }
    for n in &f.nodes {
        let _ = write!(
            out,
            "node {} {} id {} wide {}",
            n.name,
            kind_name(n.kind),
            n.id,
            n.id_wide
        );
        if let Some(p) = &n.p4runtime {
            let _ = write!(out, " p4runtime {} device {}", p.address, p.device_id);
        }
        if n.forwards {
            out.push_str(" forwards");
        }
        out.push('\n');
        if !n.domains.is_empty() {
            let names: Vec<&str> = n
                .domains
                .iter()
                .map(|d| f.domain(*d).name.as_str())
                .collect();
            let _ = writeln!(out, "  domains {}", names.join(", "));
        }
        for i in &n.interfaces {
            let _ = writeln!(out, "  {}", iface_line(f, n.kind, i));
        }
        for r in &n.routes {
            let _ = write!(
                out,
                "  route {} dev {}",
                r.prefix, n.interfaces[r.iface as usize].name
            );
            if let Some(a) = r.next_hop.address {
                let _ = write!(out, " via {a}");
            }
            if let Some(m) = r.next_hop.mac {
                let _ = write!(out, " lladdr {}", crate::backend::linux::mac_string(m));
            }
            let _ = writeln!(out, " ({})", f.node(r.next_hop.node).name);
        }
        for r in &n.roles {
            let role = match r.role {
                Role::Encap => "encap",
                Role::Transit => "transit",
                Role::Decap => "decap",
            };
            let _ = write!(out, "  role {} {role}", f.policy(r.policy).name);
            if let Some(i) = r.ingress {
                let _ = write!(out, " in {}", n.interfaces[i as usize].name);
            }
            if let Some(e) = r.egress {
                let _ = write!(out, " out {}", n.interfaces[e as usize].name);
            }
            out.push('\n');
        }
    }
    for l in &f.links {
        let _ = writeln!(out, "link {} -- {}", iface_ref(f, l.a), iface_ref(f, l.b));
    }
    for p in &f.policies {
        let _ = writeln!(
            out,
            "policy {} domain {} from {} to {} sample {}/{}",
            p.name,
            f.domain(p.domain).name,
            f.node(p.from).name,
            f.node(p.to).name,
            p.sample.k,
            p.sample.n
        );
        let m = &p.flow;
        let _ = write!(out, "  match dst {}", m.dst);
        if let Some(s) = m.src {
            let _ = write!(out, " src {s}");
        }
        if let Some(x) = m.proto {
            let _ = write!(out, " proto {x}");
        }
        if let Some(x) = m.dport {
            let _ = write!(out, " dport {x}");
        }
        if let Some(x) = m.sport {
            let _ = write!(out, " sport {x}");
        }
        out.push('\n');
        let _ = writeln!(out, "  path {}", path(f, &p.path));
    }
    out
}

/// A path as `a[eth0] -> [1]b[2] -> [eth0]c`.
pub fn path(f: &Fabric, hops: &[Hop]) -> String {
    let parts: Vec<String> = hops
        .iter()
        .map(|h| {
            let n = f.node(h.node);
            let name = |i: Option<u32>| {
                i.map(|i| format!("[{}]", n.interfaces[i as usize].name))
                    .unwrap_or_default()
            };
            format!("{}{}{}", name(h.ingress), n.name, name(h.egress))
        })
        .collect();
    parts.join(" -> ")
}
