//! Compacted routes lose nothing: in every example and `ok` fixture, a packet
//! from any node to any interface address of another node, forwarded hop by
//! hop by longest-prefix match over the node's routes (and, on Linux, its
//! connected prefixes), reaches the node with that address along a shortest
//! path: no loop, no black hole. A packet to an address outside the fabric
//! follows default routes until a node without one: never a loop.

use cltc::ir::{Fabric, NodeIdx};
use ipnet::Ipv6Net;
use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

/// What a node does with a packet to `dst`.
#[derive(Debug, PartialEq)]
enum Step {
    /// Forward to this neighbour.
    To(NodeIdx),
    /// `dst` is on one of the node's own links.
    OnLink,
    /// No route.
    Drop,
}

fn lookup(f: &Fabric, x: NodeIdx, dst: Ipv6Addr) -> Step {
    let node = f.node(x);
    let mut best: Option<(u8, Step)> = None;
    let mut consider = |net: Ipv6Net, step: Step| {
        if net.contains(&dst) && best.as_ref().is_none_or(|(len, _)| net.prefix_len() > *len) {
            best = Some((net.prefix_len(), step));
        }
    };
    for iface in &node.interfaces {
        if let Some(a) = iface.address {
            consider(a.trunc(), Step::OnLink);
        }
    }
    for r in &node.routes {
        // The route leaves through an interface linked to its next hop.
        let peer = node.interfaces[r.iface as usize].peer;
        assert_eq!(
            peer.map(|p| p.node),
            Some(r.next_hop.node),
            "{}: route {} leaves on an interface not linked to its next hop",
            node.name,
            r.prefix
        );
        consider(r.prefix, Step::To(r.next_hop.node));
    }
    best.map_or(Step::Drop, |(_, s)| s)
}

/// Hop counts from `s` over the links.
fn distances(f: &Fabric, s: NodeIdx) -> Vec<u32> {
    let mut dist = vec![u32::MAX; f.nodes.len()];
    dist[s.0 as usize] = 0;
    let mut queue = VecDeque::from([s]);
    while let Some(x) = queue.pop_front() {
        for iface in &f.node(x).interfaces {
            if let Some(p) = iface.peer
                && dist[p.node.0 as usize] == u32::MAX
            {
                dist[p.node.0 as usize] = dist[x.0 as usize] + 1;
                queue.push_back(p.node);
            }
        }
    }
    dist
}

/// Forwards from `s` towards `dst`: the nodes visited, and how it ended.
fn forward(f: &Fabric, s: NodeIdx, dst: Ipv6Addr) -> (Vec<NodeIdx>, Step) {
    let mut at = s;
    let mut seen = vec![s];
    loop {
        match lookup(f, at, dst) {
            Step::To(next) => {
                assert!(
                    !seen.contains(&next),
                    "routing loop towards {dst} from {}: {:?}",
                    f.node(s).name,
                    seen.iter().map(|n| &f.node(*n).name).collect::<Vec<_>>()
                );
                seen.push(next);
                at = next;
            }
            end => return (seen, end),
        }
    }
}

fn check_fabric(name: &str, f: &Fabric) -> usize {
    let mut checked = 0;
    for (si, src) in f.nodes.iter().enumerate() {
        let s = NodeIdx(si as u32);
        let dist = distances(f, s);
        for (ti, dst_node) in f.nodes.iter().enumerate() {
            if ti == si || dist[ti] == u32::MAX {
                continue;
            }
            for iface in &dst_node.interfaces {
                let Some(addr) = iface.address else { continue };
                let dst = addr.addr();
                let (visited, end) = forward(f, s, dst);
                let last = *visited.last().expect("starts at the source");
                let delivered = if last.0 as usize == ti {
                    end == Step::OnLink
                } else {
                    // The last router is on the destination's link.
                    end == Step::OnLink
                        && f.node(last)
                            .interfaces
                            .iter()
                            .any(|i| i.peer.is_some_and(|p| p.node.0 as usize == ti))
                };
                let hops = visited.len() as u32 - 1 + u32::from(last.0 as usize != ti);
                assert!(
                    delivered,
                    "{name}: {} -> {} ({dst}) ends at {} with {end:?}",
                    src.name,
                    dst_node.name,
                    f.node(last).name
                );
                assert!(
                    hops == dist[ti] || hops == dist[ti] + 1,
                    "{name}: {} -> {} takes {hops} hops, the shortest path {}",
                    src.name,
                    dst_node.name,
                    dist[ti]
                );
                checked += 1;
            }
        }
        // Outside the fabric: defaults end somewhere (`forward` panics on a loop).
        let outside: Ipv6Addr = "3fff:ffff::1".parse().expect("an address");
        let _ = forward(f, s, outside);
    }
    checked
}

fn clt_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("../examples"), root.join("tests/fixtures/ok")] {
        for entry in std::fs::read_dir(&dir).expect("the directory exists") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "clt") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn compacted_routes_reach_every_address() {
    let mut total = 0;
    let mut files = 0;
    for path in clt_files() {
        let name = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        let src = std::fs::read_to_string(&path).expect("readable");
        let c = cltc::compile_source(&name, &src)
            .unwrap_or_else(|d| panic!("{}", d.render(&name, &src)));
        total += check_fabric(&name, &c.fabric);
        files += 1;
    }
    assert!(files >= 20, "only {files} files");
    assert!(total > 100, "only {total} (source, address) pairs checked");
}

#[test]
fn a_spine_has_one_route_per_prefix_behind_other_leaves() {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/leaf-spine.clt"),
    )
    .expect("readable");
    let f = cltc::compile_source("leaf-spine.clt", &src)
        .expect("compiles")
        .fabric;
    for n in &f.nodes {
        let defaults = n
            .routes
            .iter()
            .filter(|r| r.prefix.prefix_len() == 0)
            .count();
        assert!(defaults <= 1, "{} has {defaults} default routes", n.name);
        // A default never duplicates an explicit route's next hop.
        if let Some(d) = n.routes.iter().find(|r| r.prefix.prefix_len() == 0) {
            assert!(
                n.routes
                    .iter()
                    .filter(|r| r.prefix.prefix_len() > 0)
                    .all(|r| r.next_hop.node != d.next_hop.node),
                "{}: an explicit route repeats the default's next hop",
                n.name
            );
        }
    }
    let routes: usize = f.nodes.iter().map(|n| n.routes.len()).sum();
    let linked = f
        .nodes
        .iter()
        .filter(|n| n.interfaces.iter().any(|i| i.peer.is_some()))
        .count();
    let prefixes = f
        .nodes
        .iter()
        .flat_map(|n| n.interfaces.iter().filter_map(|i| i.address))
        .count();
    // Uncompacted, every linked node would route (almost) every prefix.
    assert!(
        routes < linked * prefixes / 2,
        "{routes} routes for {linked} nodes and {prefixes} prefixes"
    );
}

/// A random connected fabric of Linux routers: a spanning tree plus extra
/// links, every link its own /64, some nodes with an unlinked interface
/// whose prefix is a /64 of its own or a /48 around another link's /64.
fn random_fabric(parents: &[usize], extra: &[(usize, usize)], loops: &[(usize, u8)]) -> String {
    let n = parents.len() + 1;
    let mut links: Vec<(usize, usize)> = parents
        .iter()
        .enumerate()
        .map(|(i, &p)| (i + 1, p % (i + 1)))
        .collect();
    for &(a, b) in extra {
        let (a, b) = (a % n, b % n);
        if a != b {
            links.push((a, b));
        }
    }
    let mut ifaces: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut link_lines = Vec::new();
    for (l, &(a, b)) in links.iter().enumerate() {
        let ia = ifaces[a].len();
        ifaces[a].push(format!(
            "interface l{l} {{ id {} address 2001:db8:{l:x}::1/64 }}",
            ia + 1
        ));
        let ib = ifaces[b].len();
        ifaces[b].push(format!(
            "interface l{l} {{ id {} address 2001:db8:{l:x}::2/64 }}",
            ib + 1
        ));
        link_lines.push(format!("link r{a}.l{l} -- r{b}.l{l}"));
    }
    for &(v, kind) in loops {
        let v = v % n;
        let i = ifaces[v].len() + 1;
        let addr = match kind % 3 {
            // A /48 around link `kind`'s /64 (when that link exists).
            0 if usize::from(kind) < links.len() => format!("2001:db8:{kind:x}:ff00::9/48"),
            _ => format!("2001:db8:ff{v:02x}:{i:x}::1/64"),
        };
        if ifaces[v].iter().any(|f| f.contains(&addr)) {
            continue;
        }
        ifaces[v].push(format!(
            "interface lo{i} {{ id {} address {addr} }}",
            i + 100
        ));
    }
    let mut src = String::new();
    for (v, fs) in ifaces.iter().enumerate() {
        src.push_str(&format!("node r{v} linux {{\n    id {}\n", v + 1));
        for f in fs {
            src.push_str(&format!("    {f}\n"));
        }
        src.push_str("}\n");
    }
    for l in link_lines {
        src.push_str(&l);
        src.push('\n');
    }
    src
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn compacted_routes_reach_every_address_in_random_fabrics(
        parents in proptest::collection::vec(0usize..64, 1..12),
        extra in proptest::collection::vec((0usize..16, 0usize..16), 0..5),
        loops in proptest::collection::vec((0usize..16, 0u8..12), 0..5),
    ) {
        let src = random_fabric(&parents, &extra, &loops);
        let c = cltc::compile_source("random.clt", &src);
        // Overlapping /48s are the front end's to reject (E0028 and the like).
        proptest::prop_assume!(c.is_ok());
        let f = c.expect("assumed").fabric;
        check_fabric("random.clt", &f);
    }
}
