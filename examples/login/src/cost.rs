//! What the demo's own threads spend per login, phase by phase: CPU time
//! and context switches, read from `/proc/self/task` at each phase's start
//! and end. Unlike the RTT, these counts barely move with the machine's
//! other load, so they show CLT's cost where the RTT's noise hides it.
//!
//! Every host of the demo runs as threads of this one process, named after
//! it (see `lib.rs`), so the threads group into the client (`entry`), the
//! application server, the agent, the collector and the OpenTelemetry SDK's
//! exporter. Kernel work done in a thread's context (the softirq that
//! forwards a packet through the veths and the router, the IOAM header's
//! processing, the trace event) is charged to that thread.

use serde::Serialize;
use std::collections::BTreeMap;

/// One thread's (or group's) counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Time on a CPU, ns (`/proc/<tid>/schedstat`, first field).
    pub cpu_ns: u64,
    /// Times it went to sleep waiting for something: each one is a wakeup
    /// later (`voluntary_ctxt_switches`).
    pub voluntary: u64,
    /// Times the scheduler took the CPU away (`nonvoluntary_ctxt_switches`).
    pub involuntary: u64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.cpu_ns += o.cpu_ns;
        self.voluntary += o.voluntary;
        self.involuntary += o.involuntary;
    }

    fn minus(&self, o: &Usage) -> Usage {
        Usage {
            cpu_ns: self.cpu_ns.saturating_sub(o.cpu_ns),
            voluntary: self.voluntary.saturating_sub(o.voluntary),
            involuntary: self.involuntary.saturating_sub(o.involuntary),
        }
    }
}

/// The groups, in the order tables show them.
pub const GROUPS: [&str; 6] = [
    "client",
    "server",
    "agent",
    "collector",
    "otel-sdk",
    "other",
];

/// The group of a thread, by its name (`comm`, at most 15 bytes).
pub fn group(comm: &str) -> &'static str {
    if comm.starts_with("entry") {
        "client"
    } else if comm.starts_with("server") {
        "server"
    } else if comm.starts_with("agent") || comm.starts_with("clt-agent") {
        "agent"
    } else if comm.starts_with("obs") {
        "collector"
    } else if comm.starts_with("OpenTelemetry") {
        "otel-sdk"
    } else {
        "other"
    }
}

/// Every thread of this process, by id: its group and counters.
pub type Snapshot = BTreeMap<u32, (&'static str, Usage)>;

/// Reads every thread of this process. Threads that end while it reads are
/// left out.
pub fn snapshot() -> Snapshot {
    let mut out = Snapshot::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let p = e.path();
        let (Ok(comm), Ok(sched), Ok(status)) = (
            std::fs::read_to_string(p.join("comm")),
            std::fs::read_to_string(p.join("schedstat")),
            std::fs::read_to_string(p.join("status")),
        ) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let usage = Usage {
            cpu_ns: sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
        };
        out.insert(tid, (group(comm.trim()), usage));
    }
    out
}

/// What each group spent between two snapshots (a thread born in between
/// counts from zero; one that ended is lost with what it spent).
pub fn between(before: &Snapshot, after: &Snapshot) -> BTreeMap<&'static str, Usage> {
    let mut out = BTreeMap::new();
    for (tid, (g, u)) in after {
        let d = match before.get(tid) {
            Some((_, b)) => u.minus(b),
            None => *u,
        };
        out.entry(*g).or_insert_with(Usage::default).add(&d);
    }
    out
}

/// One phase's cost.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseCost {
    pub run: String,
    pub phase: usize,
    pub name: String,
    pub requests: usize,
    pub groups: BTreeMap<&'static str, Usage>,
}

impl PhaseCost {
    /// CPU µs and wakeups (voluntary switches) per request of `group`.
    pub fn per_request(&self, group: &str) -> (f64, f64) {
        let u = self.groups.get(group).copied().unwrap_or_default();
        let n = self.requests.max(1) as f64;
        (u.cpu_ns as f64 / 1e3 / n, u.voluntary as f64 / n)
    }

    /// The same, summed over every group.
    pub fn total_per_request(&self) -> (f64, f64) {
        let mut t = Usage::default();
        for u in self.groups.values() {
            t.add(u);
        }
        let n = self.requests.max(1) as f64;
        (t.cpu_ns as f64 / 1e3 / n, t.voluntary as f64 / n)
    }
}

/// A markdown table: per phase, CPU µs and wakeups per request by group.
pub fn table(costs: &[PhaseCost]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("| run | phase | requests |");
    for g in GROUPS {
        let _ = write!(s, " {g} |");
    }
    s.push_str(" total |\n|---|---|---:|");
    for _ in 0..=GROUPS.len() {
        s.push_str("---:|");
    }
    s.push('\n');
    for c in costs {
        let _ = write!(
            s,
            "| {} | {} {} | {} |",
            c.run,
            c.phase + 1,
            c.name,
            c.requests
        );
        for g in GROUPS {
            let (cpu, w) = c.per_request(g);
            let _ = write!(s, " {cpu:.1} / {w:.2} |");
        }
        let (cpu, w) = c.total_per_request();
        let _ = writeln!(s, " {cpu:.1} / {w:.2} |");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_thread_name() {
        assert_eq!(group("entry"), "client");
        assert_eq!(group("agent-rt"), "agent");
        assert_eq!(group("clt-agent-ev"), "agent");
        assert_eq!(group("obs-rt"), "collector");
        assert_eq!(group("OpenTelemetry.T"), "otel-sdk");
        assert_eq!(group("bulk"), "other");
    }

    #[test]
    fn this_thread_is_seen_and_spends_time() {
        let a = snapshot();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = snapshot();
        assert!(!b.is_empty());
        let d = between(&a, &b);
        assert!(d.values().map(|u| u.cpu_ns).sum::<u64>() > 0, "{d:?}");
    }

    #[test]
    fn per_request_divides_by_the_requests() {
        let mut groups = BTreeMap::new();
        groups.insert(
            "agent",
            Usage {
                cpu_ns: 4_000_000,
                voluntary: 300,
                involuntary: 1,
            },
        );
        let c = PhaseCost {
            run: "overhead".into(),
            phase: 1,
            name: "clt".into(),
            requests: 1000,
            groups,
        };
        assert_eq!(c.per_request("agent"), (4.0, 0.3));
        assert_eq!(c.per_request("server"), (0.0, 0.0));
        assert!(table(&[c]).contains("| overhead | 2 clt | 1000 |"));
    }
}
