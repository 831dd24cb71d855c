//! Shared helpers of the kernel tests: clt-linux's view of a test namespace
//! (apply, teardown, snapshot) and plans compiled from `.clt` text. The
//! namespaces themselves, veth links, captures and tshark come from
//! clt-testkit.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use clt_linux::{Insertion, Options, Report, netns, nl::Netlink, plan};
pub use clt_testkit::{Netns, veth};
use cltc::artifact::linux::LinuxPlan;

/// Skips the test (visibly) unless namespaces can be made here.
macro_rules! require_root {
    () => {
        clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable())
    };
}
pub(crate) use require_root;

/// What clt-linux does inside a test namespace.
pub trait NetnsExt {
    /// Runs `f` on a thread inside this namespace.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, clt_linux::Error> + Send + 'static,
    ) -> Result<T, clt_linux::Error>;
    fn apply(&self, plan: &LinuxPlan, insertion: Insertion) -> Result<Report, clt_linux::Error>;
    fn teardown(&self, plan: &LinuxPlan) -> Result<Report, clt_linux::Error>;
    /// A snapshot of everything a plan can touch, for before/after checks.
    fn snapshot(&self, plan: &LinuxPlan) -> String;
}

impl NetnsExt for Netns {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, clt_linux::Error> + Send + 'static,
    ) -> Result<T, clt_linux::Error> {
        netns::run_in(Some(self.name()), f)
    }

    fn apply(&self, plan: &LinuxPlan, insertion: Insertion) -> Result<Report, clt_linux::Error> {
        let plan = plan.clone();
        self.run(move || {
            let nl = Netlink::open()?;
            plan::apply(&nl, &plan, &Options { insertion })
        })
    }

    fn teardown(&self, plan: &LinuxPlan) -> Result<Report, clt_linux::Error> {
        let plan = plan.clone();
        self.run(move || {
            let nl = Netlink::open()?;
            plan::teardown(&nl, &plan, false)
        })
    }

    fn snapshot(&self, plan: &LinuxPlan) -> String {
        let plan = plan.clone();
        self.run(move || {
            let nl = Netlink::open()?;
            let s = plan::KernelState::read(&nl)?;
            let mut out = String::new();
            let mut links: Vec<_> = s
                .links
                .values()
                .map(|l| (l.name.clone(), l.mtu, l.mac))
                .collect();
            links.sort();
            out += &format!("links {links:?}\n");
            let mut addrs: Vec<_> = s.addresses.iter().map(|a| (a.index, a.address)).collect();
            addrs.sort();
            out += &format!("addresses {addrs:?}\n");
            let mut neigh: Vec<_> = s
                .neighbours
                .iter()
                .filter(|n| n.state & 0x80 != 0)
                .map(|n| (n.index, n.dst, n.mac))
                .collect();
            neigh.sort();
            out += &format!("permanent neighbours {neigh:?}\n");
            let mut routes: Vec<_> = s
                .routes
                .iter()
                .filter(|r| r.table == 254)
                .map(|r| {
                    format!(
                        "{} {:?} {:?} {} {:?}",
                        r.dst, r.gateway, r.oif, r.protocol, r.encap
                    )
                })
                .collect();
            routes.sort();
            out += &format!("routes {routes:?}\n");
            out += &format!("namespaces {:?}\n", s.namespaces);
            out += &format!("schemas {:?}\n", s.schemas);
            for k in &plan.sysctls {
                out += &format!(
                    "{} = {}\n",
                    k.key,
                    clt_linux::sysctl::read(&k.key).unwrap_or_else(|e| e.to_string())
                );
            }
            Ok(out)
        })
        .unwrap()
    }
}

/// The fabric every kernel test compiles: A (`db01::1`) -- B (router) -- C
/// (`db02::2`), node ids 1, 2, 3 (wide: 0x1111111111, 0x2222222222, unset),
/// interface ids 11; 21, 22; 31.
const ABC: &str = r#"
node a linux {
    id 1
    id wide 0x1111111111
    interface eth0 { id 11 address db01::1/64 }
}
node b linux {
    id 2
    id wide 0x2222222222
    interface eth0 { id 21 address db01::2/64 }
    interface eth1 { id 22 address db02::1/64 }
}
node c linux {
    id 3
    interface eth0 { id 31 address db02::2/64 }
}
link a.eth0 -- b.eth0
link b.eth1 -- c.eth0
"#;

/// `.clt` text: `domain` (a `domain d { … }` block), the A -- B -- C fabric
/// and policy `p` in `d` from a to c with `match {matches}`.
pub fn abc_policy(domain: &str, matches: &str) -> String {
    format!(
        "{domain}\n{ABC}\npolicy p {{\n    domain d\n    from a to c\n    match {matches}\n}}\n"
    )
}

/// Compiles `.clt` text and returns the plan of each named node.
pub fn plans(src: &str, nodes: &[&str]) -> Vec<LinuxPlan> {
    let compiled = match cltc::compile_source("test.clt", src) {
        Ok(c) => c,
        Err(d) => panic!("cltc rejected the test policy: {d:?}"),
    };
    nodes
        .iter()
        .map(|name| {
            let idx = compiled
                .fabric
                .nodes
                .iter()
                .position(|n| n.name == *name)
                .unwrap_or_else(|| panic!("no node {name}"));
            cltc::backend::linux::plan(&compiled.fabric, cltc::ir::NodeIdx(idx as u32))
        })
        .collect()
}
