//! Shared helpers of the kernel tests: namespaces with Drop guards, veth
//! links, plans compiled from `.clt` text, a tshark capture and a pcap reader.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use clt_linux::{Insertion, Options, Report, netns, nl::Netlink, plan};
use cltc::artifact::linux::LinuxPlan;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why the kernel tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY-free check: /proc/self/status has the effective uid.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("1");
    if euid != "0" {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 `ip` is not installed".into());
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(why) = common::skip_reason() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}
pub(crate) use require_root;

pub fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A unique name: prefix, pid and a per-process counter.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop (also when the test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        run(&["ip", "netns", "add", &name]);
        // The guard first: if bringing `lo` up fails, Drop still deletes it.
        let ns = Netns { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, clt_linux::Error> + Send + 'static,
    ) -> Result<T, clt_linux::Error> {
        netns::run_in(Some(&self.name), f)
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        let (k, v) = (key.to_string(), value.to_string());
        self.run(move || clt_linux::sysctl::write(&k, &v)).unwrap();
    }

    pub fn apply(
        &self,
        plan: &LinuxPlan,
        insertion: Insertion,
    ) -> Result<Report, clt_linux::Error> {
        let plan = plan.clone();
        self.run(move || {
            let nl = Netlink::open()?;
            plan::apply(&nl, &plan, &Options { insertion })
        })
    }

    pub fn teardown(&self, plan: &LinuxPlan) -> Result<Report, clt_linux::Error> {
        let plan = plan.clone();
        self.run(move || {
            let nl = Netlink::open()?;
            plan::teardown(&nl, &plan, false)
        })
    }

    /// A snapshot of everything a plan can touch, for before/after checks.
    pub fn snapshot(&self, plan: &LinuxPlan) -> String {
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

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair from `a`'s `a_if` to `b`'s `b_if`, created directly in the
/// namespaces (interface names need only be unique per namespace).
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    run(&[
        "ip", "-n", &a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
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

/// A capture inside a namespace (dumpcap, which tshark uses), written as
/// classic pcap.
pub struct Capture {
    child: Option<Child>,
    pub path: PathBuf,
}

impl Capture {
    pub fn start(ns: &Netns, iface: &str, dir: &Path) -> Capture {
        let path = dir.join(format!("{}.pcap", unique("cap")));
        let child = Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "dumpcap", "-q", "-n", "-i", iface, "-P", "-w",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dumpcap");
        let cap = Capture {
            child: Some(child),
            path,
        };
        // dumpcap writes the pcap header once it captures.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&cap.path).map_or(0, |m| m.len()) < 24 {
            assert!(Instant::now() < deadline, "dumpcap did not start capturing");
            std::thread::sleep(Duration::from_millis(20));
        }
        cap
    }

    /// Waits (at most 10 s) until the packets written so far satisfy `done`.
    pub fn wait_for(&self, done: impl Fn(&[Vec<u8>]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&pcap_ipv6_packets(&self.path)) {
            assert!(
                Instant::now() < deadline,
                "the capture never saw the packets"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the capture (SIGINT, so the file is complete) and returns the
    /// path; the file goes when the `Capture` is dropped.
    pub fn stop(&mut self) -> PathBuf {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` execs dumpcap: same pid.
            run(&["kill", "-INT", &child.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "dumpcap did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.path.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The IPv6 packets of a classic pcap file of Ethernet frames (complete
/// records only: the file may still be growing).
pub fn pcap_ipv6_packets(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap_or_default();
    if b.len() < 24 {
        return Vec::new();
    }
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2c3d4 || magic == 0xa1b23c4d,
        "not a little-endian pcap"
    );
    let linktype = u32::from_le_bytes(b[20..24].try_into().unwrap());
    assert_eq!(linktype, 1, "expected Ethernet frames");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(frame) = b.get(at + 16..at + 16 + incl) else {
            break;
        };
        at += 16 + incl;
        if frame.len() > 14 && frame[12..14] == [0x86, 0xdd] {
            out.push(frame[14..].to_vec());
        }
    }
    out
}

/// Runs `tshark -r FILE -T fields` with the given fields (one line per
/// packet, fields separated by tabs, repeated values by commas).
pub fn tshark_fields(path: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}
