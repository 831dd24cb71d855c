//! Order statistics and the bootstrap used by the summary and the test.
//!
//! Everything here is pure and deterministic: the bootstrap draws from a
//! seeded generator, so the same samples always give the same interval.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seed of every bootstrap ("CLT").
pub const SEED: u64 = 0x0043_4c54;

/// The `q`-quantile (0..=1) of `xs` by linear interpolation between order
/// statistics (the "type 7" definition of R and numpy); `None` when empty.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    Some(quantile_sorted(&v, q))
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

pub fn median(xs: &[f64]) -> Option<f64> {
    quantile(xs, 0.5)
}

/// The median of a scratch buffer (reordered in place), in O(n).
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        m
    } else {
        // The largest of the lower half.
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + m) / 2.0
    }
}

fn resample(rng: &mut StdRng, from: &[f64], into: &mut Vec<f64>) {
    into.clear();
    into.extend((0..from.len()).map(|_| from[rng.random_range(0..from.len())]));
}

/// A point estimate with a two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// `median(b) - median(a)` with a percentile-bootstrap interval at
/// `level` (e.g. 0.95) from `rounds` resamples of each sample.
pub fn median_diff(a: &[f64], b: &[f64], rounds: usize, level: f64) -> Option<Estimate> {
    let diffs = bootstrap_diffs(a, b, rounds)?;
    let alpha = (1.0 - level) / 2.0;
    Some(Estimate {
        value: median(b)? - median(a)?,
        lo: quantile_sorted(&diffs, alpha),
        hi: quantile_sorted(&diffs, 1.0 - alpha),
    })
}

/// Sorted bootstrap replicates of `median(b*) - median(a*)`.
fn bootstrap_diffs(a: &[f64], b: &[f64], rounds: usize) -> Option<Vec<f64>> {
    if a.is_empty() || b.is_empty() || rounds == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut ra, mut rb) = (Vec::with_capacity(a.len()), Vec::with_capacity(b.len()));
    let mut diffs: Vec<f64> = (0..rounds)
        .map(|_| {
            resample(&mut rng, a, &mut ra);
            resample(&mut rng, b, &mut rb);
            median_in_place(&mut rb) - median_in_place(&mut ra)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    Some(diffs)
}

/// `median(b) - median(a)` for samples cut into time blocks (e.g. one
/// second of requests each), with a percentile block-bootstrap interval at
/// `level` from `rounds` replicates. A replicate draws, with replacement,
/// as many blocks of `a` as `a` has (and of `b` likewise): a block stays
/// whole, so the machine's load, which moves request times together within
/// a second, is resampled as it varied, not as if every request were
/// independent. `None` if either side has no non-empty block.
pub fn block_median_diff(
    a: &[Vec<f64>],
    b: &[Vec<f64>],
    rounds: usize,
    level: f64,
) -> Option<Estimate> {
    let a: Vec<&Vec<f64>> = a.iter().filter(|x| !x.is_empty()).collect();
    let b: Vec<&Vec<f64>> = b.iter().filter(|x| !x.is_empty()).collect();
    if a.is_empty() || b.is_empty() || rounds == 0 {
        return None;
    }
    let flat = |v: &[&Vec<f64>]| -> Vec<f64> { v.iter().flat_map(|x| x.iter().copied()).collect() };
    let value = median(&flat(&b))? - median(&flat(&a))?;
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let draw = |rng: &mut StdRng, from: &[&Vec<f64>], into: &mut Vec<f64>| {
        into.clear();
        for _ in 0..from.len() {
            into.extend_from_slice(from[rng.random_range(0..from.len())]);
        }
    };
    let mut diffs: Vec<f64> = (0..rounds)
        .map(|_| {
            draw(&mut rng, &a, &mut ra);
            draw(&mut rng, &b, &mut rb);
            median_in_place(&mut rb) - median_in_place(&mut ra)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    Some(Estimate {
        value,
        lo: quantile_sorted(&diffs, alpha),
        hi: quantile_sorted(&diffs, 1.0 - alpha),
    })
}

/// The noise between two repeated runs under the same conditions: how far
/// apart the medians of two such runs `a` and `b` (in time blocks) can be,
/// the observed difference together with its uncertainty. It is the larger
/// end, in absolute value, of the `level` block-bootstrap interval of
/// `median(b) - median(a)` ([`block_median_diff`]): the run-to-run drift
/// that was seen plus what sampling could have added to it.
pub fn run_to_run_noise(a: &[Vec<f64>], b: &[Vec<f64>], rounds: usize, level: f64) -> Option<f64> {
    let d = block_median_diff(a, b, rounds, level)?;
    Some(d.lo.abs().max(d.hi.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let xs = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&xs), Some(2.5));
        assert_eq!(quantile(&xs, 0.0), Some(1.0));
        assert_eq!(quantile(&xs, 1.0), Some(4.0));
        assert_eq!(quantile(&xs, 0.25), Some(1.75));
        assert_eq!(quantile(&[], 0.5), None);
        let mut v = xs.to_vec();
        assert_eq!(median_in_place(&mut v), 2.5);
        let mut v = vec![5.0, 1.0, 3.0];
        assert_eq!(median_in_place(&mut v), 3.0);
    }

    #[test]
    fn bootstrap_sees_a_shift_and_no_shift() {
        let a: Vec<f64> = (0..500).map(|i| f64::from(i % 50)).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 10.0).collect();
        let d = median_diff(&a, &b, 500, 0.95).unwrap();
        assert_eq!(d.value, 10.0);
        assert!(d.lo <= 10.0 && d.hi >= 10.0 && d.lo > 5.0, "{d:?}");
        // Two samples of the same distribution: an interval around zero.
        let a2: Vec<f64> = (0..500).map(|i| f64::from((i * 7) % 50)).collect();
        let d = median_diff(&a, &a2, 500, 0.95).unwrap();
        assert!(d.lo <= 0.0 && d.hi >= 0.0 && d.hi - d.lo < 10.0, "{d:?}");
        assert!(median_diff(&a, &[], 10, 0.95).is_none());
    }

    #[test]
    fn block_bootstrap_keeps_the_load_of_a_block() {
        // Forty one-second blocks whose level moves with a slow load.
        let runs = |shift: f64| -> Vec<Vec<f64>> {
            (0..40)
                .map(|k| {
                    (0..50)
                        .map(|i| shift + f64::from((i * 7 + k) % 50) + 10.0 * (k % 4) as f64)
                        .collect()
                })
                .collect()
        };
        let (a, b) = (runs(0.0), runs(0.0));
        let d = block_median_diff(&a, &b, 500, 0.95).unwrap();
        assert_eq!(d.value, 0.0);
        assert!(d.lo <= 0.0 && d.hi >= 0.0, "{d:?}");
        // The same data as independent requests: a narrower interval.
        let flat = |v: &[Vec<f64>]| -> Vec<f64> { v.concat() };
        let iid = median_diff(&flat(&a), &flat(&b), 500, 0.95).unwrap();
        assert!(d.hi - d.lo > iid.hi - iid.lo, "{d:?} {iid:?}");
        // A shift of 20 is seen, and the noise covers the observed drift.
        let c = runs(20.0);
        let d = block_median_diff(&a, &c, 500, 0.95).unwrap();
        assert_eq!(d.value, 20.0);
        assert!(d.lo > 10.0 && d.hi >= 20.0, "{d:?}");
        let noise = run_to_run_noise(&a, &c, 500, 0.95).unwrap();
        assert!(noise >= 20.0, "{noise}");
        assert!(block_median_diff(&a, &[], 10, 0.95).is_none());
        assert!(block_median_diff(&a, &[vec![]], 10, 0.95).is_none());
    }
}
