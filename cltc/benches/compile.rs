//! Compile time and peak memory of generated leaf-spine fabrics.
//!
//! `cargo bench -p cltc --bench compile` prints, per size (10, 100, 1,000
//! nodes; 10 policies per leaf): the best time of several runs for the front
//! end (text to IR) and for the whole output (IR plus every artifact), in
//! wall time and in the thread's CPU time (the machine is shared: CPU time
//! leaves out the time other processes hold the core), the peak heap in use
//! during one compilation (a counting global allocator), and the growth from
//! one size to the next, with a verdict line per step and measure against
//! n log n over the nodes and over the input (nodes + links + policies;
//! verdicts on CPU time). `CLT_BENCH_SIZES=1000,2000,4000` picks other sizes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts bytes in use and the peak since the last reset.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator unchanged and only
// adds counters; layouts and pointers are passed through as received.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = IN_USE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                IN_USE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// CPU time this thread has used: unlike the wall clock, it does not count
/// the time other processes on a shared machine take the core away.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration;
    // CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall and CPU time since `start`.
#[derive(Clone, Copy)]
struct Stamp {
    wall: Instant,
    cpu: Duration,
}

impl Stamp {
    fn now() -> Stamp {
        Stamp {
            wall: Instant::now(),
            cpu: cpu_now(),
        }
    }

    fn elapsed(&self) -> (Duration, Duration) {
        (self.wall.elapsed(), cpu_now().saturating_sub(self.cpu))
    }
}

/// A leaf-spine fabric of exactly `n` nodes: spines (tofino), leaves (bmv2)
/// and Linux hosts, every leaf linked to every spine, 10 policies per leaf.
fn leaf_spine(n: usize) -> String {
    let spines = (n / 100).clamp(1, 8);
    let leaves = ((n - spines) / 9).max(1);
    let hosts = n - spines - leaves;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "domain dc {{\n    namespace 100\n    trace hop_limit_node_id, interface_ids, queue_depth\n    context w3c\n    collector 127.0.0.1:7123\n}}\n"
    );
    // Hosts per leaf, the first leaves take the remainder.
    let per_leaf: Vec<usize> = (0..leaves)
        .map(|l| hosts / leaves + usize::from(l < hosts % leaves))
        .collect();
    let mut id = 1;
    for sp in 0..spines {
        let _ = writeln!(
            s,
            "node spine{sp} tofino {{\n    id {id}\n    p4runtime 127.0.0.1:{} device {id}",
            20000 + id
        );
        id += 1;
        for l in 0..leaves {
            let _ = writeln!(
                s,
                "    port {} {{ id {} mac 02:01:{:02x}:{:02x}:{:02x}:01 }}",
                l + 1,
                l + 1,
                sp,
                l >> 8,
                l & 0xff
            );
        }
        s.push_str("}\n");
    }
    for (l, &h) in per_leaf.iter().enumerate() {
        let _ = writeln!(
            s,
            "node leaf{l} bmv2 {{\n    id {id}\n    p4runtime 127.0.0.1:{} device {id}",
            20000 + id
        );
        id += 1;
        for p in 0..h + spines {
            let _ = writeln!(
                s,
                "    port {} {{ id {} mac 02:02:{:02x}:{:02x}:{:02x}:{:02x} }}",
                p + 1,
                p + 1,
                l >> 8,
                l & 0xff,
                p >> 8,
                p & 0xff
            );
        }
        s.push_str("}\n");
        for i in 0..h {
            let _ = writeln!(
                s,
                "node h{l}x{i} linux {{\n    id {id}\n    interface eth0 {{ id 1 address 2001:db8:{l:x}:{i:x}::10/64 mac 02:03:{:02x}:{:02x}:{:02x}:01 }}\n}}",
                l >> 8,
                l & 0xff,
                i
            );
            id += 1;
            let _ = writeln!(s, "link h{l}x{i}.eth0 -- leaf{l}.{}", i + 1);
        }
        for sp in 0..spines {
            let _ = writeln!(s, "link leaf{l}.{} -- spine{sp}.{}", h + sp + 1, l + 1);
        }
    }
    for (l, &h) in per_leaf.iter().enumerate() {
        for k in 0..10 {
            let from = (l, k % h.max(1));
            let tl = (l + 1 + k) % leaves;
            let to = if tl == l {
                (tl, (k + 1) % per_leaf[tl].max(1))
            } else {
                (tl, k % per_leaf[tl].max(1))
            };
            if from == to {
                continue;
            }
            let _ = writeln!(
                s,
                "policy p{l}x{k} {{\n    domain dc\n    from h{}x{} to h{}x{}\n    match dst 2001:db8:{:x}:{:x}::/64 proto tcp dport {}\n}}",
                from.0,
                from.1,
                to.0,
                to.1,
                to.0,
                to.1,
                8000 + k
            );
        }
    }
    s
}

struct Measure {
    parse: Duration,
    front: Duration,
    full: Duration,
    /// The same two, in CPU time of this thread.
    front_cpu: Duration,
    full_cpu: Duration,
    front_peak: usize,
    peak: usize,
    policies: usize,
    routes: usize,
    /// Rendering the P4 artifacts (program, P4Info, entries) of every switch.
    p4: Duration,
    files: usize,
    out_bytes: usize,
    /// What the source declares: nodes + links + policies.
    items: usize,
}

fn measure(n: usize, runs: usize) -> Measure {
    let src = leaf_spine(n);
    let mut parse = Duration::MAX;
    let mut front = Duration::MAX;
    let mut full = Duration::MAX;
    let mut front_cpu = Duration::MAX;
    let mut full_cpu = Duration::MAX;
    let mut front_peak = 0;
    let mut peak = 0;
    let mut policies = 0;
    let mut routes = 0;
    let mut p4 = Duration::MAX;
    let mut files_n = 0;
    let mut out_bytes = 0;
    let mut items = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (ast, _) = cltc::parse_source(&src);
        parse = parse.min(t.elapsed());
        drop(ast);
        let base = IN_USE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t = Stamp::now();
        let c = cltc::compile_source("bench.clt", &src).expect("the generated fabric compiles");
        let (wall, cpu) = t.elapsed();
        front = front.min(wall);
        front_cpu = front_cpu.min(cpu);
        front_peak = front_peak.max(PEAK.load(Ordering::Relaxed) - base);
        let files = cltc::output::files("bench.clt", &c.fabric);
        let (wall, cpu) = t.elapsed();
        full = full.min(wall);
        full_cpu = full_cpu.min(cpu);
        peak = peak.max(PEAK.load(Ordering::Relaxed) - base);
        policies = c.fabric.policies.len();
        routes = c.fabric.nodes.iter().map(|n| n.routes.len()).sum();
        assert_eq!(c.fabric.nodes.len(), n);
        files_n = files.len();
        items = c.fabric.nodes.len() + c.fabric.links.len() + c.fabric.policies.len();
        out_bytes = files.iter().map(|f| f.contents.len()).sum();
        std::hint::black_box(files);
        let t = Instant::now();
        for (i, node) in c.fabric.nodes.iter().enumerate() {
            let target = match node.kind {
                cltc::ir::NodeKind::Linux => continue,
                cltc::ir::NodeKind::Bmv2 => cltc::backend::p4::Target::V1Model,
                cltc::ir::NodeKind::Tofino => cltc::backend::p4::Target::Tna,
            };
            let a = cltc::backend::p4::compile(&c.fabric, cltc::ir::NodeIdx(i as u32), target);
            std::hint::black_box(a);
        }
        p4 = p4.min(t.elapsed());
    }
    Measure {
        parse,
        front,
        full,
        front_cpu,
        full_cpu,
        front_peak,
        peak,
        policies,
        routes,
        p4,
        files: files_n,
        out_bytes,
        items,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too, then
    // one small size is enough.
    let quick = !std::env::args().any(|a| a == "--bench");
    // `CLT_BENCH_SIZES=1000,2000,4000` measures other sizes (exploration).
    let custom: Option<Vec<usize>> = std::env::var("CLT_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let sizes: &[usize] = match &custom {
        Some(v) if !v.is_empty() => v,
        _ if quick => &[10, 100],
        _ => &[10, 100, 1000],
    };
    println!(
        "{:>6} {:>8} {:>7} {:>9} {:>10} {:>10} {:>11} {:>10} {:>9}",
        "nodes",
        "policies",
        "routes",
        "parse",
        "front end",
        "ns/route",
        "all output",
        "front mem",
        "all mem"
    );
    let mut prev: Option<(usize, Measure)> = None;
    for &n in sizes {
        // Best of several runs: the machine is shared, the minimum is the
        // least disturbed.
        let runs = if n >= 1000 { 15 } else { 50 };
        let m = measure(n, runs);
        let spines = (n / 100).clamp(1, 8);
        let leaves = ((n - spines) / 9).max(1);
        let src_len = leaf_spine(n).len();
        println!(
            "# {n} nodes: {spines} tofino spines, {leaves} bmv2 leaves, {} linux hosts; {} KiB of source, parse {:.0} ns/byte",
            n - spines - leaves,
            src_len / 1024,
            m.parse.as_secs_f64() * 1e9 / src_len as f64
        );
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        println!(
            "{:>6} {:>8} {:>7} {:>7.2}ms {:>8.2}ms {:>10.0} {:>9.2}ms {:>7.1}MiB {:>6.1}MiB",
            n,
            m.policies,
            m.routes,
            ms(m.parse),
            ms(m.front),
            m.front.as_secs_f64() * 1e9 / (m.routes + n) as f64,
            ms(m.full),
            mib(m.front_peak),
            mib(m.peak)
        );
        println!(
            "       cpu time: front end {:.2}ms, all output {:.2}ms",
            ms(m.front_cpu),
            ms(m.full_cpu)
        );
        println!(
            "       output: {} files, {:.1} MiB, {:.1} ns per output byte; P4 artifacts {:.2}ms ({:.0}% of all output)",
            m.files,
            mib(m.out_bytes),
            m.full.as_secs_f64() * 1e9 / m.out_bytes.max(1) as f64,
            ms(m.p4),
            100.0 * m.p4.as_secs_f64() / m.full.as_secs_f64()
        );
        if let Some((pn, pm)) = &prev {
            let r = n as f64 / *pn as f64;
            let nlogn = r * (n as f64).ln() / (*pn as f64).ln();
            println!(
                "       x{r:.0} nodes (n log n: x{nlogn:.1}): parse x{:.1}, front end x{:.1}, routes x{:.1}, all output x{:.1}, front mem x{:.1}",
                m.parse.as_secs_f64() / pm.parse.as_secs_f64(),
                m.front.as_secs_f64() / pm.front.as_secs_f64(),
                m.routes as f64 / pm.routes as f64,
                m.full.as_secs_f64() / pm.full.as_secs_f64(),
                m.front_peak as f64 / pm.front_peak as f64,
            );
            // The goal: no stage grows faster than n log n, for n the nodes
            // and for n the input (nodes + links + policies: the spines go
            // from 1 to 8 between 100 and 1000 nodes, and every leaf links
            // to every spine, so the input grows faster than the nodes).
            let ri = m.items as f64 / pm.items as f64;
            let ilogi = ri * (m.items as f64).ln() / (pm.items as f64).ln();
            println!(
                "       input: {} -> {} items (nodes + links + policies), x{ri:.1}; n log n over the input: x{ilogi:.1}",
                pm.items, m.items
            );
            for (what, now, before) in [
                (
                    "front end (cpu)",
                    m.front_cpu.as_secs_f64(),
                    pm.front_cpu.as_secs_f64(),
                ),
                (
                    "all output (cpu)",
                    m.full_cpu.as_secs_f64(),
                    pm.full_cpu.as_secs_f64(),
                ),
                ("peak memory", m.peak as f64, pm.peak as f64),
                ("routes", m.routes as f64, pm.routes as f64),
            ] {
                let growth = now / before;
                let judge = |bound: f64| {
                    if growth <= bound { "ok" } else { "FASTER" }
                };
                println!(
                    "       verdict {pn} -> {n} nodes, {what}: x{growth:.1}; n log n over nodes x{nlogn:.1}: {}; over the input x{ilogi:.1}: {}",
                    judge(nlogn),
                    judge(ilogi)
                );
            }
        }
        prev = Some((n, m));
    }
}
