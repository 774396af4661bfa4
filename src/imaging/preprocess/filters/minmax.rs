//! Steps 4 and 7: the min/max filters and step 4's background closing.
//!
//! Owns: the windowed min and max (van Herk/Gil-Werman along columns,
//! log-doubling along rows), exact as preprocess.py is. Must not:
//! allocate outside the pool.

use super::super::grey::Grey;
use super::super::pool::Buf;

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
/// over whole rows; the two row passes one row at a time
/// (`window_along_row`, in scratch rows that stay in L1), no transposes.
#[inline(always)]
pub(crate) fn closing_cropped(a: &Grey, r: usize) -> Grey {
    let (h, w) = (a.height, a.width);
    assert!(
        h > 4 * r && w > 4 * r,
        "closing_cropped: image smaller than the padding"
    );
    let (h1, w1, w2, h2) = (h - 2 * r, w - 2 * r, w - 4 * r, h - 4 * r);
    let shifts = doubling_shifts(r);
    // max along columns (rows r .. h-r)
    let mut x = Buf::dirty(h1 * w);
    vhgw_valid::<true>(&a.data, h, w, r, &mut x);
    // max along rows (columns 0 .. w1), then min along rows (0 .. w2)
    let mut y = Buf::dirty(h1 * w2);
    let (mut s0, mut s1, mut maxed) = (Buf::dirty(w), Buf::dirty(w), Buf::dirty(w1));
    for (src, dst) in x.chunks_exact(w).zip(y.chunks_exact_mut(w2)) {
        window_along_row::<true>(src, &mut maxed, [&mut s0, &mut s1], &shifts);
        window_along_row::<false>(&maxed, dst, [&mut s0, &mut s1], &shifts);
    }
    // min along columns
    let mut out = Grey::pooled_dirty(w2, h2);
    vhgw_valid::<false>(&y, h1, w2, r, &mut out.data);
    out
}

/// The shifts of `window_along_row` for a window of `2r + 1`: 1, 2, 4, ...
/// (windows of 2, 4, 8, ... px), then the one that joins two overlapping
/// windows of the last width into the whole window.
fn doubling_shifts(r: usize) -> Vec<usize> {
    let win = 2 * r + 1;
    let mut shifts = Vec::with_capacity(8);
    let mut c = 1;
    while 2 * c <= win {
        shifts.push(c);
        c *= 2;
    }
    // windows of c px at i and at i + (win - c) cover i ..= i + win - 1
    shifts.push(win - c);
    shifts.retain(|&k| k > 0);
    shifts
}

/// Windowed max (or min) along one row: `dst[i] = op(src[i ..= i + 2r])`
/// for i in 0 .. src.len() - 2r (`dst`'s length), with `shifts` =
/// `doubling_shifts(r)`. Log-doubling: `op` over windows of 1, 2, 4, ...
/// px, then of two overlapping ones; each pass is one elementwise op of
/// two shifted slices (exact, as max and min are), ping-ponging between
/// the two scratch rows (each at least as long as `src`).
#[inline(always)]
fn window_along_row<const MAX: bool>(
    src: &[f32],
    dst: &mut [f32],
    [mut cur, mut spare]: [&mut [f32]; 2],
    shifts: &[usize],
) {
    assert_eq!(src.len(), dst.len() + shifts.iter().sum::<usize>());
    let Some((&last, rest)) = shifts.split_last() else {
        dst.copy_from_slice(src);
        return;
    };
    let Some((&first, middle)) = rest.split_first() else {
        shifted_op::<MAX>(src, last, dst);
        return;
    };
    shifted_op::<MAX>(src, first, cur);
    let mut len = src.len() - first;
    for &k in middle {
        shifted_op::<MAX>(&cur[..len], k, spare);
        len -= k;
        std::mem::swap(&mut cur, &mut spare);
    }
    shifted_op::<MAX>(&cur[..len], last, dst);
}

/// `to[i] = op(from[i], from[i + k])` for i in 0 .. from.len() - k.
#[inline(always)]
fn shifted_op<const MAX: bool>(from: &[f32], k: usize, to: &mut [f32]) {
    let n = from.len() - k;
    to[..n]
        .iter_mut()
        .zip(&from[..n])
        .zip(&from[k..])
        .for_each(|((o, &a), &b)| *o = op::<MAX>(a, b));
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
    // out row i = op(h[i], g[i + 2r]): i in block b, i + 2r in block b's
    // last row or block b + 1; so only the g of two blocks and the h of
    // one are held (a few dozen KB instead of two whole planes)
    let nout = n - 2 * r;
    let (mut g, mut g_next, mut h) = (
        Buf::dirty(win * lanes),
        Buf::dirty(win * lanes),
        Buf::dirty(win * lanes),
    );
    running::<MAX>(&src[..win * lanes], lanes, false, &mut g);
    running::<MAX>(&src[..win * lanes], lanes, true, &mut h);
    let row = |j: usize| j * lanes..(j + 1) * lanes;
    for b in (0..nout).step_by(win) {
        // block b is whole (b + 2r < n), block b + 1 is whatever is left
        let next = (b + win..(b + 2 * win).min(n)).len();
        if next > 0 {
            let rows = &src[(b + win) * lanes..(b + win + next) * lanes];
            running::<MAX>(rows, lanes, false, &mut g_next[..next * lanes]);
        }
        for i in b..(b + win).min(nout) {
            let j = i - b;
            let gg = if j == 0 {
                &g[row(win - 1)]
            } else {
                &g_next[row(j - 1)]
            };
            for ((o, &x), &y) in out[row(i)].iter_mut().zip(&h[row(j)]).zip(gg) {
                *o = op::<MAX>(x, y);
            }
        }
        std::mem::swap(&mut g, &mut g_next);
        if next > 0 {
            let rows = &src[(b + win) * lanes..(b + win + next) * lanes];
            running::<MAX>(rows, lanes, true, &mut h[..next * lanes]);
        }
    }
}

/// Running max (or min) down the rows of `src` (`lanes` wide) into `acc`
/// (as long): from the first row on, or with `backward` from the last row
/// up (van Herk/Gil-Werman's g and h of one block).
#[inline(always)]
fn running<const MAX: bool>(src: &[f32], lanes: usize, backward: bool, acc: &mut [f32]) {
    let n = src.len() / lanes;
    let row = |j: usize| j * lanes..(j + 1) * lanes;
    if backward {
        acc[row(n - 1)].copy_from_slice(&src[row(n - 1)]);
        for j in (0..n - 1).rev() {
            let (cur, next) = acc[j * lanes..(j + 2) * lanes].split_at_mut(lanes);
            for ((c, &p), &v) in cur.iter_mut().zip(next.iter()).zip(&src[row(j)]) {
                *c = op::<MAX>(p, v);
            }
        }
    } else {
        acc[row(0)].copy_from_slice(&src[row(0)]);
        for j in 1..n {
            let (prev, cur) = acc[(j - 1) * lanes..(j + 1) * lanes].split_at_mut(lanes);
            for ((c, &p), &v) in cur.iter_mut().zip(prev.iter()).zip(&src[row(j)]) {
                *c = op::<MAX>(p, v);
            }
        }
    }
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
    fn the_cropped_closing_is_min_of_max_cropped() {
        for (w, h, r) in [
            (61, 62, 15),
            (228, 188, 15),
            (9, 13, 2),
            (5, 5, 1),
            (7, 3, 0),
        ] {
            let a = random(w, h, (w * 13 + h) as u32);
            let full = min_filter(&max_filter(&a, r), r);
            let got = closing_cropped(&a, r);
            assert_eq!((got.width, got.height), (w - 4 * r, h - 4 * r));
            for y in 0..got.height {
                assert_eq!(
                    got.row(y),
                    &full.row(y + 2 * r)[2 * r..w - 2 * r],
                    "{w}x{h} r{r} row {y}"
                );
            }
        }
    }
}
