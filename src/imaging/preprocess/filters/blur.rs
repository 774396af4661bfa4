//! Step 3's box blur: the polarity high-pass's local mean.
//!
//! Owns: the clipped-window mean by running column sums and prefix sums
//! along rows, within an ulp of preprocess.py's division. Must not:
//! allocate outside the pool.

use super::super::grey::Grey;
use super::super::pool::Buf;

/// Step 3: mean over the (2r+1)^2 window, of the pixels inside the image.
pub fn box_blur(a: &Grey, r: usize) -> Grey {
    let mut out = Grey::pooled_dirty(a.width, a.height);
    let w = a.width;
    box_blur_rows(a, r, |y, row| {
        out.data[y * w..(y + 1) * w]
            .iter_mut()
            .zip(row)
            .for_each(|(o, &v)| *o = v as f32);
    });
    out
}

/// `box_blur`, one output row at a time (`visit(y, row)`, in f64): running
/// column sums over the window's rows, then prefix sums along the row
/// (in four independent runs, joined after: a quarter of the latency).
#[inline(always)]
pub(crate) fn box_blur_rows(a: &Grey, r: usize, mut visit: impl FnMut(usize, &[f64])) {
    let (h, w) = (a.height, a.width);
    if w == 0 {
        return;
    }
    let mut col = Buf::new(w, 0f64);
    let mut pre = Buf::new(w + 1, 0f64);
    let mut out = Buf::dirty(w);
    // 1 / (pixels of x's window inside the row); reciprocals instead of
    // Python's divisions: within an ulp, and only a sign is taken from this
    let mut inv = Buf::dirty(w);
    for (x, v) in inv.iter_mut().enumerate() {
        *v = 1.0 / ((x + r + 1).min(w) - x.saturating_sub(r)) as f64;
    }
    let quarter = w / 4;
    let (mut lo, mut hi) = (0, 0);
    for y in 0..h {
        let (new_lo, new_hi) = (y.saturating_sub(r), (y + r + 1).min(h));
        while hi < new_hi {
            col.iter_mut()
                .zip(a.row(hi))
                .for_each(|(c, &v)| *c += v as f64);
            hi += 1;
        }
        while lo < new_lo {
            col.iter_mut()
                .zip(a.row(lo))
                .for_each(|(c, &v)| *c -= v as f64);
            lo += 1;
        }
        let inv_count = 1.0 / (hi - lo) as f64;
        // pre[x + 1] = sum of col[..=x] * inv_count: four runs from 0 (the
        // quarters; the last one takes the remainder), in step, then each
        // shifted by the sum of the ones before it
        let (p, c) = (&mut pre[1..], &col[..]);
        let mut acc = [0f64; 4];
        {
            // the quarters as slices of their own: no bounds checks
            let (p0, rest) = p.split_at_mut(quarter);
            let (p1, rest) = rest.split_at_mut(quarter);
            let (p2, rest) = rest.split_at_mut(quarter);
            let p3 = &mut rest[..quarter];
            let cq = |q: usize| &c[q * quarter..(q + 1) * quarter];
            let (c0, c1, c2, c3) = (cq(0), cq(1), cq(2), cq(3));
            for k in 0..quarter {
                acc[0] += c0[k] * inv_count;
                p0[k] = acc[0];
                acc[1] += c1[k] * inv_count;
                p1[k] = acc[1];
                acc[2] += c2[k] * inv_count;
                p2[k] = acc[2];
                acc[3] += c3[k] * inv_count;
                p3[k] = acc[3];
            }
        }
        for k in 4 * quarter..w {
            acc[3] += c[k] * inv_count;
            p[k] = acc[3];
        }
        for q in (1..4).filter(|_| quarter > 0) {
            let shift = p[q * quarter - 1];
            let end = if q == 3 { w } else { (q + 1) * quarter };
            p[q * quarter..end].iter_mut().for_each(|v| *v += shift);
        }
        window_sums(&mut out, &pre, &inv, r);
        visit(y, &out);
    }
}

/// `out[x] = (pre[hi] - pre[lo]) * inv[x]` for the window [x - r, x + r]
/// clipped to [0, w): lo = max(x - r, 0), hi = min(x + r + 1, w). In
/// three runs of x, split where lo and hi stop being clipped, each end
/// either a constant or a whole slice (so that every run vectorises; at
/// r = 40 on a working row of 168 px, half the row is clipped).
#[inline(always)]
fn window_sums(out: &mut [f64], pre: &[f64], inv: &[f64], r: usize) {
    let w = out.len();
    // lo is x - r from x = r on, hi is x + r + 1 below x = s
    let s = w.saturating_sub(r + 1);
    let (p, q) = (r.min(s).min(w), r.max(s).min(w));
    for (x0, x1) in [(0, p), (p, q), (q, w)] {
        if x0 >= x1 {
            continue;
        }
        let n = x1 - x0;
        let (o, iv) = (&mut out[x0..x1], &inv[x0..x1]);
        let (lo, hi): (&[f64], &[f64]) = match (x0 >= r, x0 < s) {
            (true, true) => (&pre[x0 - r..][..n], &pre[x0 + r + 1..][..n]),
            (true, false) => (&pre[x0 - r..][..n], &pre[w..w + 1]),
            (false, true) => (&pre[..1], &pre[x0 + r + 1..][..n]),
            (false, false) => (&pre[..1], &pre[w..w + 1]),
        };
        match (lo.len() == n, hi.len() == n) {
            (true, true) => o
                .iter_mut()
                .zip(hi.iter().zip(lo))
                .zip(iv)
                .for_each(|((o, (&u, &l)), &i)| *o = (u - l) * i),
            (true, false) => o
                .iter_mut()
                .zip(lo)
                .zip(iv)
                .for_each(|((o, &l), &i)| *o = (hi[0] - l) * i),
            (false, true) => o
                .iter_mut()
                .zip(hi)
                .zip(iv)
                .for_each(|((o, &u), &i)| *o = (u - lo[0]) * i),
            (false, false) => o
                .iter_mut()
                .zip(iv)
                .for_each(|(o, &i)| *o = (hi[0] - lo[0]) * i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::preprocess::test_images::random;

    #[test]
    fn box_blur_counts_inside_pixels_only() {
        // windows clipped at one end, at both, or not at all
        for (w, h, r) in [(23, 11, 4), (9, 5, 4), (5, 12, 7), (1, 3, 2), (30, 2, 0)] {
            let a = random(w, h, (w * 7 + h) as u32);
            let b = box_blur(&a, r);
            for y in 0..h {
                for x in 0..w {
                    let (mut s, mut n) = (0.0f64, 0.0);
                    for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                        for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                            s += a.get(yy, xx) as f64;
                            n += 1.0;
                        }
                    }
                    let d = (b.get(y, x) as f64 - s / n).abs();
                    assert!(d < 1e-6, "{w}x{h} r{r} at ({y}, {x}): {d}");
                }
            }
        }
    }
}
