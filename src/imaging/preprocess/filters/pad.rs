//! Step 4's point-reflected padding (preprocess.py's `pad_odd`).
//!
//! Owns: `pad_odd`, exact. Must not: allocate outside the pool.

use super::super::grey::Grey;

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
        if w > p {
            // min(k, w - 1) = k: column p - k mirrors p + k, and p + w - 1 + k
            // mirrors p + w - 1 - k, as whole (reversed) slices
            let (left, rest) = dst.split_at_mut(p);
            let e = rest[0];
            for (o, &m) in left.iter_mut().zip(rest[1..=p].iter().rev()) {
                *o = 2.0 * e - m;
            }
            let (inner, right) = rest.split_at_mut(w);
            let e = inner[w - 1];
            for (o, &m) in right.iter_mut().zip(inner[w - 1 - p..w - 1].iter().rev()) {
                *o = 2.0 * e - m;
            }
        } else {
            for k in 1..=p {
                let kk = k.min(w - 1);
                dst[p - k] = 2.0 * dst[p] - dst[p + kk];
                dst[p + w - 1 + k] = 2.0 * dst[p + w - 1] - dst[p + w - 1 - kk];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::preprocess::test_images::random;

    #[test]
    fn pad_odd_columns_as_slices_equal_the_plain_loop() {
        for (w, h, p) in [(40, 7, 30), (31, 3, 30), (30, 4, 30), (5, 6, 30), (1, 2, 3)] {
            let a = random(w, h, (w + 3 * h) as u32);
            let got = pad_odd(&a, p);
            for y in 0..h + 2 * p {
                let mut want = got.row(y).to_vec();
                for k in 1..=p {
                    let kk = k.min(w - 1);
                    want[p - k] = 2.0 * want[p] - want[p + kk];
                    want[p + w - 1 + k] = 2.0 * want[p + w - 1] - want[p + w - 1 - kk];
                }
                assert_eq!(got.row(y), &want[..], "{w}x{h} p{p} row {y}");
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
