//! Steps 6 and 7: 8-connected components of the ink mask, box gaps and
//! the dilation that keeps the ink near the kept components.
//!
//! Owns: labelling in raster order (the order preprocess.py's labels
//! come in, which decides ties), each component's pixel list (instead of
//! a label image: the later steps only read the kept components' pixels).
//! Must not: recurse (a flood fill on an explicit queue, whatever the
//! component's size).

use super::pool::Buf;

/// Step 6: the 8-connected components of a mask.
#[derive(Clone, Debug, Default)]
pub struct Components {
    /// Component i (numbered in raster order of its first pixel, Python's
    /// label i + 1) has `areas[i]` pixels ...
    pub areas: Vec<usize>,
    /// ... in the box (r0, c0, r1, c1), inclusive, ...
    pub boxes: Vec<[usize; 4]>,
    /// ... at the row-major indices `pixels[starts[i]..starts[i + 1]]`.
    pub pixels: Vec<u32>,
    pub starts: Vec<usize>,
}

impl Components {
    /// The pixels of component `i`.
    pub fn pixels_of(&self, i: usize) -> &[u32] {
        &self.pixels[self.starts[i]..self.starts[i + 1]]
    }
}

/// Step 6: 8-connected components of `mask` (`h` x `w`, non-zero = ink),
/// by a breadth-first flood fill started at each unvisited pixel in raster
/// order; `mask` is cleared on the way (it marks the visited pixels). The
/// fill runs on a copy with a border of one empty pixel, so that a pixel's
/// eight neighbours are eight fixed offsets, without bounds checks.
#[inline(always)]
pub fn components(mask: &mut [u8], h: usize, w: usize) -> Components {
    assert_eq!(mask.len(), h * w, "components: mask size");
    let mut c = Components {
        starts: vec![0],
        ..Components::default()
    };
    if h == 0 || w == 0 {
        return c;
    }
    let wp = w + 2;
    let mut pad = Buf::new((h + 2) * wp, 0u8);
    for (src, dst) in mask.chunks_exact(w).zip(pad[wp..].chunks_exact_mut(wp)) {
        dst[1..=w].copy_from_slice(src);
    }
    mask.fill(0);
    let row = wp as isize;
    let neighbours = [-row - 1, -row, -row + 1, -1, 1, row - 1, row, row + 1];
    let mut queue: Vec<u32> = Vec::new();
    let mut from = 0;
    while let Some(seed) = next_set(&pad, from) {
        from = seed + 1;
        pad[seed] = 0;
        // padded indices in `queue`, the image's in the component's pixels
        queue.clear();
        queue.push(seed as u32);
        let start = c.pixels.len();
        let (r0, c0) = (seed / wp - 1, seed % wp - 1);
        let mut bx = [r0, c0, r0, c0];
        let mut next = 0;
        while next < queue.len() {
            let i = queue[next] as usize;
            next += 1;
            let (r, col) = (i / wp - 1, i % wp - 1);
            bx = [bx[0].min(r), bx[1].min(col), bx[2].max(r), bx[3].max(col)];
            c.pixels.push((r * w + col) as u32);
            for d in neighbours {
                // inside `pad`: i is not on its border
                let j = i.wrapping_add_signed(d);
                if pad[j] != 0 {
                    pad[j] = 0;
                    queue.push(j as u32);
                }
            }
        }
        c.areas.push(c.pixels.len() - start);
        c.boxes.push(bx);
        c.starts.push(c.pixels.len());
    }
    c
}

/// The first non-zero byte of `mask` at or after `from`, eight at a time.
fn next_set(mask: &[u8], mut from: usize) -> Option<usize> {
    while from < mask.len() && !from.is_multiple_of(8) {
        if mask[from] != 0 {
            return Some(from);
        }
        from += 1;
    }
    let rest = mask.get(from..)?;
    let mut words = rest.chunks_exact(8);
    for (k, word) in words.by_ref().enumerate() {
        if u64::from_ne_bytes(word.try_into().expect("8 bytes")) != 0 {
            let at = word.iter().position(|&b| b != 0).expect("a non-zero byte");
            return Some(from + 8 * k + at);
        }
    }
    let tail = rest.len() - words.remainder().len();
    words
        .remainder()
        .iter()
        .position(|&b| b != 0)
        .map(|at| from + tail + at)
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
#[inline(always)]
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
        let mut mask = m.map(u8::from);
        let c = components(&mut mask, 4, 5);
        assert_eq!(c.areas, vec![3, 2]);
        assert_eq!(c.pixels_of(0)[0], 3, "first pixel in raster order");
        assert_eq!(c.pixels_of(1)[0], 5);
        assert!(c.pixels_of(0).contains(&9), "diagonal neighbours join");
        assert_eq!(c.boxes, vec![[0, 3, 2, 4], [1, 0, 2, 1]]);
        assert!(mask.iter().all(|&b| b == 0), "every ink pixel visited");
        assert_eq!(box_gap(&c.boxes[0], &c.boxes[1]), 2);
    }
}
