//! The daemon from a configuration file: several devices at once, the
//! Prometheus endpoint, and the forwarder's retry and bounded buffer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use clt_controller::config::Config;
use clt_controller::daemon::Daemon;
use clt_controller::forward::Forwarder;
use clt_controller::inputs::to_text;
use clt_controller::metrics::Metrics;
use clt_controller::proto::p4::v1 as p4;
use clt_proto::ioam_api::IoamTrace;
use common::*;

/// Writes the test program's P4Info and `n` routes as text-format files.
fn write_inputs(dir: &std::path::Path, n: usize) {
    std::fs::write(
        dir.join("p4info.txtpb"),
        to_text("p4.config.v1.P4Info", &p4info()).unwrap(),
    )
    .unwrap();
    let request = p4::WriteRequest {
        device_id: 1,
        updates: routes(n)
            .into_iter()
            .map(|e| p4::Update {
                r#type: p4::update::Type::Insert as i32,
                entity: Some(p4::Entity {
                    entity: Some(p4::entity::Entity::TableEntry(e)),
                }),
            })
            .collect(),
        ..Default::default()
    };
    std::fs::write(
        dir.join("entries.txtpb"),
        to_text("p4.v1.WriteRequest", &request).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("program.json"), b"{}").unwrap();
}

#[tokio::test]
async fn the_daemon_installs_every_device_and_exports_metrics() {
    let (sw1, a1) = FakeSwitch::start().await;
    let (sw2, a2) = FakeSwitch::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path(), 12);
    let toml = format!(
        r#"
[metrics]
listen = "127.0.0.1:0"

[[device]]
name = "r1"
address = "{a1}"
device_id = 1
p4info = "p4info.txtpb"
entries = "entries.txtpb"
device_config = "program.json"
batch_size = 5

[[device]]
name = "r2"
address = "{a2}"
device_id = 1
election_id = 3
p4info = "p4info.txtpb"
entries = "entries.txtpb"
device_config = "program.json"
"#
    );
    std::fs::write(dir.path().join("controller.toml"), toml).unwrap();
    let config = Config::load(&dir.path().join("controller.toml")).unwrap();
    let daemon = Daemon::start(&config).await.unwrap();
    for d in &daemon.devices {
        let mut st = d.watch_status();
        tokio::time::timeout(Duration::from_secs(10), st.wait_for(|s| s.installs >= 1))
            .await
            .expect("installed in time")
            .unwrap();
    }
    assert_eq!(sw1.state().tables.len(), 12);
    assert_eq!(sw2.state().tables.len(), 12);
    assert_eq!(
        sw1.state().write_sizes.iter().filter(|n| **n == 5).count(),
        2,
        "batches of 5 on r1"
    );
    assert_eq!(sw2.state().primary, Some(3));

    let addr = daemon.metrics_addr.unwrap();
    let body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for line in [
        "clt_controller_updates_written_total{device=\"r1\"} 12",
        "clt_controller_updates_written_total{device=\"r2\"} 12",
        "clt_controller_pipeline_pushes_total{device=\"r1\"} 1",
        "clt_controller_device_primary{device=\"r2\"} 1",
        "clt_controller_device_connected{device=\"r1\"} 1",
    ] {
        assert!(body.contains(line), "missing {line:?} in\n{body}");
    }
    daemon.shutdown().await;
}

fn trace(i: u64) -> IoamTrace {
    IoamTrace {
        trace_id_low: i,
        namespace_id: 1,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_forwarder_retries_until_the_collector_is_back_and_bounds_its_buffer() {
    // A port nobody listens on yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let metrics = Metrics::default();
    let (f, _task) = Forwarder::spawn(&addr.to_string(), 2, metrics.clone()).unwrap();
    assert!(f.submit(trace(0)));
    eventually("a failed report", || metrics.collector_errors.get() >= 1).await;
    // The forwarder holds trace 0 for retry; the buffer takes two more.
    let accepted = (1..=10).filter(|i| f.submit(trace(*i))).count();
    assert_eq!(accepted, 2);
    assert_eq!(metrics.traces_dropped.get(), 8);

    let (collector, _) = start_collector_at(addr).await;
    eventually("three traces delivered", || {
        collector.0.lock().unwrap().len() == 3
    })
    .await;
    let ids: Vec<u64> = collector
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.trace_id_low)
        .collect();
    assert_eq!(
        ids,
        vec![0, 1, 2],
        "in order, nothing lost but the dropped ones"
    );
    // The collector records a trace before its answer reaches the
    // forwarder, which counts it then.
    eventually("three traces counted", || {
        metrics.traces_forwarded.get() == 3
    })
    .await;
}
