//! What the rollout tests in network namespaces share (beyond
//! clt-testkit): a namespace per node, a kernel snapshot of everything a plan can touch, and the UDP
//! sender and receiver that measure traffic during a rollout.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clt_controller::rollout::{Artifact, Compiled, Options, Phase, Step};
use clt_linux::plan::KernelState;
use clt_testkit::{Netns, veth};
use cltc::artifact::linux::LinuxPlan;

/// examples/fabric-linux.clt's nodes, and its links as (node, interface,
/// node, interface).
pub const NODES: [&str; 5] = ["web", "leaf1", "spine", "leaf2", "api"];
pub const LINKS: [(&str, &str, &str, &str); 4] = [
    ("web", "eth0", "leaf1", "down"),
    ("leaf1", "up", "spine", "p1"),
    ("spine", "p2", "leaf2", "up"),
    ("leaf2", "down", "api", "eth0"),
];

/// examples/fabric-linux.clt.
pub fn example_src() -> String {
    crate::fabric_dir::example("fabric-linux")
}

/// `src` compiled by cltc into a fresh directory, loaded as a rollout
/// input.
pub fn compile(src: &str) -> (tempfile::TempDir, Compiled) {
    crate::fabric_dir::compile("fabric.clt", src)
}

/// One network namespace per node (named after the node, unique to this
/// test), each deleted on drop.
pub struct NodeNs(HashMap<String, Netns>);

impl NodeNs {
    /// `prefix` + node for each of `nodes`.
    pub fn new<'a>(prefix: &str, nodes: impl IntoIterator<Item = &'a str>) -> NodeNs {
        let mut m = HashMap::new();
        for n in nodes {
            // Inserted one by one: a failure half-way still deletes those made.
            m.insert(n.to_string(), Netns::new(&format!("{prefix}{n}")));
        }
        NodeNs(m)
    }

    /// node -> namespace name (the rollout's `netns` option).
    pub fn names(&self) -> HashMap<String, String> {
        self.0
            .iter()
            .map(|(n, ns)| (n.clone(), ns.name().to_string()))
            .collect()
    }

    /// The veth pairs `(node, ifname, node, ifname)`.
    pub fn link(&self, links: &[(&str, &str, &str, &str)]) {
        for (a, ai, b, bi) in links {
            veth(&self[*a], ai, &self[*b], bi);
        }
    }

    /// No DAD delays: addresses are usable as soon as they are set.
    pub fn no_dad(&self, node: &str) {
        clt_linux::netns::run_in(Some(self[node].name()), || {
            clt_linux::sysctl::write("net.ipv6.conf.default.accept_dad", "0")?;
            clt_linux::sysctl::write("net.ipv6.conf.all.accept_dad", "0")
        })
        .unwrap();
    }

    /// An `eth0` in `node` with a carrier: a veth pair inside the namespace
    /// (no dummy driver needed), its far end `far0` up.
    pub fn eth0(&self, node: &str) {
        let ns = &self[node];
        ns.ip(&[
            "link", "add", "name", "eth0", "type", "veth", "peer", "name", "far0",
        ]);
        ns.ip(&["link", "set", "far0", "up"]);
    }

    /// Rollout options that configure each node in its namespace.
    pub fn options(&self) -> Options {
        Options {
            netns: self.names(),
            dry_run: false,
            insertion: clt_linux::Insertion::Auto,
            ..Default::default()
        }
    }

    /// Every node's [`kernel_snapshot`].
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(n, ns)| (n.clone(), kernel_snapshot(ns.name())))
            .collect()
    }

    /// Changes still needed on `node` to match its Linux plan in `c`
    /// (empty: it matches).
    pub fn diff(&self, c: &Compiled, node: &str) -> Vec<String> {
        let plan = linux_plan(c, node);
        clt_linux::netns::run_in(Some(self[node].name()), move || {
            let nl = clt_linux::nl::Netlink::open()?;
            let r = clt_linux::plan::diff(&nl, &plan, &clt_linux::plan::Options::default())?;
            Ok(r.changes.iter().map(|c| c.to_string()).collect())
        })
        .unwrap()
    }

    /// Asserts that every node matches its Linux plan in `c`.
    pub fn assert_matches(&self, c: &Compiled) {
        let mut nodes: Vec<&String> = self.0.keys().collect();
        nodes.sort();
        for n in nodes {
            assert_eq!(self.diff(c, n), Vec::<String>::new(), "{n}");
        }
    }
}

impl std::ops::Index<&str> for NodeNs {
    type Output = Netns;
    fn index(&self, node: &str) -> &Netns {
        self.0
            .get(node)
            .unwrap_or_else(|| panic!("no namespace for {node}"))
    }
}

/// `node`'s plan in `c`, which must be a Linux node's.
pub fn linux_plan(c: &Compiled, node: &str) -> LinuxPlan {
    match c.nodes.get(node) {
        Some(Artifact::Linux(p)) => p.clone(),
        other => panic!("{node} is not linux: {other:?}"),
    }
}

/// What a namespace's kernel holds that a plan can touch: links, global
/// addresses, main-table routes, IOAM namespaces and schemas, the IOAM and
/// forwarding sysctls.
pub fn kernel_snapshot(ns: &str) -> String {
    clt_linux::netns::run_in(Some(ns), || {
        let nl = clt_linux::nl::Netlink::open()?;
        let s = KernelState::read(&nl)?;
        let mut links: Vec<_> = s
            .links
            .values()
            .map(|l| (l.name.clone(), l.mtu, l.mac, l.is_up()))
            .collect();
        links.sort();
        // Link-local addresses and their routes come and go with the
        // carrier (asynchronously); no plan manages them.
        let ll = |a: &Ipv6Addr| a.segments()[0] & 0xffc0 == 0xfe80;
        let mut addrs: Vec<_> = s
            .addresses
            .iter()
            .filter(|a| !ll(&a.address.addr()))
            .map(|a| (a.index, a.address))
            .collect();
        addrs.sort();
        let mut routes: Vec<_> = s
            .routes
            .iter()
            .filter(|r| r.table == 254 && !ll(&r.dst.addr()))
            .map(|r| format!("{} {:?} {:?} {:?}", r.dst, r.gateway, r.oif, r.encap))
            .collect();
        routes.sort();
        let mut out = format!(
            "links {links:?}\naddresses {addrs:?}\nroutes {routes:?}\nnamespaces {:?}\nschemas {:?}\n",
            s.namespaces, s.schemas
        );
        for k in [
            "net.ipv6.conf.all.forwarding",
            "net.ipv6.ioam6_id",
            "net.ipv6.ioam6_id_wide",
        ] {
            out += &format!("{k}={}\n", clt_linux::sysctl::read(k)?);
        }
        let mut names: Vec<&String> = s.links.keys().collect();
        names.sort();
        for l in names {
            let k = format!("net.ipv6.conf.{l}.ioam6_enabled");
            if let Ok(v) = clt_linux::sysctl::read(&k) {
                out += &format!("{k}={v}\n");
            }
        }
        Ok(out)
    })
    .unwrap()
}

/// Every apply step for a policy at its encap node comes after every decap
/// and transit step of the same policy (`log`: the verified steps in order).
pub fn assert_encap_last(log: &[Step]) {
    for (i, s) in log.iter().enumerate() {
        if s.phase != Phase::Apply || s.role != "encap" {
            continue;
        }
        for p in &s.policies {
            for (j, t) in log.iter().enumerate() {
                if t.phase == Phase::Apply
                    && (t.role == "decap" || t.role == "transit")
                    && t.policies.contains(p)
                {
                    assert!(
                        j < i,
                        "step {j} ({t}) was verified after the encap step {i} ({s}) of {p}"
                    );
                }
            }
        }
    }
}

/// Sends UDP from `from_ns` to `to` until `stop`, one datagram every
/// `every`, counting the datagrams sent (each carries its sequence number);
/// with IOAM inserted (CLT socket API) once `clt` is set. Returns whether
/// IOAM was enabled.
pub fn sender(
    from_ns: String,
    to: SocketAddrV6,
    policy: cltc::artifact::linux::EncapPolicy,
    clt: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    every: Duration,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        clt_linux::netns::enter(&from_ns).unwrap();
        let sock = UdpSocket::bind("[::]:0").unwrap();
        let mut enabled = false;
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            if !enabled && clt.load(Ordering::Relaxed) {
                clt_linux::socket::enable(&sock, &policy, [7; 16], [9; 8]).unwrap();
                enabled = true;
            }
            if sock.send_to(&n.to_be_bytes(), to).is_ok() {
                n += 1;
                sent.store(n, Ordering::Relaxed);
            }
            std::thread::sleep(every);
        }
        enabled
    })
}

/// Records the sequence numbers of the datagrams arriving at `port` in `ns`
/// until `stop`.
pub fn receiver(
    ns: String,
    port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    seqs: Arc<Mutex<Vec<u64>>>,
) -> std::thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        clt_linux::netns::enter(&ns).unwrap();
        let sock = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        let record = |n: usize, buf: &[u8]| {
            if let Ok(b) = <[u8; 8]>::try_from(&buf[..n.min(8)]) {
                seqs.lock().unwrap().push(u64::from_be_bytes(b));
            }
            received.fetch_add(1, Ordering::Relaxed);
        };
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                record(n, &buf);
            }
        }
        // Drain what is queued.
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            record(n, &buf);
        }
    });
    ready_rx.recv().unwrap();
    h
}

/// How many datagrams a [`sender`] sent from sequence number `base` on, and
/// which of them its [`receiver`] never recorded; prints both under `what`.
pub fn lost(what: &str, base: u64, sent: &AtomicU64, seqs: &Mutex<Vec<u64>>) -> (u64, Vec<u64>) {
    let sent = sent.load(Ordering::Relaxed);
    let got: std::collections::BTreeSet<u64> = seqs.lock().unwrap().iter().copied().collect();
    let missing: Vec<u64> = (base..sent).filter(|n| !got.contains(n)).collect();
    eprintln!(
        "{what}: {} sent during and after the rollout, {} missing",
        sent - base,
        missing.len()
    );
    (sent - base, missing)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
