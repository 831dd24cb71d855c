//! Lowering: the checked [`Model`] to the backend-neutral [`ir::Fabric`].
//!
//! Cannot fail: every check happened in [`crate::model`].

use crate::ir::{self, Fabric};
use crate::model::Model;

pub fn lower(m: &Model) -> Fabric {
    Fabric {
        domains: m
            .domains
            .iter()
            .map(|d| ir::Domain {
                name: d.name.clone(),
                namespace: d.namespace,
                trace_type: d.trace_type,
                node_len: d.trace_type.node_len(),
                context_w3c: d.context_w3c,
                max_hops: d.max_hops,
                schema: d.schema.clone(),
                prealloc_len: d.prealloc_len,
                per_hop_len: d.per_hop_len,
                collector: d.collector.clone(),
                namespace_data: d.namespace_data,
                namespace_data_wide: d.namespace_data_wide,
            })
            .collect(),
        nodes: m
            .nodes
            .iter()
            .map(|n| ir::Node {
                name: n.name.clone(),
                kind: n.kind,
                id: n.id,
                id_wide: n.id_wide,
                interfaces: n
                    .interfaces
                    .iter()
                    .map(|i| ir::Interface {
                        name: i.name.clone(),
                        port: i.port,
                        if_id: i.if_id,
                        address: i.address,
                        mac: i.mac,
                        peer: i.peer,
                        mtu: i.mtu,
                    })
                    .collect(),
                p4runtime: n.p4runtime.clone(),
                domains: n.domains.clone(),
                routes: n.routes.clone(),
                roles: n.roles.clone(),
                forwards: n.forwards,
            })
            .collect(),
        links: m
            .links
            .iter()
            .map(|l| ir::Link { a: l.a, b: l.b })
            .collect(),
        policies: m
            .policies
            .iter()
            .map(|p| ir::Policy {
                name: p.name.clone(),
                domain: p.domain,
                from: p.from,
                to: p.to,
                flow: p.flow.clone(),
                sample: p.sample,
                path: p.path.clone(),
            })
            .collect(),
    }
}
