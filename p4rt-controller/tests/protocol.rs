//! The controller's P4Runtime protocol logic against an in-process,
//! scripted P4Runtime server (see `common/mod.rs`). The same flows against
//! bmv2's simple_switch_grpc live in bmv2-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::Ipv6Addr;
use std::time::Duration;

use clt_controller::config::DigestConfig;
use clt_controller::device::Device;
use clt_controller::forward::Forwarder;
use clt_controller::inputs::DeviceInputs;
use clt_controller::metrics::Metrics;
use clt_controller::proto::p4::v1 as p4;
use clt_controller::{Error, Mastership, P4InfoIndex, PipelineAction, Session};
use common::*;
use tonic::Code;

/// A switch with pipeline `v1`, its index, and the primary session that
/// pushed it.
async fn primary() -> (FakeSwitch, P4InfoIndex, Session) {
    let (sw, addr) = FakeSwitch::start().await;
    let mut s = session(addr, 1).await;
    s.ensure_pipeline(&pipeline(b"v1")).await.unwrap();
    (sw, P4InfoIndex::new(p4info()), s)
}

/// A pipeline tagged `tag` with `entries` and no digest.
fn inputs(tag: &[u8], entries: Vec<p4::TableEntry>) -> DeviceInputs {
    DeviceInputs {
        pipeline: pipeline(tag),
        entries,
        digests: vec![],
    }
}

fn insert(e: p4::TableEntry) -> p4::Update {
    update(p4::update::Type::Insert, e)
}

fn update(ty: p4::update::Type, e: p4::TableEntry) -> p4::Update {
    p4::Update {
        r#type: ty as i32,
        entity: Some(p4::Entity {
            entity: Some(p4::entity::Entity::TableEntry(e)),
        }),
    }
}

async fn wait_mastership(s: &Session, want: impl Fn(&Mastership) -> bool) -> Mastership {
    let mut rx = s.watch_mastership();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|m| want(m)))
        .await
        .expect("mastership change in time")
        .expect("stream reader alive")
        .clone()
}

#[tokio::test]
async fn arbitration_lost_and_regained() {
    let (sw, addr) = FakeSwitch::start().await;
    let info = P4InfoIndex::new(p4info());
    let mut a = session(addr, 10).await;
    assert_eq!(a.mastership(), Mastership::Primary);
    a.ensure_pipeline(&pipeline(b"v1")).await.unwrap();

    // A second controller with a higher election id takes over.
    let mut b = session(addr, 20).await;
    assert_eq!(b.mastership(), Mastership::Primary);
    let m = wait_mastership(&a, |m| matches!(m, Mastership::Backup { .. })).await;
    assert_eq!(m, Mastership::Backup { primary: Some(20) });

    // The backup may not write: refused locally...
    let r = a
        .write_batched(&info, vec![insert(routes(1)[0].clone())], 10)
        .await;
    assert!(
        matches!(r, Err(Error::NotPrimary { device_id: 1 })),
        "{r:?}"
    );
    // ...and by the switch, had it tried.
    let status = a
        .write(vec![insert(routes(1)[0].clone())])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(sw.state().tables.is_empty());

    // The new primary writes.
    let (_, errors) = b
        .write_batched(&info, vec![insert(routes(2)[1].clone())], 10)
        .await
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");

    // It goes away: the first controller is primary again and writes.
    drop(b);
    let m = wait_mastership(&a, |m| *m == Mastership::Primary).await;
    assert_eq!(m, Mastership::Primary);
    let report = a.reconcile(&info, &routes(3), 10).await.unwrap();
    assert_eq!((report.read, report.inserted, report.unchanged), (1, 2, 1));
    assert_eq!(sw.state().tables.len(), 3);
}

#[tokio::test]
async fn mixed_batch_reports_each_failed_update_by_name() {
    let (sw, info, mut s) = primary().await;

    let r = routes(4);
    s.write(vec![insert(r[0].clone())]).await.unwrap();
    // The switch refuses any route to port 4 (as a full table would).
    let port4 = canonical(&4u16.to_be_bytes());
    sw.state().reject = Some(Box::new(move |u| {
        let Some(p4::entity::Entity::TableEntry(t)) =
            u.entity.as_ref().and_then(|e| e.entity.as_ref())
        else {
            return None;
        };
        let Some(p4::table_action::Type::Action(a)) =
            t.action.as_ref().and_then(|a| a.r#type.as_ref())
        else {
            return None;
        };
        a.params
            .iter()
            .any(|p| p.param_id == PARAM_PORT && p.value == port4)
            .then(|| (Code::ResourceExhausted, "table full".to_string()))
    }));

    let batch = vec![
        insert(r[0].clone()),                           // exists: ALREADY_EXISTS
        insert(r[1].clone()),                           // fine
        update(p4::update::Type::Modify, r[2].clone()), // missing: NOT_FOUND
        insert(r[3].clone()),                           // port 4: RESOURCE_EXHAUSTED
    ];
    let (batches, errors) = s.write_batched(&info, batch, 100).await.unwrap();
    assert_eq!(batches, 1);
    let summary: Vec<_> = errors
        .iter()
        .map(|e| (e.op, e.code, e.table.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("INSERT", Code::AlreadyExists, "ingress.ipv6_lpm"),
            ("MODIFY", Code::NotFound, "ingress.ipv6_lpm"),
            ("INSERT", Code::ResourceExhausted, "ingress.ipv6_lpm"),
        ]
    );
    // Entries are named with their match and action, readable by an operator.
    assert_eq!(
        errors[0].entry,
        "ingress.ipv6_lpm[hdr.ipv6.dst_addr=2001:db8::/64] -> ingress.set_nexthop(port=1, dmac=02:00:00:00:00:01)"
    );
    assert!(
        errors[2].entry.contains("2001:db8:0:3::/64"),
        "{}",
        errors[2].entry
    );
    assert_eq!(errors[2].message, "table full");
    // The good update of the batch was applied.
    assert_eq!(sw.state().tables.len(), 2);
}

#[tokio::test]
async fn reconcile_after_partial_write_writes_only_what_is_missing() {
    let (sw, info, mut s) = primary().await;
    let desired = routes(50);

    // First attempt: the switch rejects every entry whose third group is odd.
    sw.state().reject = Some(Box::new(|u| {
        match u.entity.as_ref().and_then(|e| e.entity.as_ref()) {
            Some(p4::entity::Entity::TableEntry(t)) => match &t.r#match[0].field_match_type {
                Some(p4::field_match::FieldMatchType::Lpm(l))
                    if l.value.len() >= 8 && l.value[7] % 2 == 1 =>
                {
                    Some((Code::Internal, "transient".into()))
                }
                _ => None,
            },
            _ => None,
        }
    }));
    let first = s.reconcile(&info, &desired, 16).await.unwrap();
    assert_eq!(first.inserted, 25);
    assert_eq!(first.errors.len(), 25);
    assert_eq!(first.batches, 4); // 50 updates in batches of 16
    assert!(matches!(
        first.clone().into_result(),
        Err(Error::Write { .. })
    ));

    // Second attempt: only the 25 missing entries are written.
    sw.state().reject = None;
    let calls_before = sw.state().write_sizes.len();
    let second = s.reconcile(&info, &desired, 16).await.unwrap();
    assert_eq!(
        (second.read, second.inserted, second.unchanged),
        (25, 25, 25)
    );
    assert!(second.errors.is_empty());
    let sizes = sw.state().write_sizes[calls_before..].to_vec();
    assert_eq!(sizes.iter().sum::<usize>(), 25, "{sizes:?}");

    // A changed next hop, a removed route, a new route: three updates.
    let mut changed = desired.clone();
    changed[7] = route(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, 0),
        64,
        9,
        [2, 0, 0, 0, 0, 9],
    );
    changed.remove(10);
    changed.push(route(
        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0),
        48,
        2,
        [2, 0, 0, 0, 0, 2],
    ));
    let calls_before = sw.state().write_sizes.len();
    let third = s.reconcile(&info, &changed, 16).await.unwrap();
    assert_eq!(
        (
            third.deleted,
            third.modified,
            third.inserted,
            third.unchanged
        ),
        (1, 1, 1, 48)
    );
    assert_eq!(sw.state().write_sizes[calls_before..], [3]);
    assert_eq!(sw.state().tables.len(), 50);

    // Nothing to do: no Write at all.
    let calls_before = sw.state().write_calls;
    let fourth = s.reconcile(&info, &changed, 16).await.unwrap();
    assert_eq!((fourth.unchanged, fourth.batches), (50, 0));
    assert_eq!(sw.state().write_calls, calls_before);
}

#[tokio::test]
async fn pipeline_push_is_skipped_when_the_cookie_matches() {
    let (sw, addr) = FakeSwitch::start().await;
    let mut s = session(addr, 1).await;
    assert_eq!(s.pipeline_cookie().await.unwrap(), None);
    let v1 = pipeline(b"program v1");
    assert_eq!(
        s.ensure_pipeline(&v1).await.unwrap(),
        PipelineAction::Pushed
    );
    assert_eq!(s.pipeline_cookie().await.unwrap(), Some(v1.cookie));
    assert_eq!(
        s.ensure_pipeline(&v1).await.unwrap(),
        PipelineAction::Skipped
    );
    assert_eq!(sw.state().set_pipeline_calls, 1);

    let v2 = pipeline(b"program v2");
    assert_ne!(v1.cookie, v2.cookie);
    assert_eq!(
        s.ensure_pipeline(&v2).await.unwrap(),
        PipelineAction::Pushed
    );
    assert_eq!(sw.state().set_pipeline_calls, 2);
    assert_eq!(
        sw.state().pipeline.as_ref().unwrap().cookie.unwrap().cookie,
        v2.cookie
    );
}

/// A digest as the P4 program packs it: two hops' entries of trace type
/// 0xC00000 (hop limit + node id, interface ids) at the end of 4 hops' room.
fn digest_data(trace_id: u128, span_id: u64) -> p4::P4Data {
    use clt_wire::{HopLimitNodeId, InterfaceIds, NodeRepr, TraceType};
    let tt = TraceType::from_bits(0xC0_0000);
    let mut node_data = vec![0u8; 32];
    // Last hop first in the packet: node 2 at offset 16, node 1 at 24.
    for (at, id, (ing, eg)) in [(16usize, 2u32, (3u16, 4u16)), (24, 1, (1, 2))] {
        let n = NodeRepr {
            hop_limit_node_id: Some(HopLimitNodeId {
                hop_limit: 64 - id as u8,
                node_id: id,
            }),
            interface_ids: Some(InterfaceIds {
                ingress: ing,
                egress: eg,
            }),
            ..Default::default()
        };
        n.emit(tt, &mut node_data[at..at + 8]).unwrap();
    }
    let bs = |b: &[u8]| p4::P4Data {
        data: Some(p4::p4_data::Data::Bitstring(canonical(b))),
    };
    p4::P4Data {
        data: Some(p4::p4_data::Data::Struct(p4::P4StructLike {
            members: vec![
                bs(&0x0123u16.to_be_bytes()),
                bs(&0xC0_0000u32.to_be_bytes()[1..]),
                bs(&[4]), // RemLen: 16 bytes free
                bs(&[0]),
                bs(&node_data),
                bs(&trace_id.to_be_bytes()),
                bs(&span_id.to_be_bytes()),
            ],
        })),
    }
}

#[tokio::test]
async fn digest_lists_are_acked_decoded_and_forwarded() {
    let (sw, addr) = FakeSwitch::start().await;
    let (collector, caddr) = start_collector().await;
    let metrics = Metrics::default();
    let (forwarder, _task) = Forwarder::spawn(&caddr.to_string(), 64, metrics.clone()).unwrap();
    let inputs = inputs(b"digest", routes(3));
    let running = Running::spawn(
        Device::new(spec(addr, "r1"), inputs, Some(forwarder), metrics.clone()).unwrap(),
    );
    let mut status = running.device.watch_status();
    status.wait_for(|s| s.installs == 1).await.unwrap();
    // The digest was configured with the configured limits.
    let cfg = sw
        .state()
        .digest_configs
        .get(&DIGEST_ID)
        .cloned()
        .expect("digest configured");
    assert_eq!(cfg.max_list_size, DigestConfig::default().max_list_size);

    let trace_id = 0x0af7651916cd43dd8448eb211c80319c_u128;
    sw.send_digest(p4::DigestList {
        digest_id: DIGEST_ID,
        list_id: 77,
        data: vec![digest_data(trace_id, 0xb7ad6b7169203331), digest_data(1, 2)],
        timestamp: 0,
    });
    // A malformed digest (not a struct) is counted and skipped, and its list
    // still acknowledged.
    sw.send_digest(p4::DigestList {
        digest_id: DIGEST_ID,
        list_id: 78,
        data: vec![p4::P4Data {
            data: Some(p4::p4_data::Data::Bitstring(vec![1])),
        }],
        timestamp: 0,
    });
    eventually("both acks", || sw.state().acks.len() == 2).await;
    assert_eq!(sw.state().acks, vec![(DIGEST_ID, 77), (DIGEST_ID, 78)]);
    eventually("two traces at the collector", || {
        collector.0.lock().unwrap().len() == 2
    })
    .await;
    let traces = collector.0.lock().unwrap().clone();
    let t = &traces[0];
    assert_eq!(
        (t.trace_id_high, t.trace_id_low),
        ((trace_id >> 64) as u64, trace_id as u64)
    );
    assert_eq!(t.span_id, 0xb7ad6b7169203331);
    assert_eq!(t.namespace_id, 0x0123);
    assert_eq!(t.bit_field, 0xC0_0000 << 8);
    // Path order: node 1 then node 2.
    let hops: Vec<_> = t
        .nodes
        .iter()
        .map(|n| (n.id, n.hop_limit, n.ingress_id, n.egress_id))
        .collect();
    assert_eq!(hops, vec![(1, 63, 1, 2), (2, 62, 3, 4)]);
    assert_eq!(
        metrics
            .digests_malformed
            .get_or_create(&Metrics::device("r1"))
            .get(),
        1
    );
    running.stop().await;
}

#[tokio::test]
async fn a_restarted_switch_gets_pipeline_and_entries_again() {
    let (sw, addr) = FakeSwitch::start().await;
    let inputs = inputs(b"restart", routes(20));
    let running =
        Running::spawn(Device::new(spec(addr, "r1"), inputs, None, Metrics::default()).unwrap());
    let mut status = running.device.watch_status();
    status.wait_for(|s| s.installs == 1).await.unwrap();
    assert_eq!(sw.state().tables.len(), 20);
    assert_eq!(sw.state().set_pipeline_calls, 1);

    sw.restart();
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.installs == 2),
    )
    .await
    .expect("reinstalled in time")
    .unwrap()
    .clone();
    assert_eq!(s.sessions, 2);
    assert_eq!(s.pipeline_pushes, 2);
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("switch restarting")),
        "{s:?}"
    );
    assert_eq!(s.last_report.as_ref().map(|r| r.inserted), Some(20));
    assert_eq!(sw.state().tables.len(), 20);
    running.stop().await;
}

#[tokio::test]
async fn an_unreachable_device_is_retried_with_backoff() {
    // Bind then drop: nothing listens on this port.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let inputs = inputs(b"x", vec![]);
    let running =
        Running::spawn(Device::new(spec(addr, "down"), inputs, None, Metrics::default()).unwrap());
    let mut status = running.device.watch_status();
    let s = status
        .wait_for(|s| s.last_error.is_some())
        .await
        .unwrap()
        .clone();
    assert!(
        s.last_error.unwrap().contains("cannot connect"),
        "connect error reported"
    );
    assert_eq!(s.sessions, 0);
    // Promptly, though it is waiting out a backoff.
    running.stop_within(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn verify_reads_back_without_writing() {
    let (sw, info, mut s) = primary().await;
    let desired = routes(10);
    assert_eq!(s.verify(&info, &desired).await.unwrap().insert.len(), 10);
    s.reconcile(&info, &desired, 4)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let calls = sw.state().write_calls;
    assert!(s.verify(&info, &desired).await.unwrap().is_empty());
    // Changed behind the controller's back: verification sees it.
    let key = sw.state().tables.keys().nth(3).cloned().unwrap();
    sw.state().tables.get_mut(&key).unwrap().action = routes(10)[0].action.clone();
    let plan = s.verify(&info, &desired).await.unwrap();
    assert_eq!((plan.modify.len(), plan.len()), (1, 1));
    assert_eq!(sw.state().write_calls, calls, "verify never writes");
}

#[tokio::test]
async fn the_daemon_repairs_entries_changed_behind_its_back() {
    let (sw, addr) = FakeSwitch::start().await;
    let inputs = inputs(b"resync", routes(6));
    let mut spec = spec(addr, "r1");
    spec.resync = Some(Duration::from_millis(50));
    let running = Running::spawn(Device::new(spec, inputs, None, Metrics::default()).unwrap());
    let mut status = running.device.watch_status();
    status.wait_for(|s| s.installs >= 1).await.unwrap();
    // An operator deletes one route and adds a stray one by hand.
    let key = sw.state().tables.keys().next().cloned().unwrap();
    sw.state().tables.remove(&key);
    let stray = route(
        Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0),
        64,
        1,
        [2, 0, 0, 0, 0, 1],
    );
    sw.state().tables.insert(
        clt_controller::reconcile::EntryKey::of(&stray),
        stray.clone(),
    );
    let s = tokio::time::timeout(
        Duration::from_secs(5),
        status.wait_for(|s| {
            s.last_report
                .as_ref()
                .is_some_and(|r| r.inserted == 1 && r.deleted == 1)
        }),
    )
    .await
    .expect("repaired in time")
    .unwrap()
    .clone();
    assert_eq!(s.sessions, 1, "repaired without reconnecting");
    let tables = sw.state().tables.clone();
    assert_eq!(tables.len(), 6);
    assert!(tables.contains_key(&key));
    assert!(!tables.contains_key(&clt_controller::reconcile::EntryKey::of(&stray)));
    running.stop().await;
}
