//! Entries per second for building and installing 10,000 IPv6 routes,
//! batched, against the in-process P4Runtime server of the tests (loopback
//! gRPC, the switch side's work is a map insert). The batch sizes compared
//! show what `DEFAULT_BATCH_SIZE` (1000) buys; against bmv2 the same flow
//! is measured by bmv2-tests where simple_switch_grpc is installed.
//!
//! `cargo bench -p clt-controller --bench write_routes`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use clt_controller::connect::connect;
use clt_controller::inputs::{Pipeline, cookie};
use clt_controller::reconcile::diff;
use clt_controller::{P4InfoIndex, Session, SessionOptions};
use common::{FakeSwitch, p4info, routes};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const ROUTES: usize = 10_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sw, mut session) = rt.block_on(async {
        let (sw, addr) = FakeSwitch::start().await;
        let channel = connect(&addr.to_string(), None, Duration::from_secs(5))
            .await
            .unwrap();
        let mut s = Session::open(channel, SessionOptions::new(1, 1))
            .await
            .unwrap();
        let p4info = p4info();
        let pipeline = Pipeline {
            cookie: cookie(b"bench", &p4info, b"{}"),
            p4info,
            device_config: b"{}".to_vec(),
        };
        s.ensure_pipeline(&pipeline).await.unwrap();
        (sw, s)
    });
    let info = P4InfoIndex::new(p4info());

    let mut g = c.benchmark_group("routes");
    g.throughput(Throughput::Elements(ROUTES as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));

    g.bench_function("build_10k", |b| b.iter(|| routes(ROUTES)));
    let desired = routes(ROUTES);
    g.bench_function("diff_10k_against_empty", |b| b.iter(|| diff(&[], &desired)));

    for batch in [1usize, 100, 1000, 10_000] {
        // One update per Write is the unbatched baseline; 10,000 routes one
        // by one take long, so it installs a tenth and reports per entry.
        let n = if batch == 1 { ROUTES / 10 } else { ROUTES };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("install_10k_batch", batch),
            &batch,
            |b, &batch| {
                b.iter(|| {
                    sw.state().tables.clear();
                    let updates = diff(&[], &desired[..n]).into_updates();
                    let (batches, errors) = rt
                        .block_on(session.write_batched(&info, updates, batch))
                        .unwrap();
                    assert!(errors.is_empty());
                    assert_eq!(batches, n.div_ceil(batch));
                })
            },
        );
    }
    // The whole reconcile (read 10k, diff, write nothing) on an installed switch.
    g.throughput(Throughput::Elements(ROUTES as u64));
    sw.state().tables.clear();
    rt.block_on(session.reconcile(&info, &desired, 1000))
        .unwrap();
    g.bench_function("reconcile_10k_unchanged", |b| {
        b.iter(|| {
            let r = rt
                .block_on(session.reconcile(&info, &desired, 1000))
                .unwrap();
            assert_eq!(r.unchanged, ROUTES);
        })
    });
    g.finish();
    drop(session);
}

criterion_group!(benches, bench);
criterion_main!(benches);
