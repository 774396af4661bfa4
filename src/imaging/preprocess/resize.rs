//! Steps 2 and 9: the antialiased triangle filter (preprocess.py's
//! `resample_matrix` and `resize`).
//!
//! Owns: the sparse resampling taps and the two-pass resize (rows, then
//! columns with fixed-length tap loops, bit for bit with the plain loop).
//! Must not: read more than a ring of the filter's height of input rows
//! at once (a big photo is resized without a full-size grey copy).

use super::grey::Grey;
use super::pool::Buf;

/// The rows of Python's `resample_matrix`, stored sparsely: output `k`
/// reads inputs `first[k] .. first[k] + len` with `weights[span[k]]`.
#[derive(Clone, Debug)]
pub struct Taps {
    pub first: Vec<usize>,
    pub span: Vec<std::ops::Range<usize>>,
    pub weights: Vec<f64>,
}

impl Taps {
    pub(crate) fn row(&self, k: usize) -> (usize, &[f64]) {
        (self.first[k], &self.weights[self.span[k].clone()])
    }

    /// The same taps without their zero weights at either end (a
    /// triangle's ends weigh exactly 0): the sums of non-negative products
    /// are the same bit for bit, with fewer terms.
    pub(crate) fn trimmed(&self) -> Taps {
        let mut out = self.clone();
        for k in 0..self.first.len() {
            let (first, wts) = self.row(k);
            let lead = wts.iter().take_while(|&&v| v == 0.0).count();
            let keep = wts[lead..]
                .iter()
                .rposition(|&v| v != 0.0)
                .map_or(0, |i| i + 1);
            if keep > 0 {
                out.first[k] = first + lead;
                let start = self.span[k].start + lead;
                out.span[k] = start..start + keep;
            }
        }
        out
    }
}

/// Steps 2 and 9: the antialiased triangle filter. Output `k` is centred
/// at input coordinate `centres[k]`; `f` input pixels per output pixel;
/// half-width `w = max(1, f)`, weight `max(0, 1 - |x - c| / w)`, divided by
/// the sum over ALL integer x (outside pixels count as zeros). With
/// `renormalise` (step 2's `resize`) each row is then divided by the sum
/// of its weights inside the image.
pub fn resample_matrix(n_in: usize, centres: &[f64], f: f64, renormalise: bool) -> Taps {
    let w = f.max(1.0);
    let mut taps = Taps {
        first: Vec::with_capacity(centres.len()),
        span: Vec::with_capacity(centres.len()),
        weights: Vec::new(),
    };
    for &c in centres {
        let lo = (c - w).floor() as i64;
        let hi = (c + w).ceil() as i64;
        let wt = |x: i64| (1.0 - (x as f64 - c).abs() / w).max(0.0);
        let total: f64 = (lo..=hi).map(wt).sum();
        let start = taps.weights.len();
        let (a, b) = (lo.max(0), hi.min(n_in as i64 - 1));
        if total > 0.0 && a <= b {
            taps.weights.extend((a..=b).map(|x| wt(x) / total));
            if renormalise {
                let s: f64 = taps.weights[start..].iter().sum::<f64>().max(1e-12);
                taps.weights[start..].iter_mut().for_each(|v| *v /= s);
            }
        }
        // An empty row reads nothing; its first index stays in range.
        taps.first.push(if taps.weights.len() > start {
            a as usize
        } else {
            0
        });
        taps.span.push(start..taps.weights.len());
    }
    taps
}

/// Step 2: resize to `out_h x out_w`; image corners stay corners.
pub fn resize(a: &Grey, out_h: usize, out_w: usize) -> Grey {
    resize_rows(
        a.height,
        a.width,
        out_h,
        out_w,
        #[inline(always)]
        |y, row| row.copy_from_slice(a.row(y)),
    )
}

/// `resize` of the `h x w` image whose row y `fill(y, row)` writes: rows
/// first (saxpy over whole rows, each input row read once into a ring of
/// the filter's height), then columns.
#[inline(always)]
pub(crate) fn resize_rows(
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
    mut fill: impl FnMut(usize, &mut [f32]),
) -> Grey {
    if (h, w) == (out_h, out_w) {
        // The filter is then the identity (weights 1 and 0), exactly.
        let mut out = Grey::pooled_dirty(w, h);
        for (y, row) in out.data.chunks_exact_mut(w).enumerate() {
            fill(y, row);
        }
        return out;
    }
    let (fy, fx) = (h as f64 / out_h as f64, w as f64 / out_w as f64);
    let cy: Vec<f64> = (0..out_h).map(|k| (k as f64 + 0.5) * fy - 0.5).collect();
    let cx: Vec<f64> = (0..out_w).map(|k| (k as f64 + 0.5) * fx - 0.5).collect();
    let my = resample_matrix(h, &cy, fy, true);
    let mx = resample_matrix(w, &cx, fx, true);
    // The taps' ends never decrease, so rows [next - cap, next) suffice.
    let cap = my
        .span
        .iter()
        .map(|s| s.len())
        .max()
        .unwrap_or(1)
        .clamp(1, h.max(1));
    let mut ring = Buf::dirty(cap * w);
    let mut next = 0;
    let mut tmp = Buf::dirty(out_h * w);
    for (k, acc) in tmp.chunks_exact_mut(w).enumerate() {
        let (first, wts) = my.row(k);
        while next < first + wts.len() {
            fill(next, &mut ring[(next % cap) * w..(next % cap + 1) * w]);
            next += 1;
        }
        // 0 + the first product is that product, exactly: no zeroing
        if wts.is_empty() {
            acc.fill(0.0);
        }
        for (n, (y, &wt)) in (first..).zip(wts).enumerate() {
            let wt = wt as f32;
            let src = &ring[(y % cap) * w..(y % cap + 1) * w];
            if n == 0 {
                acc.iter_mut().zip(src).for_each(|(o, &v)| *o = wt * v);
            } else {
                acc.iter_mut().zip(src).for_each(|(o, &v)| *o += wt * v);
            }
        }
    }
    let mut out = Grey::pooled_dirty(out_w, out_h);
    let mx = mx.trimmed();
    let taps = mx.span.iter().map(|s| s.len()).max().unwrap_or(0);
    match taps {
        0..=4 => columns::<4>(&tmp, w, &mx, &mut out),
        5..=8 => columns::<8>(&tmp, w, &mx, &mut out),
        9..=16 => columns::<16>(&tmp, w, &mx, &mut out),
        _ => columns_any(&tmp, w, &mx, &mut out),
    }
    out
}

/// The column pass of `resize_rows` with every output's taps padded with
/// zero weights to `K`, so that the inner loop has a fixed length; the
/// zero terms come last and add exactly nothing (every product is >= 0),
/// so the sums are those of `columns_any`, bit for bit.
#[inline(always)]
fn columns<const K: usize>(tmp: &[f32], w: usize, mx: &Taps, out: &mut Grey) {
    let out_w = out.width;
    let mut wx = vec![0f32; out_w * K];
    for (j, row) in wx.chunks_exact_mut(K).enumerate() {
        for (o, &v) in row.iter_mut().zip(&mx.weights[mx.span[j].clone()]) {
            *o = v as f32;
        }
    }
    let mut padded = Buf::new(w + K, 0f32);
    for (row, orow) in tmp.chunks_exact(w).zip(out.data.chunks_exact_mut(out_w)) {
        padded[..w].copy_from_slice(row);
        for ((o, wts), &first) in orow.iter_mut().zip(wx.chunks_exact(K)).zip(&mx.first) {
            let src: &[f32; K] = padded[first..first + K].try_into().expect("K values");
            let mut acc = 0f32;
            for k in 0..K {
                acc += wts[k] * src[k];
            }
            *o = acc;
        }
    }
}

/// The column pass of `resize_rows`, any number of taps.
#[inline(always)]
fn columns_any(tmp: &[f32], w: usize, mx: &Taps, out: &mut Grey) {
    let out_w = out.width;
    let wx: Vec<f32> = mx.weights.iter().map(|&v| v as f32).collect();
    for (row, orow) in tmp.chunks_exact(w).zip(out.data.chunks_exact_mut(out_w)) {
        for (j, o) in orow.iter_mut().enumerate() {
            let first = mx.first[j];
            let wts = &wx[mx.span[j].clone()];
            *o = wts
                .iter()
                .zip(&row[first..first + wts.len()])
                .map(|(&wt, &v)| wt * v)
                .sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::preprocess::test_images::random;
    #[test]
    fn resize_columns_fixed_taps_equal_any_taps_bit_for_bit() {
        for (h, w, ow) in [
            (212, 279, 168),
            (60, 400, 128),
            (300, 3000, 384),
            (40, 50, 160),
        ] {
            let a = random(w, h, (h * w) as u32);
            let fx = w as f64 / ow as f64;
            let cx: Vec<f64> = (0..ow).map(|k| (k as f64 + 0.5) * fx - 0.5).collect();
            let mx = resample_matrix(w, &cx, fx, true);
            let mut fast = Grey::filled(ow, h, 0.0);
            let mut slow = Grey::filled(ow, h, 0.0);
            // without the zero weights at the ends, fixed-length loops
            let trimmed = mx.trimmed();
            let taps = trimmed.span.iter().map(|s| s.len()).max().unwrap();
            match taps {
                0..=4 => columns::<4>(&a.data, w, &trimmed, &mut fast),
                5..=8 => columns::<8>(&a.data, w, &trimmed, &mut fast),
                9..=16 => columns::<16>(&a.data, w, &trimmed, &mut fast),
                _ => columns_any(&a.data, w, &trimmed, &mut fast),
            }
            columns_any(&a.data, w, &mx, &mut slow);
            let same = fast
                .data
                .iter()
                .zip(&slow.data)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{w} -> {ow} ({taps} taps)");
        }
    }

    #[test]
    fn resize_keeps_constants_and_identity() {
        let a = random(37, 29, 9);
        assert_eq!(resize(&a, 29, 37), a);
        let c = resize(&Grey::filled(300, 200, 0.6), 128, 192);
        assert!(c.data.iter().all(|v| (v - 0.6).abs() < 1e-6));
        let taps = resample_matrix(10, &[0.0, 4.5, 9.0], 3.0, true);
        for k in 0..3 {
            assert!((taps.row(k).1.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}
