//! Steps 3 and 4: box blur, min/max filters, the background closing and
//! the point-reflected padding.
//!
//! Owns: the windowed filters (running sums; van Herk/Gil-Werman and
//! log-doubling for min/max), exact where preprocess.py is (min/max) and
//! within an ulp where it divides. Must not: allocate outside the pool.

use super::grey::Grey;
use super::pool::Buf;

/// the image.
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
        for k in 0..quarter {
            for q in 0..4 {
                acc[q] += c[q * quarter + k] * inv_count;
                p[q * quarter + k] = acc[q];
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
        // windows [x - r, x + r] clipped to [0, w): pre[u] - pre[l]; the
        // unclipped middle ones as whole slices
        let mid = r.min(w)..w.saturating_sub(r + 1).max(r).min(w);
        for x in (0..mid.start).chain(mid.end..w) {
            out[x] = (pre[(x + r + 1).min(w)] - pre[x.saturating_sub(r)]) * inv[x];
        }
        let upper = pre.get(mid.start + r + 1..).unwrap_or(&[]);
        let (o, lower) = (&mut out[mid.clone()], &pre[..]);
        for (((o, &u), &l), &iv) in o.iter_mut().zip(upper).zip(lower).zip(&inv[mid]) {
            *o = (u - l) * iv;
        }
        visit(y, &out);
    }
}

/// Steps 4 and 7: max over the (2r+1)^2 window (pixels inside the image
/// only); rows then columns, van Herk/Gil-Werman.
pub fn max_filter(a: &Grey, r: usize) -> Grey {
    minmax::<true>(a, r)
}

/// Step 4: min over the (2r+1)^2 window (pixels inside the image only).
pub fn min_filter(a: &Grey, r: usize) -> Grey {
    minmax::<false>(a, r)
}

fn minmax<const MAX: bool>(a: &Grey, r: usize) -> Grey {
    let (h, w) = (a.height, a.width);
    let ident = if MAX {
        f32::NEG_INFINITY
    } else {
        f32::INFINITY
    };
    // Clipped windows = valid windows over r identity values at each end.
    let mut padded = Buf::new((h + 2 * r) * w, ident);
    padded[r * w..(r + h) * w].copy_from_slice(&a.data);
    let mut rows = Buf::dirty(h * w);
    vhgw_valid::<MAX>(&padded, h + 2 * r, w, r, &mut rows);
    let mut t = Buf::new((w + 2 * r) * h, ident);
    transpose(&rows, h, w, &mut t[r * h..(r + w) * h]);
    let mut cols = Buf::dirty(w * h);
    vhgw_valid::<MAX>(&t, w + 2 * r, h, r, &mut cols);
    let mut out = Grey::pooled_dirty(w, h);
    transpose(&cols, w, h, &mut out.data);
    out
}

/// Step 4's closing of the padded image, cropped by `2r` px on every side:
/// `min_filter(max_filter(a, r), r)` there (its windows never reach the
/// padded image's edge, so no clipping). Column passes: van Herk/Gil-Werman
/// over whole rows; row passes: `window_along_rows`, no transposes.
#[inline(always)]
pub(crate) fn closing_cropped(a: &Grey, r: usize) -> Grey {
    let (h, w) = (a.height, a.width);
    assert!(
        h > 4 * r && w > 4 * r,
        "closing_cropped: image smaller than the padding"
    );
    let (h1, w2, h2) = (h - 2 * r, w - 4 * r, h - 4 * r);
    // (the columns past the valid ones of each row are never read into a
    // valid one: both can start dirty)
    let mut x = Buf::dirty(h1 * w);
    let mut y = Buf::dirty(h1 * w);
    let (mut x, mut y) = (&mut x[..], &mut y[..]);
    // max along columns (rows r .. h-r), then along rows
    vhgw_valid::<true>(&a.data, h, w, r, x);
    if window_along_rows::<true>(x, y, r) {
        std::mem::swap(&mut x, &mut y);
    }
    // min along rows (valid columns: 0 .. w1 - 2r = w2), then along columns
    if window_along_rows::<false>(x, y, r) {
        std::mem::swap(&mut x, &mut y);
    }
    for (dst, src) in y[..h1 * w2].chunks_exact_mut(w2).zip(x.chunks_exact(w)) {
        dst.copy_from_slice(&src[..w2]);
    }
    let mut out = Grey::pooled_dirty(w2, h2);
    vhgw_valid::<false>(&y[..h1 * w2], h1, w2, r, &mut out.data);
    out
}

/// Windowed max (or min) along rows: `plane[i] = op(plane[i ..= i + 2r])`
/// for i in 0 .. len - 2r, with `plane` taken as one flat array, in
/// `plane` or, if it returns true, in `tmp` (scratch of the same length). In each row of
/// width w the columns 0 .. w - 2r hold the valid windows; the others mix
/// in the next row and must not be read. Log-doubling: `op` over windows
/// of 1, 2, 4, ... px, then of two overlapping ones; each pass is one
/// elementwise op of two shifted slices (exact, as max and min are).
#[inline(always)]
fn window_along_rows<const MAX: bool>(plane: &mut [f32], tmp: &mut [f32], r: usize) -> bool {
    let (win, n) = (2 * r + 1, plane.len());
    let mut shifts = Vec::with_capacity(8);
    let mut c = 1;
    while 2 * c <= win {
        shifts.push(c);
        c *= 2;
    }
    // windows of c px at i and at i + (win - c) cover i ..= i + win - 1
    shifts.push(win - c);
    shifts.retain(|&k| k > 0 && k < n);
    // ping-pong between the two buffers
    let (mut src, mut dst) = (&mut *plane, &mut *tmp);
    for &k in &shifts {
        dst[..n - k]
            .iter_mut()
            .zip(&src[..n - k])
            .zip(&src[k..])
            .for_each(|((o, &a), &b)| *o = op::<MAX>(a, b));
        std::mem::swap(&mut src, &mut dst);
    }
    shifts.len() % 2 == 1
}

/// `src` (`h` x `w`) transposed into `dst` (`w` x `h`), in cache blocks.
fn transpose(src: &[f32], h: usize, w: usize, dst: &mut [f32]) {
    const B: usize = 32;
    for y0 in (0..h).step_by(B) {
        for x0 in (0..w).step_by(B) {
            for y in y0..(y0 + B).min(h) {
                for x in x0..(x0 + B).min(w) {
                    dst[x * h + y] = src[y * w + x];
                }
            }
        }
    }
}

#[inline(always)]
fn op<const MAX: bool>(a: f32, b: f32) -> f32 {
    // (no NaN here) the forms that compile to maxps/minps
    if MAX {
        if a > b {
            a
        } else {
            b
        }
    } else if a < b {
        a
    } else {
        b
    }
}

/// Windowed max (or min) over the valid windows along the first axis of
/// `src` (`n` x `lanes`, row-major): `out[i] = op(src[i ..= i + 2r])` for
/// i in 0 .. n - 2r, per lane, whole rows at a time. Van Herk/Gil-Werman:
/// about three comparisons per value whatever `r` (running op from each
/// block's start, `g`, and from its end, `h`, in blocks of the window).
#[inline(always)]
fn vhgw_valid<const MAX: bool>(src: &[f32], n: usize, lanes: usize, r: usize, out: &mut [f32]) {
    let win = 2 * r + 1;
    assert!(n >= win && src.len() == n * lanes && out.len() == (n - 2 * r) * lanes);
    if r == 0 {
        out.copy_from_slice(src);
        return;
    }
    // every row of both is written before it is read
    let (mut g, mut h) = (Buf::dirty(n * lanes), Buf::dirty(n * lanes));
    let (g, h) = (&mut g[..], &mut h[..]);
    let row = |j: usize| j * lanes..(j + 1) * lanes;
    for b in (0..n).step_by(win) {
        let end = (b + win).min(n);
        g[row(b)].copy_from_slice(&src[row(b)]);
        for j in b + 1..end {
            let (prev, cur) = g[(j - 1) * lanes..(j + 1) * lanes].split_at_mut(lanes);
            for ((c, &p), &v) in cur.iter_mut().zip(prev.iter()).zip(&src[row(j)]) {
                *c = op::<MAX>(p, v);
            }
        }
        h[row(end - 1)].copy_from_slice(&src[row(end - 1)]);
        for j in (b..end - 1).rev() {
            let (cur, next) = h[j * lanes..(j + 2) * lanes].split_at_mut(lanes);
            for ((c, &p), &v) in cur.iter_mut().zip(next.iter()).zip(&src[row(j)]) {
                *c = op::<MAX>(p, v);
            }
        }
    }
    for i in 0..n - 2 * r {
        let gg = &g[row(i + 2 * r)];
        for ((o, &x), &y) in out[row(i)].iter_mut().zip(&h[row(i)]).zip(gg) {
            *o = op::<MAX>(x, y);
        }
    }
}

/// Step 4: pad by `p` px on every side with point reflection about the
/// edge pixels: row -k (k = 1..p) = 2 * row[0] - row[min(k, H-1)], same at
/// the bottom and for columns (rows first, then the columns of the
/// row-padded array).
#[inline(always)]
pub fn pad_odd(a: &Grey, p: usize) -> Grey {
    let (h, w) = (a.height, a.width);
    let (hp, wp) = (h + 2 * p, w + 2 * p);
    let mut out = Grey::pooled_dirty(wp, hp);
    for (y, dst) in out.data.chunks_exact_mut(wp).enumerate() {
        // the row of the row-padded array, then its columns
        let row = &mut dst[p..p + w];
        if y < p || y >= p + h {
            let (edge, k) = if y < p {
                (0, p - y)
            } else {
                (h - 1, y - (p + h - 1))
            };
            let kk = k.min(h - 1);
            let mirror = if y < p { kk } else { h - 1 - kk };
            for ((o, &e), &m) in row.iter_mut().zip(a.row(edge)).zip(a.row(mirror)) {
                *o = 2.0 * e - m;
            }
        } else {
            row.copy_from_slice(a.row(y - p));
        }
        for k in 1..=p {
            let kk = k.min(w - 1);
            dst[p - k] = 2.0 * dst[p] - dst[p + kk];
            dst[p + w - 1 + k] = 2.0 * dst[p + w - 1] - dst[p + w - 1 - kk];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::preprocess::test_images::random;
    fn naive(a: &Grey, r: usize, max: bool) -> Grey {
        let mut out = a.clone();
        for y in 0..a.height {
            for x in 0..a.width {
                let mut m = if max {
                    f32::NEG_INFINITY
                } else {
                    f32::INFINITY
                };
                for yy in y.saturating_sub(r)..(y + r + 1).min(a.height) {
                    for xx in x.saturating_sub(r)..(x + r + 1).min(a.width) {
                        m = if max {
                            m.max(a.get(yy, xx))
                        } else {
                            m.min(a.get(yy, xx))
                        };
                    }
                }
                out.data[y * a.width + x] = m;
            }
        }
        out
    }

    #[test]
    fn min_max_filters_match_the_naive_window() {
        for (w, h, r) in [
            (17, 13, 2),
            (40, 31, 15),
            (5, 3, 7),
            (1, 9, 1),
            (9, 1, 4),
            (33, 33, 0),
        ] {
            let a = random(w, h, (w * 31 + h) as u32);
            assert_eq!(max_filter(&a, r), naive(&a, r, true), "max {w}x{h} r{r}");
            assert_eq!(min_filter(&a, r), naive(&a, r, false), "min {w}x{h} r{r}");
        }
    }

    #[test]
    fn box_blur_counts_inside_pixels_only() {
        let a = random(23, 11, 3);
        let b = box_blur(&a, 4);
        for y in 0..11usize {
            for x in 0..23usize {
                let (mut s, mut n) = (0.0f64, 0.0);
                for yy in y.saturating_sub(4)..(y + 5).min(11) {
                    for xx in x.saturating_sub(4)..(x + 5).min(23) {
                        s += a.get(yy, xx) as f64;
                        n += 1.0;
                    }
                }
                assert!((b.get(y, x) as f64 - s / n).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn pad_odd_reflects_about_the_edge() {
        let a = Grey::new(3, 2, vec![1.0, 2.0, 4.0, 3.0, 3.0, 3.0]);
        let p = pad_odd(&a, 2);
        assert_eq!((p.width, p.height), (7, 6));
        // rows: -1 = 2*r0 - r1, -2 = 2*r0 - r1 (min(k, H-1) = 1), bottom likewise
        assert_eq!(&p.row(1)[2..5], &[-1.0, 1.0, 5.0]);
        assert_eq!(&p.row(0)[2..5], &[-1.0, 1.0, 5.0]);
        assert_eq!(&p.row(5)[2..5], &[5.0, 4.0, 2.0]);
        // columns of the row-padded array: col -1 = 2*c0 - c1, col -2 = 2*c0 - c2
        assert_eq!(p.row(2), &[-2.0, 0.0, 1.0, 2.0, 4.0, 6.0, 7.0]);
    }
}
