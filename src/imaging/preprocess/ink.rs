//! Steps 6-9 of preprocess.py: which components are kept, the ink image
//! near them, its centre of mass and scale, and the resampling into 28x28.
//!
//! Owns: the decisions of step 6 (border preference, the main component,
//! its neighbours) and the ink region (the kept box grown by KEEP_DILATE,
//! the only place where the ink can be non-zero). Must not: read or
//! allocate planes of the whole working image beyond `d` itself.

use super::components::{box_gap, dilate, Components};
use super::pool::Buf;
use super::resize::resample_matrix;
use super::steps::Trace;
use super::threshold::percentile;
use super::*;

/// Step 6: prefer components off the border; keep the largest and its
/// neighbours. Returns the kept components and their box (the union of
/// their boxes, step 8's box), or None if no digit.
#[inline(always)]
pub(super) fn select(
    comps: &Components,
    wh: usize,
    ww: usize,
    trace: &mut Trace,
) -> Option<(Vec<usize>, [usize; 4])> {
    let n = comps.areas.len();
    trace.n_components = n;
    if n == 0 {
        return None;
    }
    let (areas, boxes) = (&comps.areas, &comps.boxes);
    let inner: Vec<usize> = (0..n)
        .filter(|&i| {
            let b = boxes[i];
            b[0] > 0 && b[1] > 0 && b[2] < wh - 1 && b[3] < ww - 1
        })
        .collect();
    let max_all = *areas.iter().max().unwrap_or(&0);
    let max_inner = inner.iter().map(|&i| areas[i]).max();
    let cand: Vec<usize> = match max_inner {
        Some(m) if m as f64 >= BORDER_RATIO * max_all as f64 => inner,
        _ => (0..n).collect(),
    };
    // the largest; the first one on ties
    let big = cand
        .iter()
        .copied()
        .fold(cand[0], |b, i| if areas[i] > areas[b] { i } else { b });
    if areas[big] < MIN_PIXELS {
        return None;
    }
    let bb = boxes[big];
    let side = (bb[2] - bb[0] + 1).max(bb[3] - bb[1] + 1);
    let mut kept = Vec::new();
    let mut kbox = bb;
    for &i in &cand {
        if i == big
            || (areas[i] as f64 >= KEEP_AREA * areas[big] as f64
                && box_gap(&boxes[i], &bb) as f64 <= KEEP_GAP * side as f64)
        {
            kept.push(i);
            trace.kept += 1;
            let b = boxes[i];
            kbox = [
                kbox[0].min(b[0]),
                kbox[1].min(b[1]),
                kbox[2].max(b[2]),
                kbox[3].max(b[3]),
            ];
        }
    }
    Some((kept, kbox))
}

/// Step 7's ink image over the region where it can be non-zero: the kept
/// box grown by KEEP_DILATE (rows y0..y1, columns x0..x1 of the working
/// image); zero elsewhere.
pub(super) struct Ink {
    v: Buf<f64>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
}

/// Step 7: d mapped to [0, 1] between LO_FRACTION * t and the kept pixels'
/// HI_PERCENTILE, near the kept pixels only.
#[inline(always)]
pub(super) fn ink_image(
    d: &[f32],
    comps: &Components,
    kept: &[usize],
    kbox: [usize; 4],
    t: f64,
    (wh, ww): (usize, usize),
    trace: &mut Trace,
) -> Ink {
    let mut kept_d = Buf::new(0, 0f32);
    for &i in kept {
        kept_d.extend(comps.pixels_of(i).iter().map(|&p| d[p as usize]));
    }
    let hi = percentile(&mut kept_d, HI_PERCENTILE);
    trace.hi = hi;
    let lo = LO_FRACTION * t;
    let den = (hi - lo).max(1e-6);
    // The ink region: the kept box grown by KEEP_DILATE (clipped), where
    // `near` (the kept pixels dilated) can be true.
    let rows = kbox[0].saturating_sub(KEEP_DILATE)..(kbox[2] + KEEP_DILATE + 1).min(wh);
    let cols = kbox[1].saturating_sub(KEEP_DILATE)..(kbox[3] + KEEP_DILATE + 1).min(ww);
    let rw = cols.len();
    let mut region = vec![false; rows.len() * rw];
    for &i in kept {
        for &p in comps.pixels_of(i) {
            let (y, x) = (p as usize / ww, p as usize % ww);
            region[(y - rows.start) * rw + x - cols.start] = true;
        }
    }
    // the same as dilating the whole image, then cropping: no kept pixel
    // lies outside the region, and its edges are the image's or farther
    // than KEEP_DILATE from every kept pixel
    let near = dilate(&region, rows.len(), rw, KEEP_DILATE);
    let mut v = Buf::dirty(rows.len() * rw);
    for ((y, orow), nrow) in rows
        .clone()
        .zip(v.chunks_exact_mut(rw))
        .zip(near.chunks_exact(rw))
    {
        let span = y * ww + cols.start..y * ww + cols.end;
        for ((o, &dv), &m) in orow.iter_mut().zip(&d[span]).zip(nrow) {
            *o = if m {
                ((dv as f64 - lo) / den).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
    }
    Ink { v, rows, cols }
}

/// Step 8: the scale that makes the box's longer side BOX px, and the ink's
/// centre of mass: (row, col, scale).
#[inline(always)]
pub(super) fn centre(ink: &Ink, kbox: [usize; 4], trace: &mut Trace) -> (f64, f64, f64) {
    let l = (kbox[2] - kbox[0] + 1).max(kbox[3] - kbox[1] + 1);
    let s = BOX / l as f64;
    let (mut total, mut sy, mut sx) = (0f64, 0f64, 0f64);
    for (y, row) in ink.rows.clone().zip(ink.v.chunks_exact(ink.cols.len())) {
        let (mut rt, mut rx) = (0f64, 0f64);
        for (x, &val) in ink.cols.clone().zip(row) {
            rt += val;
            rx += val * x as f64;
        }
        total += rt;
        sy += rt * y as f64;
        sx += rx;
    }
    let (cy, cx) = (sy / total, sx / total);
    trace.box_side = l;
    trace.scale = s;
    trace.com = (cy, cx);
    (cy, cx, s)
}

/// Step 9: resample the ink into 28x28 around the centre of mass (zeros
/// outside the working image).
#[inline(always)]
pub(super) fn resample(
    ink: &Ink,
    (wh, ww): (usize, usize),
    (cy, cx): (f64, f64),
    s: f64,
) -> [f64; OUT * OUT] {
    let grid = |c: f64| -> Vec<f64> { (0..OUT).map(|i| c + (i as f64 - COM) / s).collect() };
    let my = resample_matrix(wh, &grid(cy), 1.0 / s, false);
    let mx = resample_matrix(ww, &grid(cx), 1.0 / s, false);
    let (rows, cols, rw) = (&ink.rows, &ink.cols, ink.cols.len());
    let mut tmp = Buf::new(OUT * rw, 0f64);
    for (i, acc) in tmp.chunks_exact_mut(rw).enumerate() {
        let (first, wts) = my.row(i);
        for (y, &wt) in (first..).zip(wts) {
            if rows.contains(&y) {
                let src = &ink.v[(y - rows.start) * rw..(y - rows.start + 1) * rw];
                acc.iter_mut().zip(src).for_each(|(o, &val)| *o += wt * val);
            }
        }
    }
    let mut out = [0f64; OUT * OUT];
    for (i, orow) in out.chunks_exact_mut(OUT).enumerate() {
        let acc = &tmp[i * rw..(i + 1) * rw];
        for (j, o) in orow.iter_mut().enumerate() {
            let (first, wts) = mx.row(j);
            *o = (first..)
                .zip(wts)
                .filter(|(x, _)| cols.contains(x))
                .map(|(x, &wt)| wt * acc[x - cols.start])
                .sum();
        }
    }
    out
}
