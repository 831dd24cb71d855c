//! The outputs: the RTT CSV, the summary table, the plots and one enriched
//! login span read back from the collector's store.

use crate::load::{CSV_HEADER, RunSpec, SERVICE, SPAN_NAME, Sample};
use crate::stats::{self, Estimate};
use crate::topology::RouterKind;
use anyhow::{Context, Result};
use clt_collector::model::{AttrValue, OutSpan};
use clt_collector::store::Store;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Bootstrap resamples for the confidence intervals.
pub const ROUNDS: usize = 1_000;

/// Per-phase statistics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseStats {
    pub run: String,
    pub phase: usize,
    pub name: String,
    pub congested: bool,
    pub clt: bool,
    pub requests: usize,
    pub rate: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

pub fn rtts<'a>(samples: &'a [Sample], run: &'a str, phase: usize) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| s.run == run && s.phase == phase)
        .map(|s| s.rtt_ms)
        .collect()
}

pub fn phase_stats(spec: &RunSpec, samples: &[Sample]) -> Vec<PhaseStats> {
    spec.phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let in_phase: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.run == spec.name && s.phase == i)
                .collect();
            let r: Vec<f64> = in_phase.iter().map(|s| s.rtt_ms).collect();
            let span = match (in_phase.first(), in_phase.last()) {
                (Some(a), Some(b)) if b.t_s > a.t_s => b.t_s - a.t_s,
                _ => f64::NAN,
            };
            let q = |x| stats::quantile(&r, x).unwrap_or(f64::NAN);
            PhaseStats {
                run: spec.name.to_string(),
                phase: i,
                name: p.name.to_string(),
                congested: p.congested,
                clt: p.clt,
                requests: r.len(),
                rate: r.len().saturating_sub(1) as f64 / span,
                median_ms: q(0.5),
                p95_ms: q(0.95),
                p99_ms: q(0.99),
            }
        })
        .collect()
}

/// The length of the blocks the noise is estimated from.
pub const BLOCK_SECS: f64 = 1.0;

/// A phase's RTTs cut into [`BLOCK_SECS`] blocks, from its first request.
pub fn blocks(samples: &[Sample], run: &str, phase: usize) -> Vec<Vec<f64>> {
    let in_phase: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.run == run && s.phase == phase)
        .collect();
    let Some(first) = in_phase.first().map(|s| s.t_s) else {
        return Vec::new();
    };
    let mut out: Vec<Vec<f64>> = Vec::new();
    for s in in_phase {
        let b = ((s.t_s - first) / BLOCK_SECS) as usize;
        if out.len() <= b {
            out.resize(b + 1, Vec::new());
        }
        out[b].push(s.rtt_ms);
    }
    out
}

/// CLT's effect and the noise it is compared with, for one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub what: String,
    /// `median(with CLT) - median(without)`, ms, every CLT phase pooled
    /// against every CLT-off phase of the same congestion, with a 95%
    /// block-bootstrap CI ([`stats::block_median_diff`], [`BLOCK_SECS`]
    /// blocks).
    pub clt_effect: Option<Estimate>,
    /// Each pair of consecutive CLT-off phases: two repeated runs without
    /// CLT.
    pub off_pairs: Vec<OffPair>,
    /// The noise between two repeated runs without CLT, ms: the mean of
    /// the pairs' [`OffPair::noise`].
    pub noise: Option<f64>,
}

/// Two consecutive CLT-off phases of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OffPair {
    pub earlier: String,
    pub later: String,
    /// `median(later) - median(earlier)`, ms, with its 95% CI.
    pub diff: Estimate,
    /// The larger end in absolute value of `diff`'s interval
    /// ([`stats::run_to_run_noise`]): the drift that was seen plus what
    /// sampling could have added to it.
    pub noise: f64,
}

impl Comparison {
    /// The criterion: CLT's effect on the median is smaller than
    /// the noise between two repeated runs without CLT. `None` when the
    /// run has no CLT phase or fewer than two CLT-off phases to compare.
    pub fn below_noise(&self) -> Option<bool> {
        Some(self.clt_effect?.value.abs() < self.noise?)
    }
}

/// For the congestion run: congested+CLT against congested. For the
/// overhead run: every CLT phase against every CLT-off phase, pooled (they
/// alternate, starting and ending without CLT, so a steady drift cancels),
/// and the noise of each pair of consecutive CLT-off phases.
pub fn comparison(spec: &RunSpec, samples: &[Sample]) -> Comparison {
    let Some(cong) = spec.phases.iter().find(|p| p.clt).map(|p| p.congested) else {
        return Comparison {
            what: "no CLT phase".into(),
            clt_effect: None,
            off_pairs: Vec::new(),
            noise: None,
        };
    };
    let (with, without): (Vec<usize>, Vec<usize>) = (0..spec.phases.len())
        .filter(|&i| spec.phases[i].congested == cong)
        .partition(|&i| spec.phases[i].clt);
    let pooled = |phases: &[usize]| -> Vec<Vec<f64>> {
        phases
            .iter()
            .flat_map(|&i| blocks(samples, spec.name, i))
            .collect()
    };
    let off_pairs: Vec<OffPair> = without
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (
                blocks(samples, spec.name, w[0]),
                blocks(samples, spec.name, w[1]),
            );
            Some(OffPair {
                earlier: spec.phases[w[0]].name.clone(),
                later: spec.phases[w[1]].name.clone(),
                diff: stats::block_median_diff(&a, &b, ROUNDS, 0.95)?,
                noise: stats::run_to_run_noise(&a, &b, ROUNDS, 0.95)?,
            })
        })
        .collect();
    let noise = (!off_pairs.is_empty())
        .then(|| off_pairs.iter().map(|p| p.noise).sum::<f64>() / off_pairs.len() as f64);
    let names = |phases: &[usize]| -> String {
        phases
            .iter()
            .map(|&i| spec.phases[i].name.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    Comparison {
        what: format!(
            "{}: median({}) - median({})",
            spec.name,
            names(&with),
            names(&without)
        ),
        clt_effect: stats::block_median_diff(&pooled(&without), &pooled(&with), ROUNDS, 0.95),
        off_pairs,
        noise,
    }
}

fn est(e: &Option<Estimate>) -> String {
    match e {
        Some(e) => format!("{:+.4} ms [95% CI {:+.4}, {:+.4}]", e.value, e.lo, e.hi),
        None => "n/a".into(),
    }
}

pub fn summary_markdown(
    router: RouterKind,
    runs: &[RunSpec],
    samples: &[Sample],
    join: &clt_collector::JoinStats,
    span_coverage: &str,
) -> (String, Vec<Comparison>) {
    let mut s = format!(
        "# CLT login demo: summary\n\nRouter: {} (its IOAM queue depth is in {}).\n\n",
        match router {
            RouterKind::Linux => "Linux kernel",
            RouterKind::Bmv2 => "bmv2 simple_switch_grpc",
        },
        router.queue_unit()
    );
    let mut comps = Vec::new();
    for spec in runs {
        let _ = writeln!(s, "## {} ({})\n", spec.name, spec.title);
        let _ = writeln!(
            s,
            "| phase | congested | CLT | requests | req/s | median ms | p95 ms | p99 ms |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|");
        for p in phase_stats(spec, samples) {
            let _ = writeln!(
                s,
                "| {} {} | {} | {} | {} | {:.1} | {:.3} | {:.3} | {:.3} |",
                p.phase + 1,
                p.name,
                if p.congested { "yes" } else { "no" },
                if p.clt { "on" } else { "off" },
                p.requests,
                p.rate,
                p.median_ms,
                p.p95_ms,
                p.p99_ms
            );
        }
        let c = comparison(spec, samples);
        let _ = writeln!(s, "\nCLT effect, {}: {}", c.what, est(&c.clt_effect));
        if spec.phases.iter().any(|p| p.clt && p.congested) {
            let _ = writeln!(
                s,
                "\n(Under congestion the RTT is the queue's fill level, which the bulk transfers' TCP dynamics move by tens of ms between phases; this difference says nothing about CLT's cost, the overhead run does.)"
            );
        }
        for p in &c.off_pairs {
            let _ = writeln!(
                s,
                "\nmedian({}) - median({}): {:+.4} ms [95% CI {:+.4}, {:+.4}], noise {:.4} ms",
                p.later, p.earlier, p.diff.value, p.diff.lo, p.diff.hi, p.noise
            );
        }
        if let Some(n) = c.noise {
            let _ = writeln!(
                s,
                "\nNoise between two repeated runs without CLT ({}): {n:.4} ms",
                if c.off_pairs.len() == 1 {
                    format!(
                        "the larger end, in absolute value, of that difference's 95% interval; intervals are block bootstraps of {BLOCK_SECS} s blocks"
                    )
                } else {
                    format!(
                        "the mean over the {} pairs of consecutive CLT-off phases of the larger end, in absolute value, of their difference's 95% interval; intervals are block bootstraps of {BLOCK_SECS} s blocks",
                        c.off_pairs.len()
                    )
                }
            );
        }
        if let (Some(e), Some(n), Some(below)) = (&c.clt_effect, c.noise, c.below_noise()) {
            let _ = writeln!(
                s,
                "\nCLT's median shift |{:.4}| ms is {} the noise bound {n:.4} ms.",
                e.value,
                if below { "below" } else { "NOT below" },
            );
        }
        let _ = writeln!(s);
        comps.push(c);
    }
    let _ = writeln!(
        s,
        "## Collector\n\nspans received {}, IOAM traces received {} (matched {}), spans enriched {}, traces expired unmatched {}, dropped {} spans / {} traces.\n\n{span_coverage}",
        join.spans_received,
        join.traces_received,
        join.traces_matched,
        join.spans_enriched,
        join.traces_expired_unmatched,
        join.spans_dropped,
        join.traces_dropped
    );
    (s, comps)
}

fn int(s: &OutSpan, name: &str) -> Option<i64> {
    match s.attr(name)? {
        AttrValue::Int(i) => Some(*i),
        _ => None,
    }
}

fn service(s: &OutSpan) -> String {
    s.resource
        .iter()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| match v {
            AttrValue::Str(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_else(|| "?".into())
}

fn value(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => format!("{s:?}"),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Double(d) => d.to_string(),
        AttrValue::Bool(b) => b.to_string(),
    }
}

/// The network spans in `spans`, by their parent (the login span) id.
pub fn network_spans(spans: &[OutSpan]) -> HashMap<(u128, u64), &OutSpan> {
    spans
        .iter()
        .filter(|s| s.attr("ioam.hop.count").is_some() && s.parent_span_id != 0)
        .map(|s| ((s.trace_id, s.parent_span_id), s))
        .collect()
}

/// The router's queue depth on a network span: the largest value the
/// router's hop (node id 2, hop 1) recorded over the span's packets.
pub fn router_queue_depth(net: &OutSpan) -> Option<i64> {
    let hops = int(net, "ioam.hop.count")?;
    (0..hops)
        .find(|h| int(net, &format!("ioam.hop.{h}.node_id.last")) == Some(2))
        .and_then(|h| int(net, &format!("ioam.hop.{h}.queue_depth.max")))
}

/// A trace the way Jaeger's trace view shows it: the span tree with
/// service, operation, offset and duration bars, then each span's tags,
/// and the network span's hops in path order.
pub fn jaeger_view(
    spans: &[&OutSpan],
    node_names: &HashMap<u32, String>,
    queue_unit: &str,
) -> String {
    let mut s = String::new();
    let Some(root) = spans
        .iter()
        .find(|s| s.parent_span_id == 0)
        .or(spans.first())
    else {
        return "no spans\n".into();
    };
    let t0 = spans
        .iter()
        .map(|s| s.start_ns)
        .min()
        .unwrap_or(root.start_ns);
    let t1 = spans.iter().map(|s| s.end_ns).max().unwrap_or(root.end_ns);
    let total = (t1.saturating_sub(t0)).max(1) as f64;
    let services: std::collections::BTreeSet<String> = spans.iter().map(|s| service(s)).collect();
    let _ = writeln!(
        s,
        "{}: {}   Trace {:032x}\nDuration {:.3} ms   Services {}   Depth 2   Total spans {}\n",
        service(root),
        root.name,
        root.trace_id,
        total / 1e6,
        services.len(),
        spans.len()
    );
    let _ = writeln!(
        s,
        "{:<44} {:>10} {:>11}  timeline",
        "Service & Operation", "offset ms", "duration ms"
    );
    let width = 40.0;
    let mut ordered: Vec<(usize, &OutSpan)> = vec![(0, root)];
    ordered.extend(
        spans
            .iter()
            .filter(|c| c.parent_span_id == root.span_id && c.span_id != root.span_id)
            .map(|c| (1, *c)),
    );
    for (depth, sp) in &ordered {
        let off = sp.start_ns.saturating_sub(t0) as f64;
        let dur = sp.end_ns.saturating_sub(sp.start_ns) as f64;
        let a = (off / total * width).round() as usize;
        let b = (((off + dur) / total * width).round() as usize).clamp(a + 1, width as usize);
        let bar: String = (0..width as usize)
            .map(|i| if i >= a && i < b { '#' } else { '.' })
            .collect();
        let label = format!("{}{} {}", "  ".repeat(*depth), service(sp), sp.name);
        let _ = writeln!(
            s,
            "{label:<44} {:>10.3} {:>11.3}  |{bar}|",
            off / 1e6,
            dur / 1e6
        );
    }
    for (_, sp) in &ordered {
        let _ = writeln!(
            s,
            "\n{} {} (span {:016x}, parent {:016x})\n  Tags:",
            service(sp),
            sp.name,
            sp.span_id,
            sp.parent_span_id
        );
        for (k, v) in &sp.attributes {
            if k.starts_with("ioam.hop.") {
                continue;
            }
            let _ = writeln!(s, "    {k} = {}", value(v));
        }
        let Some(hops) = int(sp, "ioam.hop.count") else {
            continue;
        };
        let _ = writeln!(
            s,
            "  Hops (attributes ioam.hop.<i>.<field>.min/max/last over {} packet(s)):",
            int(sp, "ioam.packets").unwrap_or(0)
        );
        let _ = writeln!(
            s,
            "    {:<4} {:>7} {:>9} {:>9} {:>9} {:>27} {:>8}",
            "hop",
            "node_id",
            "ingress",
            "egress",
            "hop_limit",
            format!("queue_depth {queue_unit} (min/max/last)"),
            "packets"
        );
        for h in 0..hops {
            let f = |name: &str| int(sp, &format!("ioam.hop.{h}.{name}.last"));
            let show = |v: Option<i64>, unavailable: i64| match v {
                Some(x) if x != unavailable => x.to_string(),
                _ => "-".into(),
            };
            let q = |w| int(sp, &format!("ioam.hop.{h}.queue_depth.{w}"));
            let queue = match (q("min"), q("max"), q("last")) {
                (Some(a), Some(b), Some(c)) => format!("{a}/{b}/{c}"),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "    {:<4} {:<10} {:>9} {:>9} {:>9} {:>27} {:>8}",
                h,
                match f("node_id") {
                    Some(id) => match u32::try_from(id).ok().and_then(|i| node_names.get(&i)) {
                        Some(n) => format!("{id} {n}"),
                        None => id.to_string(),
                    },
                    None => "-".into(),
                },
                show(f("ingress_if_id"), 0xffff),
                show(f("egress_if_id"), 0xffff),
                show(f("hop_limit"), -1),
                queue,
                show(int(sp, &format!("ioam.hop.{h}.packets")), -1)
            );
        }
        if !sp.events.is_empty() {
            let _ = writeln!(s, "  Logs (ioam.hop events, along the path):");
            for e in &sp.events {
                let attrs: Vec<String> = e
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value(v)))
                    .collect();
                let _ = writeln!(s, "    {} {}", e.name, attrs.join(" "));
            }
        }
    }
    s
}

/// Writes every output; prints the summary and the span.
#[allow(clippy::too_many_arguments)]
pub fn write_all(
    out: &Path,
    router: RouterKind,
    runs: &[RunSpec],
    samples: &[Sample],
    costs: &[crate::cost::PhaseCost],
    store_path: &Path,
    join: &clt_collector::JoinStats,
    node_names: &HashMap<u32, String>,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let csv = out.join("rtt.csv");
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for s in samples {
        text.push_str(&s.csv_line());
        text.push('\n');
    }
    std::fs::write(&csv, text).with_context(|| format!("writing {}", csv.display()))?;
    files.push(csv);

    for spec in runs {
        for ext in ["png", "svg"] {
            let p = out.join(format!("rtt-{}.{ext}", spec.name));
            crate::plot::rtt_plot(&p, spec, samples)
                .with_context(|| format!("plotting {}", p.display()))?;
            files.push(p);
        }
    }

    // Read the spans back from the collector's embedded store.
    let store = Store::open(store_path, usize::MAX)
        .map_err(|e| anyhow::anyhow!("opening the collector's store: {e}"))?;
    let spans = store
        .spans(None)
        .map_err(|e| anyhow::anyhow!("reading the collector's store: {e}"))?;
    let nets = network_spans(&spans);
    let key = |s: &Sample| -> Option<(u128, u64)> {
        Some((
            u128::from_str_radix(&s.trace_id, 16).ok()?,
            u64::from_str_radix(&s.span_id, 16).ok()?,
        ))
    };
    let mut coverage = String::from(
        "Network spans per phase (requests with an enriched span / requests; router queue depth max, median over the phase):\n\n",
    );
    for spec in runs {
        for (i, p) in spec.phases.iter().enumerate() {
            let in_phase: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.run == spec.name && s.phase == i)
                .collect();
            let depths: Vec<f64> = in_phase
                .iter()
                .filter_map(|s| nets.get(&key(s)?))
                .filter_map(|n| router_queue_depth(n))
                .map(|d| d as f64)
                .collect();
            let enriched = in_phase
                .iter()
                .filter(|s| key(s).is_some_and(|k| nets.contains_key(&k)))
                .count();
            let _ = writeln!(
                coverage,
                "- {} {}: {enriched} / {}{}",
                spec.name,
                p.name,
                in_phase.len(),
                stats::median(&depths)
                    .map(|m| format!(", router queue depth {m:.0} {}", router.queue_unit()))
                    .unwrap_or_default()
            );
        }
    }

    let (mut md, comps) = summary_markdown(router, runs, samples, join, &coverage);
    let _ = write!(
        md,
        "\n## CPU time and wakeups per request\n\nPer phase, what each group of the demo's threads spent per login request: CPU µs / wakeups (voluntary context switches), from /proc/self/task. Kernel work in a thread's context (forwarding through the veths and the router, IOAM, trace events) counts for that thread. Unlike the RTT, these barely move with the machine's other load.\n\n{}",
        crate::cost::table(costs)
    );
    println!("{md}");
    let md_path = out.join("summary.md");
    std::fs::write(&md_path, &md)?;
    files.push(md_path);
    let phases: Vec<PhaseStats> = runs.iter().flat_map(|r| phase_stats(r, samples)).collect();
    let json_path = out.join("summary.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&serde_json::json!({
            "phases": phases,
            "comparisons": comps,
            "costs": costs,
        }))?,
    )?;
    files.push(json_path);

    // One login span from phase three (congested, CLT on) with its network
    // span: the enriched request nearest the phase's median RTT.
    let phase3: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.run == "congestion" && s.phase == 2)
        .filter(|s| key(s).is_some_and(|k| nets.contains_key(&k)))
        .collect();
    let med = stats::median(&phase3.iter().map(|s| s.rtt_ms).collect::<Vec<_>>());
    let chosen = med.and_then(|m| {
        phase3
            .iter()
            .min_by(|a, b| (a.rtt_ms - m).abs().total_cmp(&(b.rtt_ms - m).abs()))
    });
    let view = match chosen.and_then(|s| key(s)) {
        Some((trace, _)) => {
            let in_trace: Vec<&OutSpan> = spans.iter().filter(|s| s.trace_id == trace).collect();
            format!(
                "One login span from phase three (congested, CLT on), read back from the collector's store ({} / {SPAN_NAME} and its network span):\n\n{}",
                SERVICE,
                jaeger_view(&in_trace, node_names, router.queue_unit())
            )
        }
        None => "no enriched login span in phase three\n".to_string(),
    };
    println!("{view}");
    let span_path = out.join("login-span.txt");
    std::fs::write(&span_path, &view)?;
    files.push(span_path);
    println!("wrote:");
    for f in &files {
        println!("  {}", f.display());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::overhead_run;

    /// Samples of `spec` at 200 requests/s for `secs` per phase: a
    /// pseudo-random spread of 0.04 ms around 0.1 ms, plus `cost` ms in the
    /// CLT phases and `drift` ms per phase.
    fn synthetic(spec: &RunSpec, secs: usize, cost: f64, drift: f64) -> Vec<Sample> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut out = Vec::new();
        for (i, p) in spec.phases.iter().enumerate() {
            for k in 0..secs * 200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let spread = (x % 1000) as f64 / 1000.0 * 0.04;
                out.push(Sample {
                    run: spec.name.into(),
                    phase: i,
                    phase_name: p.name.clone(),
                    t_s: (i * secs) as f64 + k as f64 / 200.0,
                    rtt_ms: 0.1 + spread + drift * i as f64 + if p.clt { cost } else { 0.0 },
                    clt: p.clt,
                    congested: p.congested,
                    status: 200,
                    trace_id: String::new(),
                    span_id: String::new(),
                });
            }
        }
        out
    }

    #[test]
    fn overhead_runs_alternate_starting_and_ending_without_clt() {
        let names = |c| -> Vec<String> {
            overhead_run(c)
                .phases
                .iter()
                .map(|p| format!("{}{}", p.name, if p.clt { "+" } else { "" }))
                .collect()
        };
        assert_eq!(names(1), ["off", "clt+", "off-again"]);
        assert_eq!(
            names(3),
            ["off", "clt+", "off-2", "clt-2+", "off-3", "clt-3+", "off-4"]
        );
        assert_eq!(names(0), names(1));
    }

    #[test]
    fn a_cost_above_the_noise_is_seen_and_none_is_not() {
        let run = overhead_run(3);
        // No cost: the effect is far below the noise.
        let c = comparison(&run, &synthetic(&run, 5, 0.0, 0.0));
        assert_eq!(c.off_pairs.len(), 3);
        let e = c.clt_effect.unwrap();
        assert!(e.value.abs() < 0.005, "{e:?}");
        assert_eq!(c.below_noise(), Some(true), "{c:?}");
        // 0.02 ms on every CLT request: above the noise of these phases.
        let c = comparison(&run, &synthetic(&run, 5, 0.02, 0.0));
        let e = c.clt_effect.unwrap();
        assert!((e.value - 0.02).abs() < 0.005, "{e:?}");
        assert_eq!(c.below_noise(), Some(false), "{c:?}");
        // A steady drift cancels: CLT phases sit between CLT-off ones, and
        // the drift widens the noise instead.
        let c = comparison(&run, &synthetic(&run, 5, 0.0, 0.01));
        assert!(c.clt_effect.unwrap().value.abs() < 0.005, "{c:?}");
        assert!(c.noise.unwrap() >= 0.02, "{c:?}");
        assert_eq!(c.below_noise(), Some(true));
    }

    #[test]
    fn the_congestion_run_has_an_effect_but_no_noise() {
        let run = crate::load::congestion_run();
        let c = comparison(&run, &synthetic(&run, 5, 0.0, 0.0));
        assert!(c.clt_effect.is_some());
        assert!(c.off_pairs.is_empty() && c.noise.is_none());
        assert_eq!(c.below_noise(), None);
        assert!(
            c.what.contains("median(congested+clt) - median(congested)"),
            "{}",
            c.what
        );
    }
}
