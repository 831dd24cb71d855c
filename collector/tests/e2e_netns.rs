//! End to end on the real kernel: app -> router -> server in three network
//! namespaces. The app (OpenTelemetry SDK, exporting to the collector over
//! OTLP/gRPC) marks its request's packets with the CLT socket API; the
//! router's stock IOAM transit fills its entry; the agent captures at the
//! server, joins the server kernel's own entry in from its ioam6 trace
//! events, and reports; the collector exports to the test's OTLP receiver.
//! The enriched span's hop fields are checked against tshark's dissection
//! of the captured packets (the hops before the server) and against what
//! the server was configured to write (its own hop). Needs root and IOAM6
//! in the kernel; skips otherwise.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clt_collector::agent::report::AgentStats;
use clt_collector::agent::{AgentOptions, Sink, Source, spawn_agent};
use clt_collector::server;
use clt_testkit::pcap::Capture;
use clt_testkit::{Netns, skip, tshark, veth};
use common::{Receiver, loopback_config};
use opentelemetry::trace::{Span as _, Tracer, TracerProvider as _};

const TRACE_TYPE: u32 = 0xf2_0000; // hop limit+node id, interface ids, ts secs, ts frac, queue depth
const NS_ID: u16 = 123;

/// app (node 1) -- router (node 2) -- server (node 3).
struct Topology {
    app: Netns,
    _router: Netns,
    server: Netns,
}

fn build(server_ioam: bool) -> Topology {
    let (a, r, s) = (Netns::new("clta"), Netns::new("cltr"), Netns::new("clts"));
    veth(&a, "va", &r, "vr1");
    veth(&r, "vr2", &s, "vs");
    for (ns, dev, addr) in [
        (&a, "va", "db01::1/64"),
        (&r, "vr1", "db01::2/64"),
        (&r, "vr2", "db02::1/64"),
        (&s, "vs", "db02::2/64"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    a.ip(&["route", "add", "default", "via", "db01::2"]);
    s.ip(&["route", "add", "default", "via", "db02::1"]);
    r.sysctl("net.ipv6.conf.all.forwarding", "1");
    for (ns, node) in [(&a, 1), (&r, 2), (&s, 3)] {
        ns.ip(&["ioam", "namespace", "add", &NS_ID.to_string()]);
        ns.sysctl("net.ipv6.ioam6_id", &node.to_string());
    }
    a.sysctl("net.ipv6.conf.va.ioam6_id", "11");
    r.sysctl("net.ipv6.conf.vr1.ioam6_enabled", "1");
    r.sysctl("net.ipv6.conf.vr1.ioam6_id", "21");
    r.sysctl("net.ipv6.conf.vr2.ioam6_id", "22");
    s.sysctl(
        "net.ipv6.conf.vs.ioam6_enabled",
        if server_ioam { "1" } else { "0" },
    );
    s.sysctl("net.ipv6.conf.vs.ioam6_id", "31");
    // Let the veth carriers come up and neighbours resolve before the
    // request: plain datagrams until the router has the server's neighbour.
    for _ in 0..50 {
        let _ = a
            .command("bash")
            .args(["-c", "echo > /dev/udp/db02::2/9"])
            .stderr(std::process::Stdio::null())
            .status();
        if r.ip(&["neigh", "show", "db02::2"]).contains("lladdr") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Topology {
        app: a,
        _router: r,
        server: s,
    }
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

/// Per request packet in the capture: tshark field name -> the nodes'
/// values as carried (the most recent hop first).
fn dissect(pcap: &Path) -> Vec<HashMap<&'static str, Vec<i64>>> {
    let names: Vec<&str> = TSHARK_FIELDS.iter().map(|(_, f)| *f).collect();
    tshark::fields(pcap, Some("udp.dstport == 4000"), &names)
        .into_iter()
        .map(|row| {
            TSHARK_FIELDS
                .iter()
                .zip(&row)
                .map(|((_, f), col)| {
                    let vals = tshark::numbers(col).into_iter().map(|v| v as i64);
                    (*f, vals.collect())
                })
                .collect()
        })
        .collect()
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

/// What one run of the scenario gave.
struct Run {
    /// The network span of the request.
    net: common::Received,
    stats: Arc<AgentStats>,
    /// tshark's dissection of the request's packets as the server's
    /// interface captured them, if tshark is here.
    dissected: Option<Vec<HashMap<&'static str, Vec<i64>>>>,
}

const PACKETS: usize = 3;

/// Three packets of one request from the app to the server with the agent
/// on the server's interface, taking them from `source`; `None` when the
/// CLT socket API is unavailable.
async fn run(server_ioam: bool, source: Source) -> Option<Run> {
    let topo = build(server_ioam);
    let dir = clt_testkit::TempFile::new("clt-e2e-", "");
    std::fs::create_dir_all(dir.path()).unwrap();
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
    let threads = spawn_agent(
        &["vs".to_owned()],
        Some(topo.server.name().to_owned()),
        "server".into(),
        Arc::clone(&stats),
        Sink::Report(tx),
        Arc::clone(&stop),
        // A long window: on a busy machine the event thread may lag; the
        // test is about what is joined, not how fast.
        AgentOptions {
            source,
            own_hop_window: Duration::from_secs(2),
            ..AgentOptions::default()
        },
    )
    .unwrap();

    // The application's span, exported by the SDK over OTLP/gRPC.
    let provider = common::sdk_provider(collector.otlp_grpc, "app");
    let mut span = provider.tracer("e2e").start("GET /login");
    let ctx = span.span_context().clone();
    let (trace_id, span_id) = (ctx.trace_id().to_bytes(), ctx.span_id().to_bytes());

    // The server: a UDP socket that takes the request's datagrams.
    let srv_ns = topo.server.name().to_owned();
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
        while n < PACKETS && sock.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(200));

    // An independent oracle: tshark's IOAM dissector on what the server's
    // interface captured (the request's Hop-by-Hop packets only).
    let mut capture = skip::tools_missing(&["tshark", "dumpcap"])
        .is_none()
        .then(|| {
            Capture::start(
                &topo.server,
                "vs",
                dir.path(),
                Some("ip6[6] == 0 and ip6 dst host db02::2"),
            )
        });

    // The request's packets, marked with the CLT socket API.
    let sent = clt_linux::netns::run_in(Some(topo.app.name()), move || {
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
        clt_testkit::report_skip(&format!("clt socket api unavailable here: {e}"));
        return None;
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
    let dissected = capture.as_mut().map(|c| {
        c.wait_for(|pkts| pkts.len() >= PACKETS);
        dissect(&c.stop())
    });

    let net = got
        .iter()
        .find(|r| r.parent_id() == span_id)
        .unwrap()
        .clone();
    assert_eq!(net.trace_id(), u128::from_be_bytes(trace_id));
    assert_eq!(net.int("ioam.namespace"), Some(i64::from(NS_ID)));
    assert_eq!(net.int("ioam.packets"), Some(PACKETS as i64));
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 0);
    let app = got
        .iter()
        .find(|r| r.span_id() == span_id)
        .expect("the app span itself");
    assert_eq!(app.service, "app");
    let _ = provider.shutdown();
    collector.shutdown(Duration::from_secs(2)).await;
    Some(Run {
        net,
        stats,
        dissected,
    })
}

/// The app's and the router's hops (0 and 1): configured values, and every
/// field against tshark's dissection (min, max and last over the packets;
/// tshark lists nodes as carried, the last hop first, and sees the packet
/// before the server fills).
fn check_first_two_hops(run: &Run) {
    let net = &run.net;
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
    let ts = h(1, "timestamp_secs.last").expect("router timestamp");
    let now = now_secs();
    assert!(
        (now - 60..=now + 1).contains(&ts),
        "router timestamp {ts} vs now {now}"
    );
    let Some(packets) = &run.dissected else {
        clt_testkit::report_skip("the tshark oracle: tshark or dumpcap is not installed");
        return;
    };
    assert_eq!(packets.len(), PACKETS, "tshark packets: {packets:?}");
    for (field, tfield) in TSHARK_FIELDS {
        for hop in 0..2 {
            let vals: Vec<i64> = packets
                .iter()
                .map(|p| {
                    let nodes = &p[tfield];
                    assert_eq!(nodes.len(), 2, "{tfield}: two entries before the server's");
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
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_through_a_router_gets_every_hop_including_the_servers() {
    clt_testkit::skip_if!(skip::netns_unavailable().or_else(skip::ioam6_unavailable));
    let Some(run) = run(true, Source::Nflog).await else {
        return;
    };
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(l(&run.stats.source_nflog), 1);
    // The server's entry came in the logged packet: nothing was joined.
    assert_eq!(l(&run.stats.own_hop_joined), 0);
    assert_eq!(l(&run.stats.own_hop_events), 0);
    check_every_hop(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_request_gets_the_servers_hop_from_its_trace_events() {
    clt_testkit::skip_if!(skip::netns_unavailable().or_else(skip::ioam6_unavailable));
    let Some(run) = run(true, Source::Capture).await else {
        return;
    };
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(l(&run.stats.source_nflog), 0);
    assert_eq!(l(&run.stats.own_hop_unavailable), 0, "events unavailable");
    assert_eq!(l(&run.stats.own_hop_joined), PACKETS as u64);
    assert_eq!(l(&run.stats.own_hop_unmatched), 0);
    check_every_hop(&run);
}

/// The app's entry (socket API), the router's (stock kernel transit) and
/// the server's own (written after the capture point: in the logged packet,
/// or joined in from the server's trace event).
fn check_every_hop(run: &Run) {
    let net = &run.net;
    assert_eq!(net.int("ioam.hop.count"), Some(3));
    check_first_two_hops(run);
    let h = |f: &str| net.int(&format!("ioam.hop.2.{f}"));
    assert_eq!(h("packets"), Some(PACKETS as i64));
    assert_eq!(h("node_id.last"), Some(3), "the server's net.ipv6.ioam6_id");
    assert_eq!((h("node_id.min"), h("node_id.max")), (Some(3), Some(3)));
    assert_eq!(
        h("ingress_if_id.last"),
        Some(31),
        "the server's vs ioam6_id"
    );
    // A locally delivered packet has no egress interface: all ones.
    assert_eq!(h("egress_if_id.last"), Some(0xffff));
    // One hop limit below the router's (it decremented on forwarding).
    assert_eq!(
        h("hop_limit.last"),
        net.int("ioam.hop.1.hop_limit.last").map(|l| l - 1)
    );
    let ts = h("timestamp_secs.last").expect("server timestamp");
    let now = now_secs();
    assert!(
        (now - 60..=now + 1).contains(&ts),
        "server timestamp {ts} vs now {now}"
    );
    let router_ts = net.int("ioam.hop.1.timestamp_secs.last").unwrap();
    assert!(ts >= router_ts, "the server stamps after the router");
    assert_eq!(net.span.events.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_servers_fill_logged_traces_have_two_hops() {
    clt_testkit::skip_if!(skip::netns_unavailable().or_else(skip::ioam6_unavailable));
    // IOAM off on the server's interface: its kernel does not fill, and
    // the log hands on the packet as it came.
    let Some(run) = run(false, Source::Nflog).await else {
        return;
    };
    assert_eq!(run.stats.source_nflog.load(Ordering::Relaxed), 1);
    assert_eq!(run.net.int("ioam.hop.count"), Some(2));
    check_first_two_hops(&run);
    assert_eq!(run.net.span.events.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_servers_fill_traces_are_reported_as_captured() {
    clt_testkit::skip_if!(skip::netns_unavailable().or_else(skip::ioam6_unavailable));
    // IOAM off on the server's interface: its kernel neither fills nor
    // raises events; the traces wait out the window and go as captured.
    let Some(run) = run(false, Source::Capture).await else {
        return;
    };
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(l(&run.stats.own_hop_unavailable), 0);
    assert_eq!(l(&run.stats.own_hop_joined), 0);
    assert_eq!(l(&run.stats.own_hop_unmatched), PACKETS as u64);
    assert_eq!(run.net.int("ioam.hop.count"), Some(2));
    check_first_two_hops(&run);
    assert_eq!(run.net.span.events.len(), 2);
}

#[test]
fn an_agent_without_cap_net_admin_reports_as_captured_and_says_so() {
    clt_testkit::skip_if!(
        skip::netns_unavailable()
            .or_else(skip::ioam6_unavailable)
            .or_else(|| skip::tools_missing(&["setpriv"]))
    );
    let topo = build(true);
    // The agent binary without CAP_NET_ADMIN (it keeps CAP_SYS_ADMIN for
    // the namespace and CAP_NET_RAW for the capture): the kernel refuses
    // the ioam6_events membership.
    let mut agent = clt_testkit::KillOnDrop(
        std::process::Command::new("setpriv")
            .args(["--bounding-set", "-net_admin", "--"])
            .arg(env!("CARGO_BIN_EXE_clt-agent"))
            .args(["-i", "vs", "--netns", topo.server.name()])
            .args(["--output", "json", "--stats-interval-s", "1"])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log_rx = lines(agent.stderr.take().unwrap());
    let out_rx = lines(agent.stdout.take().unwrap());
    let mut logs = Vec::new();
    // Waits (at most 20 s) for a log line with `what`, colours stripped.
    let next_log = |logs: &mut Vec<String>, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = log_rx.recv_timeout(left) else {
                panic!("the agent never logged {what:?}; it logged {logs:#?}");
            };
            logs.push(strip_ansi(&line));
            if logs.last().is_some_and(|l| l.contains(what)) {
                return;
            }
        }
    };
    // Without CAP_NET_ADMIN neither the nf_tables rule nor the events
    // group: the default source falls back to the capture, and says so.
    next_log(
        &mut logs,
        "nf_tables log unavailable: capturing with AF_PACKET instead",
    );
    next_log(
        &mut logs,
        "ioam6 trace events unavailable: reporting traces as captured, without this node's own entry",
    );
    let unavailable: Vec<&String> = logs.iter().filter(|l| l.contains("unavailable")).collect();
    assert_eq!(unavailable.len(), 2, "{logs:#?}");
    assert!(
        unavailable.iter().all(|l| l.contains("CAP_NET_ADMIN")),
        "{logs:#?}"
    );
    next_log(&mut logs, "capturing interfaces");

    // Something listens on the server, so that no ICMP error refuses a send.
    let _listener = clt_linux::netns::run_in(Some(topo.server.name()), || {
        Ok(std::net::UdpSocket::bind("[::]:4000").expect("bind"))
    })
    .unwrap();
    let sent = clt_linux::netns::run_in(Some(topo.app.name()), move || {
        let sock = std::net::UdpSocket::bind("[::]:0").expect("bind");
        sock.connect("[db02::2]:4000").expect("connect");
        clt_linux::socket::enable(&sock, &policy(), [7; 16], [9; 8])?;
        for _ in 0..PACKETS {
            sock.send(b"GET /login").expect("send");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    });
    if let Err(e) = sent {
        clt_testkit::report_skip(&format!("clt socket api unavailable here: {e}"));
        return;
    }
    for _ in 0..PACKETS {
        let line = out_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a json trace from the agent");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let ids: Vec<u64> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node_id"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ids,
            [2, 1],
            "as captured, without the server's entry: {line}"
        );
    }
    next_log(&mut logs, "own_hop_unavailable=1");
}

/// `line` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines `from` yields, read on a thread of their own.
fn lines(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}
