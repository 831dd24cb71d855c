//! What the rollout tests in network namespaces share: the root check,
//! `ip`, a kernel snapshot of everything a plan can touch, and the UDP
//! sender and receiver that measure traffic during a rollout.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clt_controller::rollout::{Phase, Step};
use clt_linux::plan::KernelState;

/// Why a namespaced test cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
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

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("spawn ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
