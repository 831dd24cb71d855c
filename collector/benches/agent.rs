//! The agent's rates. Always: parse+convert of a captured packet on one core,
//! with a ratio against clt-wire's bare parse, and the own-hop join
//! (captured trace + the sink's ioam6 trace event) on one core.
//!
//! As root: the agent on a veth pair between two network namespaces, fed by
//! a UDP generator that marks every datagram with an IOAM trace and CLT ids
//! (IPV6_HOPOPTS); the sink fills its own entry, as a real decapsulating
//! node does. Three runs: no agent, the agent's nf_tables log, and its
//! AF_PACKET capture with the ioam6 trace events joined in. veth delivers a
//! packet in the sender's thread, so the generator's rate includes what the
//! sink's kernel does per packet for the agent (the rule and the copy into
//! the log's batch; or the ring copy and the trace event): the bench prints
//! that cost per packet, each source against no agent in the same process.
//!
//! `cargo bench -p clt-collector --bench agent`

// A benchmark binary: failures to set up are panics with a message.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clt_collector::agent::capture::enter_netns;
use clt_collector::agent::convert::{
    Parsed, build_packet, node_from_repr, nodes, parse_packet, parse_packet_keyed,
};
use clt_collector::agent::report::AgentStats;
use clt_collector::agent::sink::{Event, Key, SinkJoin};
use clt_collector::agent::{AgentOptions, Sink, Source, spawn_agent};
use clt_testkit::{Netns, veth};
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

/// The own-hop join on one core: per packet, the sink's trace event (owned,
/// as the event thread makes it) and the captured packet parsed with its
/// key and joined (the event first, as usual), against parse+convert alone.
fn own_hop_rate() {
    const N: u64 = 1_000_000;
    let trace_type = 0xf2_0000;
    let pkt = build_packet(Some((0xabc, 0xdef)), trace_type, 60, node(), &[0u8; 100]).unwrap();
    let filled = {
        let p = clt_wire::PacketRepr::parse(&pkt).unwrap();
        p.hbh
            .as_ref()
            .unwrap()
            .ioam_trace()
            .unwrap()
            .filled()
            .to_vec()
    };
    let sink_node = NodeRepr {
        hop_limit_node_id: Some(HopLimitNodeId {
            hop_limit: 63,
            node_id: 2,
        }),
        ..node()
    };
    let ty = clt_wire::TraceType::from_bits(trace_type);
    let mut data = vec![0u8; sink_node.buffer_len(ty)];
    sink_node.emit(ty, &mut data).unwrap();
    data.extend_from_slice(&filled);

    let t = Instant::now();
    for _ in 0..N {
        black_box(parse_packet(black_box(&pkt), 1, "node", "eth0").is_ok());
    }
    let base = t.elapsed().as_secs_f64();
    let mut join = SinkJoin::new(100_000_000, 16_384);
    let mut joined = 0u64;
    let t = Instant::now();
    for i in 0..N {
        join.event(
            i,
            Event::from_kernel(123, trace_type << 8, black_box(&data)),
            &mut |t| {
                black_box(t);
            },
        );
        let mut key = Key::default();
        if let Ok(Parsed::Trace(tr)) =
            parse_packet_keyed(black_box(&pkt), 1, "node", "eth0", Some(&mut key))
        {
            join.trace(i, tr, key, &mut |t| {
                joined += 1;
                black_box(t);
            });
        }
    }
    let full = t.elapsed().as_secs_f64();
    assert_eq!(joined, N);
    assert_eq!(join.stats().joined, N);
    println!(
        "agent parse+convert+own-hop join: {:>10.0} packets/s; ratio {:.2}x parse+convert ({:.0}/s)",
        N as f64 / full,
        full / base,
        N as f64 / base
    );
}

/// What one veth run measured.
struct VethRun {
    /// The generator's packets/s.
    rate: f64,
    line: String,
}

/// The generator's rate over `run` with the agent reading from `source`
/// (`None`: no agent), on a fresh veth pair.
fn veth_rate(source: Option<Source>, run: Duration) -> VethRun {
    let (a, b) = (Netns::new("cltbencha"), Netns::new("cltbenchb"));
    veth(&a, "va", &b, "vb");
    a.ip(&["addr", "add", "db01::1/64", "dev", "va", "nodad"]);
    b.ip(&["addr", "add", "db01::2/64", "dev", "vb", "nodad"]);
    a.ip(&["link", "set", "va", "up"]);
    b.ip(&["link", "set", "vb", "up"]);
    // The sink fills its own entry (and, when the agent listens to them,
    // raises an ioam6 trace event per packet).
    b.ip(&["ioam", "namespace", "add", "123"]);
    b.sysctl("net.ipv6.ioam6_id", "2");
    b.sysctl("net.ipv6.conf.vb.ioam6_enabled", "1");
    b.sysctl("net.ipv6.conf.vb.ioam6_id", "21");
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
    let threads = source.map(|source| {
        let (tx, _task) = {
            let _g = rt.enter();
            clt_collector::agent::report::start(
                format!("http://{}", collector.ioam),
                1 << 20,
                Arc::clone(&stats),
            )
        };
        spawn_agent(
            &["vb".into()],
            Some(b.name().to_owned()),
            "bench".into(),
            Arc::clone(&stats),
            Sink::Report(tx),
            Arc::clone(&stop),
            AgentOptions {
                source,
                ..AgentOptions::default()
            },
        )
        .unwrap()
    });

    // The generator: UDP datagrams from namespace a, each with the HBH header.
    let sent = Arc::new(AtomicU64::new(0));
    let (gen_ns, gen_sent) = (a.name().to_owned(), Arc::clone(&sent));
    let generator = std::thread::spawn(move || {
        enter_netns(&gen_ns).unwrap();
        let sock = std::net::UdpSocket::bind("[db01::1]:0").unwrap();
        sock.connect("[db01::2]:9").unwrap();
        let pkt = build_packet(Some((0xabc, 0xdef)), 0xf2_0000, 60, node(), b"").unwrap();
        clt_linux::socket::set_header(&sock, &pkt[40..pkt.len() - 8]).unwrap();
        let t = Instant::now();
        while t.elapsed() < run {
            for _ in 0..64 {
                if sock.send(&[0u8; 64]).is_ok() {
                    gen_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        t.elapsed()
    });
    let secs = generator.join().unwrap().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for th in threads.into_iter().flatten() {
        let _ = th.join();
    }
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let received = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        collector.core.join_stats().traces_received
    });
    rt.block_on(collector.shutdown(Duration::from_millis(200)));
    let rate = l(&sent) as f64 / secs;
    let line = match source {
        None => format!("no agent: generator {rate:.0} packets/s"),
        Some(source) => format!(
            "{source:?}: generator {rate:.0} packets/s; read {:.0}/s, parsed {:.0} traces/s, reported {:.0}/s; collector received {} of {} sent; kernel drops {}, buffer drops {}, malformed {}; source_nflog {}; own hop: joined {}, unmatched {}, events {} (lost {}), unavailable {}",
            l(&stats.packets) as f64 / secs,
            l(&stats.traces) as f64 / secs,
            l(&stats.sent) as f64 / secs,
            received,
            l(&sent),
            l(&stats.kernel_drops),
            l(&stats.dropped),
            l(&stats.malformed),
            l(&stats.source_nflog),
            l(&stats.own_hop_joined),
            l(&stats.own_hop_unmatched),
            l(&stats.own_hop_events),
            l(&stats.own_hop_events_lost),
            l(&stats.own_hop_unavailable),
        ),
    };
    VethRun { rate, line }
}

fn veth_rates() {
    if let Some(why) = clt_testkit::skip::netns_unavailable() {
        println!("agent on veth: skipped: {why}");
        return;
    }
    let run = Duration::from_secs(3);
    let none = veth_rate(None, run);
    println!("agent on veth ({} s each), {}", run.as_secs(), none.line);
    for source in [Source::Nflog, Source::Capture] {
        let r = veth_rate(Some(source), run);
        println!("  {}", r.line);
        println!(
            "  {source:?}: the sink's kernel spends {:.2} us more per packet than with no agent ({:.2}x the generator's time per packet)",
            (1.0 / r.rate - 1.0 / none.rate) * 1e6,
            none.rate / r.rate
        );
    }
}

/// Decoding a 3-hop trace's nodes: `convert::nodes` (one
/// `TraceRepr::for_each_field` walk) against a `NodeRepr` per hop.
fn nodes_rate() {
    const N: u32 = 2_000_000;
    let mut pkt = build_packet(Some((0xabc, 0xdef)), 0xf2_0000, 60, node(), &[0u8; 100]).unwrap();
    // Two more hops (the trace starts at 72: IPv6, HBH header, CLT option,
    // IOAM option header).
    for _ in 0..2 {
        let mut t = clt_wire::TracePacket::new_checked(&mut pkt[72..72 + 68]).unwrap();
        clt_wire::fill_node(&mut t, &node()).unwrap();
    }
    let p = clt_wire::PacketRepr::parse(&pkt).unwrap();
    let trace = p.hbh.as_ref().unwrap().ioam_trace().unwrap();
    let count = trace.check_entries().unwrap();
    assert_eq!(count, 3);
    let t = Instant::now();
    for _ in 0..N {
        black_box(nodes(black_box(trace), count));
    }
    let walk = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..N {
        let v: Vec<_> = black_box(trace)
            .nodes()
            .rev()
            .map(|n| node_from_repr(&n))
            .collect();
        black_box(v);
    }
    let per_hop = t.elapsed().as_secs_f64();
    println!(
        "3-hop node decode: for_each_field {:.0} ns, NodeRepr per hop {:.0} ns; ratio {:.2}x",
        walk * 1e9 / f64::from(N),
        per_hop * 1e9 / f64::from(N),
        per_hop / walk
    );
}

fn main() {
    parse_rate();
    nodes_rate();
    own_hop_rate();
    veth_rates();
}
