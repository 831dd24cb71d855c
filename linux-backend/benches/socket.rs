//! Cost of the CLT socket API per request: `enable` (build the Hop-by-Hop
//! header with this node's entry, one `setsockopt`) plus `disable` (one
//! `setsockopt`), against the two bare `setsockopt` calls with a prebuilt
//! header as the baseline. Runs as root in a private network namespace
//! configured by `clt-linux` from a cltc plan; says why it is skipped
//! otherwise (clt-testkit's report_skip).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clt_linux::{Insertion, Options, netns, nl::Netlink, plan, socket};
use clt_testkit::{Netns, report_skip, skip, veth};
use criterion::Criterion;
use std::hint::black_box;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

const POLICY: &str = r#"
domain d {
    namespace 123
    trace hop_limit_node_id, interface_ids, queue_depth
    context w3c
    collector 127.0.0.1:7123
}
node a linux { id 1 interface eth0 { id 11 address db01::1/64 } }
node b linux { id 2 interface eth0 { id 21 address db01::2/64 } }
link a.eth0 -- b.eth0
policy p { domain d from a to b match dst db01::/64 }
"#;

fn main() {
    if let Some(why) = skip::netns_unavailable() {
        report_skip(&why);
        return;
    }
    let (a, b) = (Netns::new("cltbencha"), Netns::new("cltbenchb"));
    veth(&a, "eth0", &b, "eth0");
    let compiled = cltc::compile_source("bench.clt", POLICY).expect("policy compiles");
    let plan_a = cltc::backend::linux::plan(&compiled.fabric, cltc::ir::NodeIdx(0));
    let policy = plan_a.encap[0].clone();
    let p = plan_a.clone();
    let start = std::time::Instant::now();
    netns::run_in(Some(a.name()), move || {
        plan::apply(
            &Netlink::open()?,
            &p,
            &Options {
                insertion: Insertion::Socket,
            },
        )
    })
    .expect("apply");
    eprintln!("apply of node a's plan: {:?}", start.elapsed());

    // Criterion runs on this thread: move it into A for good.
    netns::enter(a.name()).expect("enter netns");
    let sock = UdpSocket::bind("[::]:0").unwrap();
    sock.connect("[db01::2]:9").unwrap();
    let ids = ([0x42; 16], [0x17; 8]);
    // Warm the per-namespace cache (sysctls, namespaces, egress route).
    socket::enable(&sock, &policy, ids.0, ids.1).unwrap();
    let prebuilt = socket::header(&sock, &policy, ids.0, ids.1, &Default::default()).unwrap();
    eprintln!("header: {} bytes", prebuilt.len());

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("clt_socket");
    g.bench_function("enable+disable", |bench| {
        bench.iter(|| {
            socket::enable(&sock, black_box(&policy), black_box(ids.0), ids.1).unwrap();
            socket::disable(&sock).unwrap();
        })
    });
    let marker = socket::Marker::new(&sock, &policy, &Default::default()).unwrap();
    g.bench_function("Marker::enable+disable", |bench| {
        bench.iter(|| {
            marker.enable(&sock, black_box(ids.0), ids.1).unwrap();
            socket::disable(&sock).unwrap();
        })
    });
    g.bench_function("baseline: setsockopt(prebuilt)+clear", |bench| {
        let fd = sock.as_raw_fd();
        bench.iter(|| {
            set(fd, black_box(&prebuilt));
            set(fd, &[]);
        })
    });
    g.bench_function("header build only", |bench| {
        bench.iter(|| {
            socket::header(&sock, black_box(&policy), ids.0, ids.1, &Default::default()).unwrap()
        })
    });
    // An apply that finds nothing to do: reading the kernel back (links,
    // addresses, neighbours, routes, IOAM namespaces and schemas, sysctls)
    // and diffing.
    let nl = Netlink::open().unwrap();
    let opts = Options {
        insertion: Insertion::Socket,
    };
    g.bench_function("apply (already applied: read back + diff)", |bench| {
        bench.iter(|| {
            let r = plan::apply(&nl, &plan_a, &opts).unwrap();
            assert!(r.changes.is_empty());
        })
    });
    g.finish();
    c.final_summary();
}

/// The baseline's raw setsockopt (the same call the crate makes).
fn set(fd: i32, data: &[u8]) {
    let ptr = if data.is_empty() {
        std::ptr::null()
    } else {
        data.as_ptr()
    };
    // SAFETY: `data` outlives the call; `fd` is the open socket above.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            54,
            ptr.cast(),
            data.len() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}
