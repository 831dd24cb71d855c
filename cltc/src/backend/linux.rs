//! The Linux backend: a [`LinuxPlan`] per Linux node, and its shell form.
//!
//! The plan is what `clt-linux` applies over netlink; [`script`] is the same
//! as `sysctl` and `ip` (iproute2 >= 6.0) commands, idempotent where iproute2
//! allows it (`replace` for addresses, neighbours and routes; namespaces and
//! schemas are deleted and added again).

use crate::artifact::linux::*;
use crate::ir::{Fabric, Mac, NodeIdx, NodeKind, Role};
use std::fmt::Write as _;

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: Mac) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// The interface part of a sysctl key: sysctl writes `.` in names as `/`.
fn sysctl_if(name: &str) -> String {
    name.replace('.', "/")
}

/// The configuration plan of a Linux node.
///
/// `node` must be a Linux node of `fabric`; for another kind the plan only
/// names the node.
pub fn plan(fabric: &Fabric, node: NodeIdx) -> LinuxPlan {
    let n = fabric.node(node);
    let mut p = LinuxPlan {
        node: n.name.clone(),
        sysctls: Vec::new(),
        interfaces: Vec::new(),
        neighbors: Vec::new(),
        schemas: Vec::new(),
        namespaces: Vec::new(),
        routes: Vec::new(),
        encap: Vec::new(),
    };
    if n.kind != NodeKind::Linux {
        return p;
    }
    let in_domain = !n.domains.is_empty();
    let sysctl = |key: String, value: String| Sysctl { key, value };
    if in_domain {
        p.sysctls
            .push(sysctl("net.ipv6.ioam6_id".into(), n.id.to_string()));
        p.sysctls.push(sysctl(
            "net.ipv6.ioam6_id_wide".into(),
            n.id_wide.to_string(),
        ));
    }
    let transit = n.roles.iter().any(|r| r.role == Role::Transit);
    if n.forwards || transit {
        p.sysctls
            .push(sysctl("net.ipv6.conf.all.forwarding".into(), "1".into()));
    }
    for (i, iface) in n.interfaces.iter().enumerate() {
        p.interfaces.push(InterfaceConfig {
            name: iface.name.clone(),
            address: iface.address,
            mac: iface.mac.map(mac_string),
            mtu: Some(iface.mtu),
        });
        if !in_domain {
            continue;
        }
        let key = |leaf: &str| format!("net.ipv6.conf.{}.{leaf}", sysctl_if(&iface.name));
        // Policy packets arrive here at a transit or decapsulating node.
        let ingress = n
            .roles
            .iter()
            .any(|r| r.role != Role::Encap && r.ingress == Some(i as u32));
        if ingress {
            p.sysctls.push(sysctl(key("ioam6_enabled"), "1".into()));
        }
        p.sysctls
            .push(sysctl(key("ioam6_id"), iface.if_id.to_string()));
        p.sysctls
            .push(sysctl(key("ioam6_id_wide"), iface.if_id.to_string()));
    }
    for d in &n.domains {
        let dom = fabric.domain(*d);
        if let Some(s) = &dom.schema
            && !p.schemas.iter().any(|x| x.id == s.id)
        {
            p.schemas.push(IoamSchema {
                id: s.id,
                data: s.data.iter().map(|b| format!("{b:02x}")).collect(),
            });
        }
        if !p.namespaces.iter().any(|x| x.id == dom.namespace) {
            p.namespaces.push(IoamNamespace {
                id: dom.namespace,
                data: dom.namespace_data,
                data_wide: dom.namespace_data_wide,
                schema: dom.schema.as_ref().map(|s| s.id),
            });
        }
    }
    for r in &n.routes {
        let iface = &n.interfaces[r.iface as usize];
        p.routes.push(RouteConfig {
            dst: r.prefix,
            dev: iface.name.clone(),
            via: r.next_hop.address,
            encap: None,
        });
        if fabric.node(r.next_hop.node).kind != NodeKind::Linux
            && let (Some(address), Some(mac)) = (r.next_hop.address, r.next_hop.mac)
        {
            let nb = Neighbor {
                dev: iface.name.clone(),
                address,
                mac: mac_string(mac),
            };
            if !p.neighbors.contains(&nb) {
                p.neighbors.push(nb);
            }
        }
    }
    for role in n.roles.iter().filter(|r| r.role == Role::Encap) {
        let pol = fabric.policy(role.policy);
        let dom = fabric.domain(pol.domain);
        let Some(egress) = role.egress else { continue };
        let Some(next) = pol.path.get(1) else {
            continue;
        };
        let next_node = fabric.node(next.node);
        let via = next.ingress.and_then(|i| {
            let nif = &next_node.interfaces[i as usize];
            match next_node.kind {
                NodeKind::Linux => nif.address.map(|a| a.addr()),
                _ => nif.mac.map(crate::model::link_local),
            }
        });
        let encap = Ioam6Encap {
            mode: Ioam6Mode::Inline,
            tundst: None,
            trace_type: dom.trace_type,
            namespace: dom.namespace,
            size: dom.prealloc_len,
            freq_k: pol.sample.k,
            freq_n: pol.sample.n,
        };
        let route = RouteConfig {
            dst: pol.flow.dst,
            dev: n.interfaces[egress as usize].name.clone(),
            via,
            encap: Some(encap),
        };
        // One kernel route per prefix: the first policy for a dst wins.
        match p.routes.iter_mut().find(|r| r.dst == pol.flow.dst) {
            Some(r) if r.encap.is_none() => *r = route,
            Some(_) => {}
            None => p.routes.push(route),
        }
        p.encap.push(EncapPolicy {
            policy: pol.name.clone(),
            domain: dom.name.clone(),
            namespace: dom.namespace,
            trace_type: dom.trace_type,
            size: dom.prealloc_len,
            context_w3c: dom.context_w3c,
            dst: pol.flow.dst,
            src: pol.flow.src,
            proto: pol.flow.proto,
            dport: pol.flow.dport,
            sport: pol.flow.sport,
            freq_k: pol.sample.k,
            freq_n: pol.sample.n,
            collector: dom.collector.clone(),
        });
    }
    p
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The plan as a POSIX shell script of `sysctl` and `ip` commands.
pub fn script(plan: &LinuxPlan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/sh");
    let _ = writeln!(
        s,
        "# linux node `{}`: generated by cltc, do not edit",
        plan.node
    );
    let _ = writeln!(
        s,
        "# needs iproute2 >= 6.0 and a kernel with IOAM6 (and the ioam6 route encapsulation for encap routes)"
    );
    let _ = writeln!(s, "set -e");
    if !plan.interfaces.is_empty() {
        let _ = writeln!(s, "\n# interfaces");
    }
    for i in &plan.interfaces {
        let dev = shell_quote(&i.name);
        if let Some(mac) = &i.mac {
            let _ = writeln!(s, "ip link set dev {dev} address {mac}");
        }
        if let Some(mtu) = i.mtu {
            let _ = writeln!(s, "ip link set dev {dev} mtu {mtu}");
        }
        if let Some(a) = i.address {
            let _ = writeln!(s, "ip -6 addr replace {a} dev {dev} nodad");
        }
        let _ = writeln!(s, "ip link set dev {dev} up");
    }
    if !plan.sysctls.is_empty() {
        let _ = writeln!(s, "\n# sysctls");
    }
    for c in &plan.sysctls {
        let _ = writeln!(
            s,
            "sysctl -qw {}={}",
            shell_quote(&c.key),
            shell_quote(&c.value)
        );
    }
    if !plan.neighbors.is_empty() {
        let _ = writeln!(
            s,
            "\n# next hops that do not answer neighbour discovery (switch ports)"
        );
    }
    for n in &plan.neighbors {
        let _ = writeln!(
            s,
            "ip -6 neigh replace {} lladdr {} dev {} nud permanent",
            n.address,
            n.mac,
            shell_quote(&n.dev)
        );
    }
    if !plan.schemas.is_empty() || !plan.namespaces.is_empty() {
        let _ = writeln!(s, "\n# IOAM namespaces and schemas");
    }
    for sc in &plan.schemas {
        let bytes: Vec<u8> = (0..sc.data.len() / 2)
            .filter_map(|i| u8::from_str_radix(&sc.data[2 * i..2 * i + 2], 16).ok())
            .collect();
        // The kernel pads the data with zeros itself.
        let text: String = String::from_utf8_lossy(&bytes)
            .trim_end_matches('\0')
            .to_string();
        let _ = writeln!(s, "ip ioam schema del {} 2>/dev/null || true", sc.id);
        let _ = writeln!(s, "ip ioam schema add {} {}", sc.id, shell_quote(&text));
    }
    for ns in &plan.namespaces {
        let _ = writeln!(s, "ip ioam namespace del {} 2>/dev/null || true", ns.id);
        let mut cmd = format!("ip ioam namespace add {}", ns.id);
        if let Some(d) = ns.data {
            let _ = write!(cmd, " data {d:#010x}");
        }
        if let Some(w) = ns.data_wide {
            let _ = write!(cmd, " wide {w:#018x}");
        }
        let _ = writeln!(s, "{cmd}");
        if let Some(sc) = ns.schema {
            let _ = writeln!(s, "ip ioam namespace set {} schema {sc}", ns.id);
        }
    }
    if !plan.routes.is_empty() {
        let _ = writeln!(s, "\n# routes");
    }
    for r in &plan.routes {
        let mut cmd = format!("ip -6 route replace {}", r.dst);
        if let Some(e) = &r.encap {
            cmd.push_str(" encap ioam6");
            if (e.freq_k, e.freq_n) != (1, 1) {
                let _ = write!(cmd, " freq {}/{}", e.freq_k, e.freq_n);
            }
            let mode = match e.mode {
                Ioam6Mode::Inline => "inline",
                Ioam6Mode::Encap => "encap",
                Ioam6Mode::Auto => "auto",
            };
            let _ = write!(cmd, " mode {mode}");
            if let Some(t) = e.tundst {
                let _ = write!(cmd, " tundst {t}");
            }
            let _ = write!(
                cmd,
                " trace prealloc type {:#08x} ns {} size {}",
                e.trace_type.bits(),
                e.namespace,
                e.size
            );
        }
        if let Some(v) = r.via {
            let _ = write!(cmd, " via {v}");
        }
        let _ = write!(cmd, " dev {}", shell_quote(&r.dev));
        let _ = writeln!(s, "{cmd}");
    }
    if !plan.encap.is_empty() {
        let _ = writeln!(
            s,
            "\n# policies this node encapsulates (applied by the CLT socket API or the routes above)"
        );
    }
    for e in &plan.encap {
        let _ = writeln!(
            s,
            "# {}: domain {} ns {} type {:#08x} size {} dst {}{}{}{}{} freq {}/{}{}",
            e.policy,
            e.domain,
            e.namespace,
            e.trace_type.bits(),
            e.size,
            e.dst,
            e.src.map(|x| format!(" src {x}")).unwrap_or_default(),
            e.proto.map(|x| format!(" proto {x}")).unwrap_or_default(),
            e.dport.map(|x| format!(" dport {x}")).unwrap_or_default(),
            e.sport.map(|x| format!(" sport {x}")).unwrap_or_default(),
            e.freq_k,
            e.freq_n,
            if e.context_w3c { " context w3c" } else { "" }
        );
    }
    s
}
