//! The agent's rates. Always: parse+convert of a captured packet on one core,
//! with a ratio against clt-wire's bare parse. As root: capture+parse+report
//! on a veth pair between two network namespaces, fed by a UDP generator that
//! marks every datagram with an IOAM trace and CLT ids (IPV6_HOPOPTS).
//!
//! `cargo bench -p clt-collector --bench agent`

// A benchmark binary: failures to set up are panics with a message.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clt_collector::agent::capture::enter_netns;
use clt_collector::agent::convert::{build_packet, parse_packet};
use clt_collector::agent::report::AgentStats;
use clt_collector::agent::{Sink, spawn_captures};
use clt_wire::{HopLimitNodeId, InterfaceIds, NodeRepr};

fn node() -> NodeRepr<'static> {
    NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 64,
            node_id: 1,
        }),
        interface_ids: Some(InterfaceIds {
            ingress: 0xffff,
            egress: 11,
        }),
        timestamp_secs: Some(1_700_000_000),
        timestamp_frac: Some(1),
        queue_depth: Some(3),
        ..NodeRepr::default()
    }
}

fn parse_rate() {
    const N: u32 = 1_000_000;
    let pkt = build_packet(Some((0xabc, 0xdef)), 0xf2_0000, 60, node(), &[0u8; 100]).unwrap();
    let t = Instant::now();
    for _ in 0..N {
        black_box(clt_wire::PacketRepr::parse(black_box(&pkt)).is_ok());
    }
    let base = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..N {
        black_box(parse_packet(black_box(&pkt), 1, "node", "eth0").is_ok());
    }
    let full = t.elapsed().as_secs_f64();
    println!(
        "agent parse+convert: {:>10.0} packets/s ({} bytes, 60-byte trace)",
        f64::from(N) / full,
        pkt.len()
    );
    println!(
        "clt-wire parse only: {:>10.0} packets/s; ratio {:.1}x",
        f64::from(N) / base,
        full / base
    );
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip {}", args.join(" "));
}

struct Netns(Vec<String>);
impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn capture_rate() {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root || Command::new("ip").arg("-V").output().is_err() {
        println!("agent capture: skipped: needs root and iproute2");
        return;
    }
    let id = std::process::id();
    let (a, b) = (format!("cltbencha{id}"), format!("cltbenchb{id}"));
    let _ns = Netns(vec![a.clone(), b.clone()]);
    ip(&["netns", "add", &a]);
    ip(&["netns", "add", &b]);
    ip(&[
        "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
    ]);
    ip(&["-n", &a, "addr", "add", "db01::1/64", "dev", "va", "nodad"]);
    ip(&["-n", &b, "addr", "add", "db01::2/64", "dev", "vb", "nodad"]);
    ip(&["-n", &a, "link", "set", "va", "up"]);
    ip(&["-n", &b, "link", "set", "vb", "up"]);
    std::thread::sleep(Duration::from_millis(300));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let collector = rt.block_on(async {
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cfg = clt_collector::Config {
            otlp_grpc_listen: any,
            otlp_http_listen: any,
            ioam_listen: any,
            metrics_listen: any,
            store_path: dir.path().join("s.redb"),
            ..clt_collector::Config::default()
        };
        clt_collector::server::start(cfg).await.unwrap()
    });
    let stats = Arc::new(AgentStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, _task) = {
        let _g = rt.enter();
        clt_collector::agent::report::start(
            format!("http://{}", collector.ioam),
            1 << 20,
            Arc::clone(&stats),
        )
    };
    let threads = spawn_captures(
        &["vb".into()],
        Some(b.clone()),
        "bench".into(),
        Arc::clone(&stats),
        Sink::Report(tx),
        Arc::clone(&stop),
    )
    .unwrap();

    // The generator: UDP datagrams from namespace a, each with the HBH header.
    let sent = Arc::new(AtomicU64::new(0));
    let (gen_ns, gen_sent) = (a.clone(), Arc::clone(&sent));
    let run = Duration::from_secs(3);
    let generator = std::thread::spawn(move || {
        enter_netns(&gen_ns).unwrap();
        let sock = std::net::UdpSocket::bind("[db01::1]:0").unwrap();
        sock.connect("[db01::2]:9").unwrap();
        let pkt = build_packet(Some((0xabc, 0xdef)), 0xf2_0000, 60, node(), b"").unwrap();
        let hbh = &pkt[40..pkt.len() - 8];
        // SAFETY: `hbh` is a valid buffer of the length passed; the socket is open.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_HOPOPTS,
                hbh.as_ptr().cast(),
                hbh.len() as u32,
            )
        };
        assert_eq!(r, 0, "IPV6_HOPOPTS: {}", std::io::Error::last_os_error());
        let t = Instant::now();
        while t.elapsed() < run {
            for _ in 0..64 {
                if sock.send(&[0u8; 64]).is_ok() {
                    gen_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let t = Instant::now();
    generator.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let secs = t.elapsed().as_secs_f64().min(run.as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        let _ = th.join();
    }
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let received = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        collector.core.join_stats().traces_received
    });
    println!(
        "agent capture on veth ({secs:.1} s): generator {:.0} packets/s; captured {:.0}/s, parsed {:.0} traces/s, reported {:.0}/s; collector received {} of {} sent; kernel drops {}, buffer drops {}, malformed {}",
        l(&sent) as f64 / secs,
        l(&stats.packets) as f64 / secs,
        l(&stats.traces) as f64 / secs,
        l(&stats.sent) as f64 / secs,
        received,
        l(&sent),
        l(&stats.kernel_drops),
        l(&stats.dropped),
        l(&stats.malformed),
    );
    rt.block_on(collector.shutdown(Duration::from_millis(200)));
}

fn main() {
    parse_rate();
    capture_rate();
}
