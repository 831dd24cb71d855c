//! Runs one decoder of the benchmark `N` times, for instruction counting
//! under valgrind (the per-packet count is the difference between two `N`):
//!
//! ```text
//! cargo build --release -p clt-wire --example icount
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/icount repr 10000
//! ```
//!
//! Decoders: see `benches/common/mod.rs`.

#[path = "../benches/common/mod.rs"]
mod common;

use common::*;
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_default();
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let packet = packet();
    if which == "fields-only" {
        // The decode alone, on a trace parsed once; also timed (the fastest
        // of rounds of 10 000).
        let parsed = clt_wire::PacketRepr::parse(&packet).expect("parses");
        let trace = parsed
            .hbh
            .as_ref()
            .and_then(|h| h.ioam_trace())
            .expect("trace");
        let mut sum = 0u64;
        let mut ns = f64::MAX;
        for _ in 0..n.div_ceil(10_000) {
            let start = std::time::Instant::now();
            for _ in 0..10_000 {
                black_box(trace).for_each_field(|hop, _, v| sum = sum.wrapping_add(v + hop as u64));
            }
            ns = ns.min(start.elapsed().as_nanos() as f64 / 10_000.0);
        }
        println!("{which} x{n}: {sum} ({ns:.1} ns each)");
        return;
    }
    let f: fn(&[u8]) -> u64 = match which.as_str() {
        "repr" => clt_repr,
        "entries" => clt_entries,
        "headers" => clt_headers,
        "visit" => clt_visit,
        "etherparse" => |p| etherparse_slice(p) as u64,
        other => {
            eprintln!(
                "unknown decoder {other:?}: repr, entries, visit, headers, etherparse, fields-only"
            );
            std::process::exit(2);
        }
    };
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(f(black_box(&packet)));
    }
    println!("{which} x{n}: {sum}");
}
