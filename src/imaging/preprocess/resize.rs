//! Steps 2 and 9: the antialiased triangle filter (preprocess.py's
//! `resample_matrix` and `resize`).
//!
//! Owns: the sparse resampling taps, the two-pass resize (rows, then
//! columns in bands of eight outputs, bit for bit with the plain loop) and
//! each thread's last resize plan (at most `PLAN_MAX_VALUES` weights, up
//! to 2 MiB per thread, kept between uploads). Must not: read more than a
//! ring of the filter's height of input rows at once (a big photo is
//! resized without a full-size grey copy).

use std::cell::RefCell;
use std::rc::Rc;

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
    let plan = Plan::cached(h, w, out_h, out_w);
    let (my, cap) = (&plan.my, plan.cap);
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
    plan.columns.apply(&tmp, w, &mut out);
    out
}

/// What `resize_rows` computes from the sizes alone: the row taps, the
/// ring's height and the column pass's bands. Built once per size and
/// kept per thread (the last one), as a stream of uploads mostly repeats
/// a few sizes: building it took about 3% of an upload's instructions.
struct Plan {
    key: (usize, usize, usize, usize),
    my: Taps,
    cap: usize,
    columns: Bands,
}

/// Largest plan (weights) kept per thread: a photo's up to about 25,000
/// px wide.
const PLAN_MAX_VALUES: usize = 1 << 18;

impl Plan {
    /// Weights held, rows' and columns'.
    fn values(&self) -> usize {
        self.my.weights.len() + self.columns.band.len()
    }

    fn new(h: usize, w: usize, out_h: usize, out_w: usize) -> Plan {
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
        Plan {
            key: (h, w, out_h, out_w),
            my,
            cap,
            columns: Bands::new(&mx.trimmed(), out_w),
        }
    }

    /// This thread's plan for these sizes: the last one if it matches,
    /// else a new one, which replaces it unless it is larger than
    /// `PLAN_MAX_VALUES` (a very wide photo's would stay pinned).
    fn cached(h: usize, w: usize, out_h: usize, out_w: usize) -> Rc<Plan> {
        thread_local!(static LAST: RefCell<Option<Rc<Plan>>> = const { RefCell::new(None) });
        let key = (h, w, out_h, out_w);
        let hit = |last: &Option<Rc<Plan>>| last.as_ref().filter(|p| p.key == key).cloned();
        LAST.try_with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            Some(hit(&last).unwrap_or_else(|| {
                let plan = Rc::new(Plan::new(h, w, out_h, out_w));
                if plan.values() <= PLAN_MAX_VALUES {
                    *last = Some(plan.clone());
                }
                plan
            }))
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Rc::new(Plan::new(h, w, out_h, out_w)))
    }
}

/// Outputs per block of `Bands` (one AVX2 vector of f32).
const LANES: usize = 8;

/// The column pass of `resize_rows`, `LANES` outputs at a time: the
/// weights of a block of outputs as a band over the inputs they read
/// (`band[t][l]`: input `base + t`'s weight in output `l`, zero where it
/// is not one of its taps), so that each input is one broadcast times one
/// vector of weights. Each output then sums the products of its taps in
/// the same order as `columns_any`, with exact zeros between them (every
/// product is >= 0, and adding +-0 to it changes nothing): the same sums,
/// bit for bit.
struct Bands {
    out_w: usize,
    /// (base, range of `band`) per block of `LANES` outputs.
    blocks: Vec<(usize, std::ops::Range<usize>)>,
    band: Vec<f32>,
}

impl Bands {
    fn new(mx: &Taps, out_w: usize) -> Bands {
        let mut spans = Vec::with_capacity(out_w.div_ceil(LANES));
        for j0 in (0..out_w).step_by(LANES) {
            let js = j0..(j0 + LANES).min(out_w);
            let reads = js.clone().filter(|&j| !mx.span[j].is_empty());
            let base = reads.clone().map(|j| mx.first[j]).min().unwrap_or(0);
            let end = reads
                .map(|j| mx.first[j] + mx.span[j].len())
                .max()
                .unwrap_or(base);
            spans.push((base, end - base));
        }
        let total: usize = spans.iter().map(|s| s.1).sum();
        let mut band = vec![0f32; total * LANES];
        let mut blocks = Vec::with_capacity(spans.len());
        let mut at = 0;
        for (b, &(base, len)) in spans.iter().enumerate() {
            for j in b * LANES..((b + 1) * LANES).min(out_w) {
                let (first, wts) = mx.row(j);
                for (t, &wt) in (first - base..).zip(wts) {
                    band[(at + t) * LANES + j - b * LANES] = wt as f32;
                }
            }
            blocks.push((base, at * LANES..(at + len) * LANES));
            at += len;
        }
        Bands {
            out_w,
            blocks,
            band,
        }
    }

    /// The column pass of the `w`-wide rows of `tmp` into `out`.
    #[inline(always)]
    fn apply(&self, tmp: &[f32], w: usize, out: &mut Grey) {
        let out_w = self.out_w;
        debug_assert_eq!(out.width, out_w);
        let full = out_w / LANES;
        for (row, orow) in tmp.chunks_exact(w).zip(out.data.chunks_exact_mut(out_w)) {
            let (whole, rest) = orow.split_at_mut(full * LANES);
            // (whole blocks copied at a fixed size: no call to memcpy)
            for ((base, range), o) in self.blocks.iter().zip(whole.chunks_exact_mut(LANES)) {
                o.copy_from_slice(&band_sum(&self.band[range.clone()], &row[*base..]));
            }
            if let Some((base, range)) = self.blocks.get(full) {
                let n = rest.len();
                rest.copy_from_slice(&band_sum(&self.band[range.clone()], &row[*base..])[..n]);
            }
        }
    }
}

/// One block of `Bands::apply`: the sums over the band's rows of
/// `band[t][l] * row[t]`.
#[inline(always)]
fn band_sum(band: &[f32], row: &[f32]) -> [f32; LANES] {
    let mut acc = [0f32; LANES];
    for (wv, &v) in band.chunks_exact(LANES).zip(row) {
        let wv: &[f32; LANES] = wv.try_into().expect("LANES weights");
        for l in 0..LANES {
            acc[l] += wv[l] * v;
        }
    }
    acc
}

/// The column pass of `resize_rows` as the plain loop over each output's
/// taps (what `Bands::apply` must equal).
#[cfg(test)]
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
    fn resize_columns_in_bands_equal_the_plain_loop_bit_for_bit() {
        for (h, w, ow) in [
            (212, 279, 168),
            (60, 400, 128),
            (300, 3000, 384),
            (40, 50, 160),
            (37, 50, 13),
            (7, 20, 30),
            (1, 10, 3),
            (3, 3000, 7),
        ] {
            let a = random(w, h, (h * w) as u32);
            let fx = w as f64 / ow as f64;
            let cx: Vec<f64> = (0..ow).map(|k| (k as f64 + 0.5) * fx - 0.5).collect();
            let mx = resample_matrix(w, &cx, fx, true);
            let mut fast = Grey::filled(ow, h, 0.0);
            let mut slow = Grey::filled(ow, h, 0.0);
            // without the zero weights at the ends, in bands
            let taps = mx.span.iter().map(|s| s.len()).max().unwrap();
            Bands::new(&mx.trimmed(), ow).apply(&a.data, w, &mut fast);
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
    fn a_plan_is_kept_for_its_sizes_and_replaced_by_others() {
        let first = Plan::cached(212, 279, 128, 168);
        assert!(Rc::ptr_eq(&first, &Plan::cached(212, 279, 128, 168)));
        let other = Plan::cached(300, 400, 128, 171);
        assert!(!Rc::ptr_eq(&first, &other));
        assert!(Rc::ptr_eq(&other, &Plan::cached(300, 400, 128, 171)));
        assert!(!Rc::ptr_eq(&first, &Plan::cached(212, 279, 128, 168)));
        // resize itself keeps the plan of its sizes: after a resize to
        // other sizes the first plan is gone, after one to the same sizes
        // the kept plan is still the one
        let a = random(279, 213, 5);
        let fresh = resize(&a, 128, 168);
        let kept = Plan::cached(213, 279, 128, 168);
        assert_eq!(
            resize(&a, 128, 168),
            fresh,
            "a kept plan resizes as a new one"
        );
        assert!(Rc::ptr_eq(&kept, &Plan::cached(213, 279, 128, 168)));
        resize(&random(50, 40, 6), 128, 160);
        assert!(!Rc::ptr_eq(&kept, &Plan::cached(213, 279, 128, 168)));
    }

    #[test]
    fn a_very_wide_photos_plan_is_not_kept() {
        let kept = Plan::cached(212, 279, 128, 168);
        let wide = Plan::cached(10, 40_000, 128, 384);
        assert!(wide.values() > PLAN_MAX_VALUES);
        assert!(!Rc::ptr_eq(&wide, &Plan::cached(10, 40_000, 128, 384)));
        assert!(
            Rc::ptr_eq(&kept, &Plan::cached(212, 279, 128, 168)),
            "the plan kept before stays"
        );
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
