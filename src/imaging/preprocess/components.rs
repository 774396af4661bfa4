//! Steps 6 and 7: 8-connected components of the ink mask, box gaps and
//! the dilation that keeps the ink near the kept components.
//!
//! Owns: labelling in raster order (the order preprocess.py's labels
//! come in, which decides ties). Must not: recurse (a flood fill on an
//! explicit stack, whatever the component's size).

use super::pool::take;

/// Step 6: the 8-connected components of a mask.
#[derive(Clone, Debug, Default)]
pub struct Components {
    /// 0 = background, else 1.. in raster order of each component's first pixel.
    pub labels: Vec<u32>,
    pub areas: Vec<usize>,
    /// (r0, c0, r1, c1), inclusive.
    pub boxes: Vec<[usize; 4]>,
}

/// Step 6: 8-connected components of `mask` (`h` x `w`), by an iterative
/// flood fill started at each unlabelled pixel in raster order.
pub fn components(mask: &[bool], h: usize, w: usize) -> Components {
    let mut labels = take(h * w, 0u32);
    let (mut areas, mut boxes) = (Vec::new(), Vec::new());
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for r0 in 0..h {
        for c0 in 0..w {
            if !mask[r0 * w + c0] || labels[r0 * w + c0] != 0 {
                continue;
            }
            let lab = areas.len() as u32 + 1;
            labels[r0 * w + c0] = lab;
            stack.push((r0, c0));
            let (mut area, mut bx) = (0usize, [r0, c0, r0, c0]);
            while let Some((r, c)) = stack.pop() {
                area += 1;
                bx = [bx[0].min(r), bx[1].min(c), bx[2].max(r), bx[3].max(c)];
                for rr in r.saturating_sub(1)..=(r + 1).min(h - 1) {
                    for cc in c.saturating_sub(1)..=(c + 1).min(w - 1) {
                        let i = rr * w + cc;
                        if mask[i] && labels[i] == 0 {
                            labels[i] = lab;
                            stack.push((rr, cc));
                        }
                    }
                }
            }
            areas.push(area);
            boxes.push(bx);
        }
    }
    Components {
        labels,
        areas,
        boxes,
    }
}

/// Step 6: distance between two boxes (r0, c0, r1, c1): the larger of the
/// row and column gaps, 0 if they overlap.
pub fn box_gap(a: &[usize; 4], b: &[usize; 4]) -> usize {
    let gr = a[0].max(b[0]).saturating_sub(a[2].min(b[2]));
    let gc = a[1].max(b[1]).saturating_sub(a[3].min(b[3]));
    gr.max(gc)
}

/// Step 7: `max_filter` of a 0/1 mask (`h` x `w`): true within `r` px
/// (square window) of a true pixel.
pub fn dilate(mask: &[bool], h: usize, w: usize, r: usize) -> Vec<bool> {
    let mut rows = vec![false; h * w];
    for y in 0..h {
        let dst = &mut rows[y * w..(y + 1) * w];
        for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
            dst.iter_mut()
                .zip(&mask[yy * w..(yy + 1) * w])
                .for_each(|(o, &m)| *o |= m);
        }
    }
    let mut out = vec![false; h * w];
    for (src, dst) in rows.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
        // dst[x] |= src[x + k] for k in -r..=r (clipped): whole-slice ORs
        for k in 0..=r.min(w - 1) {
            dst[..w - k]
                .iter_mut()
                .zip(&src[k..])
                .for_each(|(o, &m)| *o |= m);
            dst[k..]
                .iter_mut()
                .zip(&src[..w - k])
                .for_each(|(o, &m)| *o |= m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_8_connected_in_raster_order() {
        #[rustfmt::skip]
        let m = [
            0, 0, 0, 1, 0,
            1, 0, 0, 0, 1,
            0, 1, 0, 0, 1,
            0, 0, 0, 0, 0,
        ].map(|v| v == 1);
        let c = components(&m, 4, 5);
        assert_eq!(c.areas, vec![3, 2]);
        assert_eq!(c.labels[3], 1, "first pixel in raster order");
        assert_eq!(c.labels[5], 2);
        assert_eq!(c.labels[9], 1, "diagonal neighbours join");
        assert_eq!(c.boxes, vec![[0, 3, 2, 4], [1, 0, 2, 1]]);
        assert_eq!(box_gap(&c.boxes[0], &c.boxes[1]), 2);
    }
}
