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

/// The noise between two repeated runs under the same conditions,
/// estimated from one longer stretch of such runs cut into time `blocks`
/// (e.g. one second of requests each): split the blocks at random into two
/// halves, two pseudo-runs that each span the whole stretch; the noise is
/// the `level` quantile, over `rounds` splits, of
/// `|median(half A) - median(half B)|`. Unlike a bootstrap of individual
/// requests it includes the slow variation of the machine's load (a block
/// is one draw of it); unlike a single pair of runs it is a quantile of a
/// distribution, not one draw. `None` with fewer than two blocks.
pub fn block_split_noise(blocks: &[Vec<f64>], rounds: usize, level: f64) -> Option<f64> {
    let blocks: Vec<&Vec<f64>> = blocks.iter().filter(|b| !b.is_empty()).collect();
    if blocks.len() < 2 || rounds == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut diffs: Vec<f64> = (0..rounds)
        .map(|_| {
            // Fisher-Yates shuffle, then the first half against the rest.
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            let half = order.len() / 2;
            a.clear();
            b.clear();
            for &i in &order[..half] {
                a.extend_from_slice(blocks[i]);
            }
            for &i in &order[half..] {
                b.extend_from_slice(blocks[i]);
            }
            (median_in_place(&mut a) - median_in_place(&mut b)).abs()
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    Some(quantile_sorted(&diffs, level))
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
    fn block_split_noise_tracks_between_block_variation() {
        // Twenty blocks of the same distribution: small noise.
        let same: Vec<Vec<f64>> = (0..20)
            .map(|k| (0..50).map(|i| f64::from((i * 7 + k) % 50)).collect())
            .collect();
        let quiet = block_split_noise(&same, 500, 0.95).unwrap();
        // Blocks shifted by a slowly varying load: larger noise.
        let loaded: Vec<Vec<f64>> = same
            .iter()
            .enumerate()
            .map(|(k, b)| b.iter().map(|x| x + 10.0 * (k % 4) as f64).collect())
            .collect();
        let noisy = block_split_noise(&loaded, 500, 0.95).unwrap();
        assert!(quiet < 3.0 && noisy > quiet + 3.0, "{quiet} {noisy}");
        assert!(block_split_noise(&same[..1], 10, 0.95).is_none());
    }
}
