//! End to end on the real kernel: app -> router -> server in three network
//! namespaces. The app (OpenTelemetry SDK, exporting to the collector over
//! OTLP/gRPC) marks its request's packets with the CLT socket API; the
//! router's stock IOAM transit fills its entry; the agent captures at the
//! server and reports; the collector exports to the test's OTLP receiver.
//! The enriched span's hop fields are checked against what the nodes were
//! configured to write. Needs root and IOAM6 in the kernel; skips otherwise.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use clt_collector::agent::report::AgentStats;
use clt_collector::agent::{Sink, spawn_captures};
use clt_collector::server;
use common::{Receiver, loopback_config};
use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;

const TRACE_TYPE: u32 = 0xf2_0000; // hop limit+node id, interface ids, ts secs, ts frac, queue depth
const NS_ID: u16 = 123;

fn skip(why: &str) {
    eprintln!("skipped: {why}");
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn sysctl(ns: &str, kv: &str) -> Result<(), String> {
    ip(&["netns", "exec", ns, "sysctl", "-qw", kv])
}

/// Deletes the namespaces even when the test fails.
struct Topology {
    names: Vec<String>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn build() -> Result<(Topology, [String; 3]), String> {
    let id = format!(
        "{}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let [a, r, s] = [
        format!("clta{id}"),
        format!("cltr{id}"),
        format!("clts{id}"),
    ];
    let topo = Topology {
        names: vec![a.clone(), r.clone(), s.clone()],
    };
    for n in &topo.names {
        ip(&["netns", "add", n])?;
    }
    ip(&[
        "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vr1", "netns", &r,
    ])?;
    ip(&[
        "-n", &r, "link", "add", "vr2", "type", "veth", "peer", "name", "vs", "netns", &s,
    ])?;
    for (ns, dev, addr) in [
        (&a, "va", "db01::1/64"),
        (&r, "vr1", "db01::2/64"),
        (&r, "vr2", "db02::1/64"),
        (&s, "vs", "db02::2/64"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev, "nodad"])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    ip(&["-n", &a, "route", "add", "default", "via", "db01::2"])?;
    ip(&["-n", &s, "route", "add", "default", "via", "db02::1"])?;
    sysctl(&r, "net.ipv6.conf.all.forwarding=1")?;
    for (ns, node) in [(&a, 1), (&r, 2), (&s, 3)] {
        ip(&["-n", ns, "ioam", "namespace", "add", &NS_ID.to_string()])?;
        sysctl(ns, &format!("net.ipv6.ioam6_id={node}"))?;
    }
    sysctl(&a, "net.ipv6.conf.va.ioam6_id=11")?;
    sysctl(&r, "net.ipv6.conf.vr1.ioam6_enabled=1")?;
    sysctl(&r, "net.ipv6.conf.vr1.ioam6_id=21")?;
    sysctl(&r, "net.ipv6.conf.vr2.ioam6_id=22")?;
    sysctl(&s, "net.ipv6.conf.vs.ioam6_enabled=1")?;
    sysctl(&s, "net.ipv6.conf.vs.ioam6_id=31")?;
    // Let the veth carriers come up and neighbours resolve before the
    // request: plain datagrams until the router has the server's neighbour.
    for _ in 0..50 {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &a,
                "bash",
                "-c",
                "echo > /dev/udp/db02::2/9",
            ])
            .stderr(std::process::Stdio::null())
            .status();
        let out = Command::new("ip")
            .args(["-n", &r, "neigh", "show", "db02::2"])
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&out.stdout).contains("lladdr") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((topo, [a, r, s]))
}

/// Our attribute field names and tshark's IOAM field names.
const TSHARK_FIELDS: [(&str, &str); 6] = [
    ("hop_limit", "ipv6.opt.ioam.trace.node.hlim"),
    ("node_id", "ipv6.opt.ioam.trace.node.id"),
    ("ingress_if_id", "ipv6.opt.ioam.trace.node.iif"),
    ("egress_if_id", "ipv6.opt.ioam.trace.node.eif"),
    ("timestamp_secs", "ipv6.opt.ioam.trace.node.tss"),
    ("timestamp_frac", "ipv6.opt.ioam.trace.node.tsf"),
];

fn start_tshark(ns: &str) -> Option<std::process::Child> {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        "tshark",
        "-i",
        "vs",
        "-l",
        "-n",
        "-c",
        "3",
        "-f",
        "ip6[6] == 0 and ip6 dst host db02::2",
    ]);
    cmd.args([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for (_, f) in TSHARK_FIELDS {
        cmd.args(["-e", f]);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // tshark takes a moment to open the interface
    std::thread::sleep(Duration::from_millis(2500));
    Some(child)
}

/// Per packet: field name -> the nodes' values as carried.
fn finish_tshark(
    mut child: std::process::Child,
) -> Result<Vec<std::collections::HashMap<&'static str, Vec<i64>>>, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => {
                let _ = child.kill();
                return Err("tshark did not see 3 packets".into());
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().ok_or("no stdout")?, &mut out)
        .map_err(|e| e.to_string())?;
    let mut packets = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let mut p = std::collections::HashMap::new();
        for (i, (_, f)) in TSHARK_FIELDS.iter().enumerate() {
            let vals = cols
                .get(i)
                .ok_or_else(|| format!("short line {line:?}"))?
                .split(',')
                .map(|v| {
                    let v = v.trim();
                    match v.strip_prefix("0x") {
                        Some(h) => i64::from_str_radix(h, 16),
                        None => v.parse(),
                    }
                    .map_err(|e| format!("{f} {v:?}: {e}"))
                })
                .collect::<Result<Vec<i64>, String>>()?;
            p.insert(*f, vals);
        }
        packets.push(p);
    }
    Ok(packets)
}

fn policy() -> cltc::artifact::linux::EncapPolicy {
    cltc::artifact::linux::EncapPolicy {
        policy: "e2e".into(),
        domain: "e2e".into(),
        namespace: NS_ID,
        trace_type: clt_wire::TraceType::from_bits(TRACE_TYPE),
        size: 60, // three 20-byte entries
        context_w3c: true,
        dst: "db02::/64".parse().expect("prefix"),
        src: None,
        proto: None,
        dport: None,
        sport: None,
        freq_k: 1,
        freq_n: 1,
        collector: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_through_a_router_gets_its_network_span() {
    // SAFETY-free root check: geteuid via /proc.
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        });
    if uid != Some(true) {
        return skip("needs root (network namespaces, AF_PACKET, IPV6_HOPOPTS)");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return skip("needs iproute2 (ip)");
    }
    if !std::path::Path::new("/proc/sys/net/ipv6/ioam6_id").exists() {
        return skip("kernel without IOAM6 (no net.ipv6.ioam6_id)");
    }
    let (_topo, [app_ns, _router_ns, server_ns]) = match build() {
        Ok(t) => t,
        Err(e) => return skip(&format!("could not build the topology: {e}")),
    };

    let receiver = Receiver::default();
    let (raddr, _rh) = receiver.serve("127.0.0.1:0".parse().unwrap()).await;
    let collector = server::start(loopback_config(Some(raddr), None))
        .await
        .unwrap();

    // The agent on the server's interface, reporting to the collector.
    let stats = Arc::new(AgentStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, report_task) = clt_collector::agent::report::start(
        format!("http://{}", collector.ioam),
        1024,
        Arc::clone(&stats),
    );
    let threads = spawn_captures(
        &["vs".to_owned()],
        Some(server_ns.clone()),
        "server".into(),
        Arc::clone(&stats),
        Sink::Report(tx),
        Arc::clone(&stop),
    )
    .unwrap();

    // The application's span, exported by the SDK over OTLP/gRPC.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", collector.otlp_grpc))
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_service_name("app")
                .build(),
        )
        .build();
    let mut span = provider.tracer("e2e").start("GET /login");
    let ctx = span.span_context().clone();
    let (trace_id, span_id) = (ctx.trace_id().to_bytes(), ctx.span_id().to_bytes());

    // The server: a UDP socket that takes the request's datagrams.
    let srv_ns = server_ns.clone();
    let server = std::thread::spawn(move || -> usize {
        if clt_linux::netns::enter(&srv_ns).is_err() {
            return 0;
        }
        let Ok(sock) = std::net::UdpSocket::bind("[::]:4000") else {
            return 0;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(3)));
        let mut n = 0;
        let mut buf = [0u8; 64];
        while n < 3 && sock.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(200));

    // An independent oracle: tshark's IOAM dissector on the same interface.
    let tshark = start_tshark(&server_ns);

    // Three packets of the request, marked with the CLT socket API.
    const PACKETS: usize = 3;
    let sent = clt_linux::netns::run_in(Some(&app_ns), move || {
        let sock = std::net::UdpSocket::bind("[::]:0").expect("bind");
        sock.connect("[db02::2]:4000").expect("connect");
        clt_linux::socket::enable(&sock, &policy(), trace_id, span_id)?;
        for _ in 0..PACKETS {
            sock.send(b"GET /login").expect("send");
            std::thread::sleep(Duration::from_millis(20));
        }
        clt_linux::socket::disable(&sock)?;
        Ok(())
    });
    if let Err(e) = sent {
        stop.store(true, Ordering::Relaxed);
        return skip(&format!("clt socket api unavailable here: {e}"));
    }
    span.end();
    assert_eq!(
        server.join().unwrap(),
        PACKETS,
        "the server got the request's datagrams"
    );
    let p = provider.clone();
    tokio::task::spawn_blocking(move || p.force_flush())
        .await
        .unwrap()
        .unwrap();

    let span_id = u64::from_be_bytes(span_id);
    let got = receiver
        .wait_for(20, "the network span of the request", |s| {
            s.iter().any(|r| r.parent_id() == span_id)
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    drop(report_task);

    let net = got.iter().find(|r| r.parent_id() == span_id).unwrap();
    assert_eq!(net.trace_id(), u128::from_be_bytes(trace_id));
    assert_eq!(net.int("ioam.namespace"), Some(i64::from(NS_ID)));
    assert_eq!(net.int("ioam.packets"), Some(PACKETS as i64));
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 0);
    // The app's own entry (socket API) then the router's (stock kernel
    // transit); the server's is written after the capture point.
    assert_eq!(net.int("ioam.hop.count"), Some(2));
    let h = |hop: usize, f: &str| net.int(&format!("ioam.hop.{hop}.{f}"));
    assert_eq!(h(0, "node_id.last"), Some(1));
    assert_eq!(h(0, "egress_if_id.last"), Some(11));
    assert_eq!(
        h(0, "ingress_if_id.last"),
        Some(0xffff),
        "a local packet has no ingress"
    );
    assert_eq!(h(1, "node_id.last"), Some(2));
    assert_eq!(h(1, "ingress_if_id.last"), Some(21));
    assert_eq!(h(1, "egress_if_id.last"), Some(22));
    for hop in 0..2 {
        assert_eq!(h(hop, "packets"), Some(PACKETS as i64));
        assert_eq!(h(hop, "node_id.min"), h(hop, "node_id.max"));
        let hl = h(hop, "hop_limit.last").unwrap();
        assert!((60..=64).contains(&hl), "hop {hop} hop limit {hl}");
    }
    // The router's timestamp is now-ish (seconds since the epoch).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts = h(1, "timestamp_secs.last").expect("router timestamp");
    assert!(
        (now - 60..=now + 1).contains(&ts),
        "router timestamp {ts} vs now {now}"
    );
    assert_eq!(net.span.events.len(), 2);
    // Every hop's fields against what tshark saw in the packets: min, max
    // and last over the three packets (tshark lists nodes as carried: the
    // last hop first).
    match tshark.map(finish_tshark) {
        Some(Ok(packets)) => {
            assert_eq!(packets.len(), PACKETS, "tshark packets: {packets:?}");
            for (field, tfield) in TSHARK_FIELDS {
                for hop in 0..2 {
                    let vals: Vec<i64> = packets
                        .iter()
                        .map(|p| {
                            let nodes = &p[tfield];
                            nodes[nodes.len() - 1 - hop]
                        })
                        .collect();
                    let want = (
                        vals.iter().min().copied(),
                        vals.iter().max().copied(),
                        vals.last().copied(),
                    );
                    let got = (
                        h(hop, &format!("{field}.min")),
                        h(hop, &format!("{field}.max")),
                        h(hop, &format!("{field}.last")),
                    );
                    assert_eq!(got, want, "hop {hop} {field} (tshark: {vals:?})");
                }
            }
            eprintln!(
                "tshark oracle: {} packets, every hop field agrees",
                packets.len()
            );
        }
        Some(Err(e)) => eprintln!("tshark oracle skipped: {e}"),
        None => eprintln!("tshark oracle skipped: no tshark"),
    }

    let app = got
        .iter()
        .find(|r| r.span_id() == span_id)
        .expect("the app span itself");
    assert_eq!(app.service, "app");
    let _ = provider.shutdown();
    collector.shutdown(Duration::from_secs(2)).await;
}
