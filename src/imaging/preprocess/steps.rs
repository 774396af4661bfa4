//! Steps 1-10 in order: the pipeline of preprocess.py's `preprocess`.
//!
//! Owns: the working size, the decisions between the steps (polarity,
//! no-ink cases, the normalisation; which components are kept is `ink`'s)
//! and their `Trace`, and the choice of the baseline or the AVX2 copy of
//! the whole pipeline (`wide`). Must not: hold the full-size image longer
//! than step 2 needs.

use image::DynamicImage;

use super::filters::{box_blur_rows, closing_cropped};
use super::grey::GreyRows;
use super::ink::{centre, ink_image, resample, select};
use super::pool::Buf;
use super::resize::resize_rows;
use super::wide;
use super::*;

/// What the pipeline decided (Python's `debug` dict), for tests and logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// Working size (rows, cols) after step 2.
    pub work: (usize, usize),
    /// Step 3: the ink was light on dark and the image was inverted.
    pub light_ink: bool,
    /// Step 5: the threshold t.
    pub threshold: f64,
    /// Step 6: how many components, how many kept.
    pub n_components: usize,
    pub kept: usize,
    /// Step 7: the HI_PERCENTILE-th percentile of the kept pixels' ink strength.
    pub hi: f64,
    /// Step 8: box side L, scale s, centre of mass (row, col).
    pub box_side: usize,
    pub scale: f64,
    pub com: (f64, f64),
}

/// Steps 1-10: decoded image -> 28x28 (ink high, row-major), or None if no
/// ink is found. The same as `preprocess_grey(&load_grey(image))`, bit for
/// bit, but step 1 is done row by row inside step 2's resize, so a big
/// photo is never copied at full size.
pub fn preprocess(image: &DynamicImage) -> Option<[f32; OUT * OUT]> {
    #[cfg(target_arch = "x86_64")]
    if wide::avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { preprocess_avx2(image) };
    }
    preprocess_here(image)
}

/// `preprocess` compiled for AVX2 (`wide`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn preprocess_avx2(image: &DynamicImage) -> Option<[f32; OUT * OUT]> {
    preprocess_here(image)
}

#[inline(always)]
fn preprocess_here(image: &DynamicImage) -> Option<[f32; OUT * OUT]> {
    let src = GreyRows::new(image);
    let (wh, ww) = work_size(src.height, src.width)?;
    let g = resize_rows(
        src.height,
        src.width,
        wh,
        ww,
        #[inline(always)]
        |y, row| src.row(y, row),
    );
    drop(src);
    steps_3_to_10(g, &mut Trace::default())
}

/// Steps 2-10 on a grey image in [0, 1].
pub fn preprocess_grey(grey: &Grey) -> Option<[f32; OUT * OUT]> {
    preprocess_grey_traced(grey, &mut Trace::default())
}

/// `preprocess_grey`, also recording its decisions in `trace`.
pub fn preprocess_grey_traced(grey: &Grey, trace: &mut Trace) -> Option<[f32; OUT * OUT]> {
    #[cfg(target_arch = "x86_64")]
    if wide::avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { grey_avx2(grey, trace) };
    }
    grey_here(grey, trace)
}

/// `preprocess_grey_traced` compiled for AVX2 (`wide`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn grey_avx2(grey: &Grey, trace: &mut Trace) -> Option<[f32; OUT * OUT]> {
    grey_here(grey, trace)
}

#[inline(always)]
fn grey_here(grey: &Grey, trace: &mut Trace) -> Option<[f32; OUT * OUT]> {
    let (wh, ww) = work_size(grey.height, grey.width)?;
    steps_3_to_10(resize(grey, wh, ww), trace)
}

/// Step 2's working size (rows, cols) for an `h x w` image; None if empty.
pub fn work_size(h: usize, w: usize) -> Option<(usize, usize)> {
    if h == 0 || w == 0 {
        return None;
    }
    let (h, w) = (h as f64, w as f64);
    let k = (WORK_SHORT / h.min(w)).min(WORK_LONG / h.max(w));
    // floor(side * k + 0.5), at least 1
    Some((
        ((h * k + 0.5).floor() as usize).max(1),
        ((w * k + 0.5).floor() as usize).max(1),
    ))
}

/// Upper bound of the bytes `preprocess` holds for an `h x w` image,
/// besides the image itself: step 2's ring of input rows and its
/// row-resized copy, both as wide as the image. Steps 3-10 then work on
/// planes of the working size, whatever the image: a few MB per thread
/// (`STEPS_MEMORY`), kept in the thread's pool.
pub fn working_memory(h: usize, w: usize) -> u64 {
    let Some((wh, _)) = work_size(h, w) else {
        return 0;
    };
    let fy = h as f64 / wh as f64;
    // a tap spans 2 * max(1, fy) + 1 input rows at most
    let ring = ((2.0 * fy.max(1.0)).ceil() as u64 + 2).min(h as u64);
    (ring + wh as u64) * w as u64 * 4 + (w as u64 + 64) * 4
}

/// Most bytes steps 3-10 hold, whatever the image: a dozen planes of at
/// most (128 + 60) x (384 + 60) values, f64 at most.
pub const STEPS_MEMORY: u64 = 12 * 188 * 444 * 8;

/// Steps 3-10 on the working-size grey image.
#[inline(always)]
fn steps_3_to_10(mut g: Grey, trace: &mut Trace) -> Option<[f32; OUT * OUT]> {
    trace.work = (g.height, g.width);
    polarity(&mut g, trace);
    let (d, dmax) = ink_strength(&g);
    let (wh, ww) = (g.height, g.width);
    drop(g);

    // 5. threshold; no ink if the strongest is weaker than MIN_CONTRAST
    if (dmax as f64) < MIN_CONTRAST {
        return None;
    }
    let dmax = dmax as f64;
    let t = otsu(&d, OTSU_BINS, dmax).max(MIN_THRESHOLD * dmax);
    trace.threshold = t;
    let mut mask = Buf::dirty(wh * ww);
    for (m, &v) in mask.iter_mut().zip(d.iter()) {
        *m = u8::from(v as f64 > t);
    }

    let comps = components(&mut mask, wh, ww);
    let (kept, kbox) = select(&comps, wh, ww, trace)?;

    let ink = ink_image(&d, &comps, &kept, kbox, t, (wh, ww), trace);
    let (cy, cx, s) = centre(&ink, kbox, trace);
    let mut out = resample(&ink, (wh, ww), (cy, cx), s);

    // 10. strokes' core to 1
    let m = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m > 0.0 && m < 1.0 {
        out.iter_mut().for_each(|v| *v /= m);
    }
    Some(out.map(|v| v.clamp(0.0, 1.0) as f32))
}

/// Step 3: the heavier tail of the high-pass h = g - blur is the ink; light
/// ink on dark is inverted.
#[inline(always)]
fn polarity(g: &mut Grey, trace: &mut Trace) {
    // eight partial sums (two AVX2 vectors, to halve the adds' latency
    // chain): numpy's order is its own (pairwise) anyway, and only the
    // sign is taken
    let mut skew = [0f64; 8];
    // (inlined, so that the AVX2 copy of the pipeline runs it with AVX2:
    // a closure does not inherit its caller's target features)
    box_blur_rows(
        g,
        POL_RADIUS,
        #[inline(always)]
        |y, blur| {
            // the row's own sums first: in registers (the captured `skew`
            // stayed in memory, one scalar add at a time)
            let mut sums = [0f64; 8];
            let (row, mut octets) = (g.row(y), blur.chunks_exact(8));
            for (v, b) in row.chunks_exact(8).zip(octets.by_ref()) {
                let (v, b): (&[f32; 8], &[f64; 8]) =
                    (v.try_into().expect("8"), b.try_into().expect("8"));
                let h: [f64; 8] = std::array::from_fn(|k| v[k] as f64 - b[k]);
                for k in 0..8 {
                    // = h.powi(3)
                    sums[k] += h[k] * h[k] * h[k];
                }
            }
            let done = blur.len() - octets.remainder().len();
            for (&v, &b) in row[done..].iter().zip(octets.remainder()) {
                sums[0] += (v as f64 - b).powi(3);
            }
            for (s, r) in skew.iter_mut().zip(sums) {
                *s += r;
            }
        },
    );
    trace.light_ink = skew.iter().sum::<f64>() > 0.0;
    if trace.light_ink {
        g.data.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
}

/// Step 4: the background (closing of the point-reflected image) and the
/// ink strength d against it; returns d and its maximum.
#[inline(always)]
fn ink_strength(g: &Grey) -> (Buf<f32>, f32) {
    let p = 2 * BG_RADIUS;
    // = min_filter(max_filter(pad_odd(g, p), r), r)[p:-p, p:-p], exactly
    let bg = closing_cropped(&pad_odd(g, p), BG_RADIUS);
    let mut d = Buf::dirty(g.height * g.width);
    for ((o, &b), &v) in d.iter_mut().zip(&bg.data).zip(&g.data) {
        let (b, v) = (b as f64, v as f64);
        // (the forms that compile to maxpd/minpd: no NaN here)
        let den = if b > BG_FLOOR { b } else { BG_FLOOR };
        let q = (b - v) / den;
        *o = q.clamp(0.0, 1.0) as f32;
    }
    // d >= 0: its largest value has the largest bits (a vectorised max)
    let dmax = f32::from_bits(d.iter().fold(0u32, |m, &v| m.max(v.to_bits())));
    (d, dmax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::preprocess::test_images::photo;
    fn centre_of_mass(out: &[f32; 784]) -> (f64, f64) {
        let (mut t, mut sy, mut sx) = (0.0, 0.0, 0.0);
        for (i, &v) in out.iter().enumerate() {
            t += v as f64;
            sy += v as f64 * (i / 28) as f64;
            sx += v as f64 * (i % 28) as f64;
        }
        (sy / t, sx / t)
    }

    #[test]
    fn dark_ring_on_paper_is_centred_ink_high() {
        let out = preprocess_grey(&photo(200, 150)).expect("a digit");
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(out.iter().copied().fold(0.0, f32::max), 1.0);
        let (cy, cx) = centre_of_mass(&out);
        assert!(
            (cy - 14.0).abs() < 0.5 && (cx - 14.0).abs() < 0.5,
            "com ({cy}, {cx})"
        );
        // ink high: the corners are background, the ring's top (row 4-5) is ink
        assert_eq!(out[0], 0.0);
        assert_eq!(out[783], 0.0);
        assert!(
            out[4 * 28 + 14].max(out[5 * 28 + 14]) > 0.5,
            "{}",
            out[4 * 28 + 14]
        );
        assert!(out[14 * 28 + 14] < 0.05, "the ring's hole is empty");
        // the ink box's longer side is about 20 px
        let rows: Vec<usize> = (0..28)
            .filter(|r| (0..28).any(|c| out[r * 28 + c] > 0.1))
            .collect();
        let span = rows.last().unwrap() - rows.first().unwrap() + 1;
        assert!((19..=22).contains(&span), "span {span}");
    }

    #[test]
    fn light_on_dark_equals_its_inverse() {
        let dark = photo(180, 160);
        let mut light = dark.clone();
        light.data.iter_mut().for_each(|v| *v = 1.0 - *v);
        let (mut ta, mut tb) = (Trace::default(), Trace::default());
        let a = preprocess_grey_traced(&dark, &mut ta).unwrap();
        let b = preprocess_grey_traced(&light, &mut tb).unwrap();
        assert!(!ta.light_ink && tb.light_ink);
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-4, "max diff {diff}");
    }

    #[test]
    fn uniform_images_have_no_digit() {
        for (w, h, v) in [
            (120, 90, 0.75),
            (258, 239, 0.757),
            (22, 475, 0.141),
            (474, 412, 0.247),
            (1, 1, 0.5),
            (5, 5, 0.0),
            (300, 7, 1.0),
        ] {
            assert_eq!(
                preprocess_grey(&Grey::filled(w, h, v)),
                None,
                "{w}x{h} at {v}"
            );
        }
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            97,
            133,
            image::Rgb([200, 190, 180]),
        ));
        assert_eq!(preprocess(&rgb), None);
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        for (w, h) in [
            (1, 1),
            (2, 1),
            (1, 2),
            (5, 5),
            (2000, 1),
            (1, 2000),
            (2000, 60),
            (3, 400),
        ] {
            let mut g = Grey::filled(w, h, 0.9);
            g.data[(h / 2) * w + w / 2] = 0.1;
            if let Some(out) = preprocess_grey(&g) {
                assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
            }
        }
        assert_eq!(preprocess_grey(&Grey::filled(0, 0, 0.0)), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_copy_computes_the_baseline_bit_for_bit() {
        if !super::wide::avx2() {
            return;
        }
        for (w, h) in [(279, 212), (900, 700), (40, 300), (2000, 60)] {
            let ring = photo(w, h);
            let grey = image::GrayImage::from_fn(w as u32, h as u32, |x, y| {
                image::Luma([(ring.get(y as usize, x as usize) * 255.0 + 0.5) as u8])
            });
            let image = DynamicImage::ImageLuma8(grey);
            // SAFETY: the CPU has AVX2, checked above.
            let wide = unsafe { preprocess_avx2(&image) };
            assert!(wide.is_some(), "{w}x{h}");
            assert_eq!(wide, preprocess_here(&image), "{w}x{h}");
            let (mut ta, mut tb) = (Trace::default(), Trace::default());
            // SAFETY: as above.
            let wide = unsafe { grey_avx2(&ring, &mut ta) };
            assert_eq!(wide, grey_here(&ring, &mut tb), "{w}x{h}");
            assert_eq!(ta, tb);
        }
    }

    #[test]
    fn preprocess_is_load_grey_then_preprocess_grey_bit_for_bit() {
        let ring = photo(900, 700);
        let to8 = |v: f32| (v * 255.0 + 0.5) as u8;
        let rgb = image::RgbImage::from_fn(900, 700, |x, y| {
            let v = to8(ring.get(y as usize, x as usize));
            image::Rgb([v, v.saturating_add(10), v / 2])
        });
        // drawing-app style: dark ink colour, alpha = coverage
        let rgba = image::RgbaImage::from_fn(900, 700, |x, y| {
            image::Rgba([20, 20, 60, 255 - to8(ring.get(y as usize, x as usize))])
        });
        let grey16 = image::ImageBuffer::from_fn(900, 700, |x, y| {
            image::Luma([(ring.get(y as usize, x as usize) * 65535.0) as u16])
        });
        for image in [
            DynamicImage::ImageRgb8(rgb),
            DynamicImage::ImageRgba8(rgba),
            DynamicImage::ImageLuma16(grey16),
        ] {
            let fused = preprocess(&image);
            assert!(fused.is_some(), "{:?}", image.color());
            assert_eq!(
                fused,
                preprocess_grey(&load_grey(&image)),
                "{:?}",
                image.color()
            );
        }
    }
}
