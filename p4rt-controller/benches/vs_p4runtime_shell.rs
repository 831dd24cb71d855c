//! Installing IPv6 routes: clt-controller (batched) against p4runtime-shell
//! (PyPI; one Write per entry, its only mode), against the same in-process
//! P4Runtime server in the same run, with the ratio. Skipped with a message
//! when p4runtime-shell is not importable by `$P4RUNTIME_SHELL_PYTHON`
//! (default `python3`).
//!
//! `P4RUNTIME_SHELL_PYTHON=/path/to/venv/bin/python cargo bench -p clt-controller --bench vs_p4runtime_shell`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use clt_controller::P4InfoIndex;
use clt_controller::config::DEFAULT_BATCH_SIZE;
use common::{FakeSwitch, p4info, routes};

const ROUTES: usize = 10_000;
/// p4runtime-shell writes one entry per RPC: fewer, reported per entry.
const SHELL_ROUTES: usize = 2_000;

fn main() {
    let python = common::shell_python();
    let shell_missing = common::shell_missing(&python);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sw, addr) = rt.block_on(FakeSwitch::start());
    let info = P4InfoIndex::new(p4info());
    let desired = routes(ROUTES);

    // clt-controller: best of 5 runs of a full install into an empty table.
    let ours = rt.block_on(async {
        let mut s = common::session(addr, 1 << 64).await;
        s.ensure_pipeline(&common::pipeline(b"bench"))
            .await
            .unwrap();
        let mut best = Duration::MAX;
        for _ in 0..5 {
            sw.state().tables.clear();
            let start = Instant::now();
            let report = s
                .reconcile(&info, &desired, DEFAULT_BATCH_SIZE)
                .await
                .unwrap();
            best = best.min(start.elapsed());
            assert_eq!(report.inserted, ROUTES);
        }
        best
    });
    let ours_rate = ROUTES as f64 / ours.as_secs_f64();
    println!(
        "clt-controller: {ROUTES} routes (read, diff, write in batches of {DEFAULT_BATCH_SIZE}) in {:.1} ms: {:.0} entries/s",
        ours.as_secs_f64() * 1e3,
        ours_rate
    );

    if let Some(why) = shell_missing {
        println!("p4runtime-shell: skipped: {why}");
        return;
    }
    // The server runs on the runtime's threads while the script runs.
    sw.state().tables.clear();
    let out = rt.block_on(common::shell_insert_routes(&python, addr, SHELL_ROUTES));
    if !out.status.success() {
        println!(
            "p4runtime-shell: failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        sw.state().tables.len(),
        SHELL_ROUTES,
        "p4runtime-shell installed every route"
    );
    let shell_rate = SHELL_ROUTES as f64 / secs;
    println!(
        "p4runtime-shell: {SHELL_ROUTES} routes (one Write each) in {:.1} ms: {:.0} entries/s",
        secs * 1e3,
        shell_rate
    );
    println!(
        "ratio: clt-controller is {:.1}x p4runtime-shell's entries/s",
        ours_rate / shell_rate
    );
    drop(rt);
}
