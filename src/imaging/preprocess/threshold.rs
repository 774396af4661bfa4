//! Steps 5 and 7: Otsu's threshold and numpy's percentile.
//!
//! Owns: numpy's histogram binning (bit for bit, edges included) and
//! `np.percentile`'s default interpolation. Must not: allocate per value.

/// Step 5's histogram, numpy's binning bit for bit: bin i is [edge i,
/// edge i+1), the last one closed, with edge i = i * (vmax / bins); like
/// numpy, an estimate of the bin (off by at most one) corrected by one
/// step against the edges (`exact_bin`). Two passes: the bins of a block
/// of values (arithmetic only, vectorised), then their counts. The first
/// pass estimates in f32 (twice the lanes) and keeps the estimate where
/// it is certain: v * (bins / vmax) in f32 is within 3e-5 of the exact
/// quotient (two roundings of 2^-24, times at most 256 bins), so a
/// fraction in (0.001, 0.999) is numpy's bin; the few values near an edge
/// (and zero: bin 0) take the exact way.
#[inline(always)]
fn otsu_histogram(values: &[f32], bins: usize, vmax: f64) -> Vec<u32> {
    let step = vmax / bins as f64;
    let scale = bins as f64 / vmax;
    let last = bins as i32 - 1;
    // numpy's bin of v, or `bins` (not counted) outside [0, vmax]
    let exact_bin = |v: f32| -> u32 {
        let v = v as f64;
        let mut i = (v * scale).clamp(0.0, last as f64) as i32;
        i -= i32::from(v < i as f64 * step);
        i += i32::from((v >= (i + 1) as f64 * step) & (i < last));
        let valid = v >= 0.0 && v <= vmax;
        if valid {
            i as u32
        } else {
            bins as u32
        }
    };
    // the f32 estimate needs a finite scale and bins that f32 counts exactly
    let estimate = scale.is_finite() && scale > 0.0 && bins <= 4096;
    let (scale32, bins32) = (scale as f32, bins as f32);
    const MAGIC: f32 = 8_388_608.0;
    // four interleaved counts per bin (runs of equal bins do not wait on
    // each other's increments), and a bin past the last for the values
    // outside [0, vmax], which are not counted
    let mut counts = vec![[0u32; 4]; bins + 1];
    let mut idx = [0u32; 512];
    for block in values.chunks(idx.len()) {
        let idx = &mut idx[..block.len()];
        if estimate {
            let mut unsure = false;
            for (o, &v) in idx.iter_mut().zip(block) {
                let x = v * scale32;
                // the integer nearest x - 0.5 (floor(x) where it is sure),
                // clamped to [0, bins] (NaN: 0), by adding 2^23 (where f32's
                // spacing is 1): an `as i32` here would not vectorise
                let y = x - 0.5;
                let c = if y > 0.0 { y } else { 0.0 };
                let c = if c < bins32 { c } else { bins32 };
                let big = c + MAGIC;
                let f = x - (big - MAGIC);
                let sure = (v == 0.0) | ((f > 0.001) & (f < 0.999) & (x >= 0.0) & (x < bins32));
                let i = big.to_bits() - MAGIC.to_bits();
                *o = if sure { i } else { u32::MAX };
                unsure |= !sure;
            }
            if unsure {
                for (o, &v) in idx.iter_mut().zip(block) {
                    if *o == u32::MAX {
                        *o = exact_bin(v);
                    }
                }
            }
        } else {
            for (o, &v) in idx.iter_mut().zip(block) {
                *o = exact_bin(v);
            }
        }
        let mut quads = idx.chunks_exact(4);
        for q in quads.by_ref() {
            counts[q[0] as usize][0] += 1;
            counts[q[1] as usize][1] += 1;
            counts[q[2] as usize][2] += 1;
            counts[q[3] as usize][3] += 1;
        }
        for &i in quads.remainder() {
            counts[i as usize][0] += 1;
        }
    }
    counts[..bins].iter().map(|c| c.iter().sum()).collect()
}

/// Step 5: Otsu threshold of `values` in [0, vmax] over `bins` bins (numpy's
/// histogram binning: bin i is [edge i, edge i+1), the last one closed);
/// returns the upper edge of the best lower class (the first maximum).
#[inline(always)]
pub fn otsu(values: &[f32], bins: usize, vmax: f64) -> f64 {
    let hist = otsu_histogram(values, bins, vmax);
    let (mut w0, mut m0) = (vec![0f64; bins], vec![0f64; bins]);
    let (mut cw, mut cm) = (0.0, 0.0);
    for i in 0..bins {
        cw += hist[i] as f64;
        cm += hist[i] as f64 * ((i as f64 + 0.5) * vmax / bins as f64);
        w0[i] = cw;
        m0[i] = cm;
    }
    let (wt, mt) = (cw, cm);
    let (mut best, mut best_k) = (0.0f64, 0usize);
    for k in 0..bins {
        let w1 = wt - w0[k];
        if w0[k] > 0.0 && w1 > 0.0 {
            let between = (mt * w0[k] / wt - m0[k]).powi(2) / (w0[k] * w1);
            if between > best {
                best = between;
                best_k = k;
            }
        }
    }
    (best_k + 1) as f64 * vmax / bins as f64
}

/// Step 7: the `q`-th percentile, numpy's default (linear interpolation
/// between the sorted values at (n - 1) * q / 100, with numpy's `_lerp`),
/// in O(n). `values` (not empty) is reordered.
pub fn percentile(values: &mut [f32], q: f64) -> f64 {
    let n = values.len();
    assert!(n > 0, "percentile of nothing");
    let vi = (n - 1) as f64 * (q / 100.0);
    let (i, gamma) = if vi >= (n - 1) as f64 {
        (n - 1, 0.0)
    } else {
        let prev = vi.max(0.0).floor();
        (prev as usize, vi - prev)
    };
    let (_, a, upper) = values.select_nth_unstable_by(i, |x, y| x.total_cmp(y));
    let a = *a as f64;
    let b = upper
        .iter()
        .copied()
        .min_by(|x, y| x.total_cmp(y))
        .map_or(a, |b| b as f64);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::preprocess::test_images::Rng;
    #[test]
    fn the_f32_estimate_bins_like_the_edges_for_any_range() {
        let mut rng = Rng(7);
        for (vmax, bins) in [
            (0.08f32, 256),
            (1.0, 256),
            (0.3137, 100),
            (0.999, 7),
            (0.5, 1),
        ] {
            let vmax = vmax as f64;
            let mut values: Vec<f32> = (0..5_000).map(|_| rng.next() * vmax as f32).collect();
            values.extend((0..=bins).map(|i| (i as f64 * vmax / bins as f64) as f32));
            assert_eq!(
                otsu_histogram(&values, bins, vmax),
                otsu_by_edges(&values, bins, vmax),
                "vmax {vmax}, {bins} bins"
            );
        }
    }

    #[test]
    fn otsu_splits_two_modes() {
        let mut v = vec![0.1f32; 500];
        v.extend(std::iter::repeat_n(0.8f32, 100));
        let t = otsu(&v, 256, 0.8f32 as f64);
        assert!(t > 0.1 && t < 0.8, "{t}");
        assert_eq!(t, 33.0 * (0.8f32 as f64) / 256.0, "the first maximum");
        assert_eq!(
            otsu(&[0.5; 10], 256, 0.5),
            0.5 / 256.0,
            "no split: the first bin"
        );
    }

    #[test]
    fn percentile_like_numpy() {
        assert_eq!(percentile(&mut [3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&mut [4.0, 1.0, 3.0, 2.0], 50.0), 2.5);
        assert_eq!(percentile(&mut [7.0], 50.0), 7.0);
        // np.percentile([1, 2, 3, 4, 10], [0, 25, 90, 100]) = 1, 2, 7.6, 10
        for (q, want) in [(0.0, 1.0), (25.0, 2.0), (90.0, 7.6), (100.0, 10.0)] {
            let got = percentile(&mut [10.0, 2.0, 4.0, 1.0, 3.0], q);
            assert!((got - want).abs() < 1e-12, "q {q}: {got}");
        }
    }

    /// numpy's binning done the slow way: every value against the edges.
    fn otsu_by_edges(values: &[f32], bins: usize, vmax: f64) -> Vec<u32> {
        let step = vmax / bins as f64;
        let edges: Vec<f64> = (0..=bins)
            .map(|i| if i == bins { vmax } else { i as f64 * step })
            .collect();
        let mut hist = vec![0u32; bins];
        for &v in values {
            let v = v as f64;
            if (0.0..=vmax).contains(&v) {
                let i = (0..bins)
                    .find(|&i| v >= edges[i] && (v < edges[i + 1] || i == bins - 1))
                    .unwrap();
                hist[i] += 1;
            }
        }
        hist
    }

    #[test]
    fn otsu_bins_exactly_like_numpy_even_on_the_edges() {
        let vmax = 0.7f32 as f64;
        let mut rng = Rng(99);
        let mut values: Vec<f32> = (0..20_000).map(|_| rng.next() * 0.75).collect();
        // Values on and next to every edge.
        for i in 0..=256 {
            let e = (i as f64 * vmax / 256.0) as f32;
            values.extend([
                e,
                f32::from_bits(e.to_bits() + 1),
                f32::from_bits(e.to_bits().max(1) - 1),
            ]);
        }
        values.push(vmax as f32);
        // zeros (bin 0 at once), values outside [0, vmax] (not counted)
        values.extend([0.0, -0.0, 0.0, -1e-9, f32::NAN, 1.0, 0.7000001, 0.35]);
        assert_eq!(
            otsu_histogram(&values, 256, vmax),
            otsu_by_edges(&values, 256, vmax),
            "bins differ from numpy's"
        );
    }
}
