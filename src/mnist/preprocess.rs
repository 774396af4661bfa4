//! Photo -> 28x28 MNIST-style model input: a line-by-line port of the
//! reference `examples/mnist/preprocess.py` (same ten steps, same
//! constants, same results within float tolerance). Each pub function
//! names the step of the Python it mirrors.
//!
//! Owns: turning a decoded image into `[f32; 784]` (ink high, the ink box's
//! longer side 20 px, the centre of mass at (14, 14)). Must not: decode
//! bytes or apply EXIF orientation (the caller does), run the model, or
//! diverge from the Python: change both together. Cost: linear in the
//! input's pixels for steps 1 and 2, then bounded by the working size
//! (at most 128 x 384 px). Working buffers are recycled per thread (see
//! `take`), so a steady stream of requests allocates no fresh pages.

// The step functions are pub to mirror the Python one for one (and for
// the tests); the server itself calls only `preprocess`.
#![allow(dead_code, reason = "the step-by-step API mirrors preprocess.py")]

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use image::DynamicImage;

/// Working size: shorter side, px ...
pub const WORK_SHORT: f64 = 128.0;
/// ... unless the longer side would exceed this.
pub const WORK_LONG: f64 = 384.0;
/// Box blur radius for the polarity high-pass (window 81).
pub const POL_RADIUS: usize = 40;
/// Closing radius for the background (window 31).
pub const BG_RADIUS: usize = 15;
/// Minimum background brightness used as divisor.
pub const BG_FLOOR: f64 = 0.1;
pub const OTSU_BINS: usize = 256;
/// The strongest ink must be >= 8% darker than its local background.
pub const MIN_CONTRAST: f64 = 0.08;
/// The threshold is never below 20% of the strongest ink.
pub const MIN_THRESHOLD: f64 = 0.2;
/// Fewer ink pixels than this in the main component: no digit.
pub const MIN_PIXELS: usize = 10;
/// Prefer components off the border if one has >= 25% of the largest's area.
pub const BORDER_RATIO: f64 = 0.25;
/// Keep components with >= 8% of the main one's area ...
pub const KEEP_AREA: f64 = 0.08;
/// ... that lie within 30% of its box size from its box.
pub const KEEP_GAP: f64 = 0.3;
/// Ink farther than this (px, square window) from kept pixels is erased.
pub const KEEP_DILATE: usize = 2;
/// Ink strength mapped to 0: LO_FRACTION * threshold.
pub const LO_FRACTION: f64 = 0.5;
/// Ink strength mapped to 1: this percentile of d over the kept pixels.
pub const HI_PERCENTILE: f64 = 50.0;
/// Longer side of the ink box in the output, px.
pub const BOX: f64 = 20.0;
/// Where the centre of mass goes (row and col index).
pub const COM: f64 = 14.0;
/// Side of the output.
pub const OUT: usize = 28;

/// A grey image in [0, 1] (row-major, `data.len() == width * height`).
#[derive(Clone, Debug, PartialEq)]
pub struct Grey {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Grey {
    /// Panics if `data` does not hold `width * height` values.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Grey {
        assert_eq!(
            data.len(),
            width * height,
            "Grey: data length != width * height"
        );
        Grey {
            width,
            height,
            data,
        }
    }

    pub fn filled(width: usize, height: usize, value: f32) -> Grey {
        Grey {
            width,
            height,
            data: vec![value; width * height],
        }
    }

    pub fn get(&self, row: usize, col: usize) -> f32 {
        self.data[row * self.width + col]
    }

    pub fn row(&self, row: usize) -> &[f32] {
        &self.data[row * self.width..(row + 1) * self.width]
    }

    /// A `width x height` image of `value` in a recycled buffer.
    fn pooled(width: usize, height: usize, value: f32) -> Grey {
        Grey {
            width,
            height,
            data: take(width * height, value),
        }
    }
}

impl Drop for Grey {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.data));
    }
}

// ------------------------------------------------------------------ buffers

/// Largest buffer (elements) kept for reuse: every working-size plane fits
/// (at most (128 + 60) x (384 + 60)), a full-size photo does not.
const POOL_MAX_LEN: usize = 1 << 18;
/// Most buffers kept per element type and thread.
const POOL_MAX_COUNT: usize = 16;

/// Element types with a per-thread pool of recycled buffers. Why: glibc
/// returns large freed blocks to the OS, and faulting fresh pages in again
/// cost more than all the filters together (measured: ~100 faults per call).
trait Pooled: Copy + 'static {
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> Option<R>;
}

macro_rules! pooled {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<$t>>) -> R) -> Option<R> {
                thread_local!(static POOL: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) });
                POOL.try_with(|p| p.try_borrow_mut().ok().map(|mut p| f(&mut p))).ok().flatten()
            }
        }
    )*};
}
pooled!(f32, f64, u32);

/// `len` copies of `fill`, in a recycled buffer when one is free (the
/// smallest that fits, else the largest).
fn take<T: Pooled>(len: usize, fill: T) -> Vec<T> {
    let mut v = T::with_pool(|pool| {
        let fit = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= len)
            .min_by_key(|&i| pool[i].capacity())
            .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
        fit.map(|i| pool.swap_remove(i))
    })
    .flatten()
    .unwrap_or_default();
    v.clear();
    v.resize(len, fill);
    v
}

/// Returns a buffer to this thread's pool (or frees it).
fn give<T: Pooled>(v: Vec<T>) {
    if v.capacity() == 0 || v.capacity() > POOL_MAX_LEN {
        return;
    }
    T::with_pool(move |pool| {
        if pool.len() < POOL_MAX_COUNT {
            pool.push(v);
        }
    });
}

/// A scratch buffer from the pool, returned on drop.
struct Buf<T: Pooled>(Vec<T>);

impl<T: Pooled> Buf<T> {
    fn new(len: usize, fill: T) -> Buf<T> {
        Buf(take(len, fill))
    }
}

impl<T: Pooled> Deref for Buf<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Pooled> DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Pooled> Drop for Buf<T> {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

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

// ------------------------------------------------------------------ step 1

/// Step 1: decoded image (EXIF orientation already applied) -> grey in
/// [0, 1] with `0.299 R + 0.587 G + 0.114 B`. An alpha channel that is not
/// fully opaque is composited over white if the mostly-opaque pixels
/// (alpha >= 128) are dark on average (< 0.5), else over black. 16-bit
/// grey is divided by 65535, or by 255 if no value exceeds 255; other
/// 16-bit modes keep their high byte (as Pillow reads them). Float RGB
/// (not decodable from JPEG or PNG) follows Pillow's "F": divided by 255
/// if some grey exceeds 1.
pub fn load_grey(image: &DynamicImage) -> Grey {
    let src = GreyRows::new(image);
    let mut g = Grey::pooled(src.width, src.height, 0.0);
    if src.width > 0 {
        for (y, row) in g.data.chunks_exact_mut(src.width).enumerate() {
            src.row(y, row);
        }
    }
    g
}

/// Step 1 one row at a time, so that `preprocess` can resize a big photo
/// without a full-size grey copy: the image plus the decisions that need
/// all its pixels (the alpha rule, the 16-bit divisor).
struct GreyRows<'a> {
    image: std::borrow::Cow<'a, DynamicImage>,
    width: usize,
    height: usize,
    luts: Luts,
    /// The alpha rule's background grey, if the image is composited.
    under: Option<f64>,
    /// 16-bit grey divisor (65535, or 255 if no value exceeds 255).
    div16: f64,
    /// Float divisor (255 if some grey exceeds 1, else 1: Pillow's "F").
    div_float: f64,
}

impl<'a> GreyRows<'a> {
    fn new(image: &'a DynamicImage) -> GreyRows<'a> {
        use std::borrow::Cow;
        let image = match image {
            DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageRgb8(_)
            | DynamicImage::ImageRgba8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
            | DynamicImage::ImageRgb16(_)
            | DynamicImage::ImageRgba16(_)
            | DynamicImage::ImageRgb32F(_) => Cow::Borrowed(image),
            // Float RGBA and any future mode: through 8-bit RGBA.
            other => Cow::Owned(DynamicImage::ImageRgba8(other.to_rgba8())),
        };
        let (width, height) = (image.width() as usize, image.height() as usize);
        let luts = Luts::new();
        let mut rows = GreyRows {
            image,
            width,
            height,
            luts,
            under: None,
            div16: 65535.0,
            div_float: 1.0,
        };
        let stats = match &*rows.image {
            DynamicImage::ImageRgba8(b) => {
                Some(rows.alpha_stats(b.as_raw().chunks_exact(4).map(|p| (p[0], p[1], p[2], p[3]))))
            }
            DynamicImage::ImageLumaA8(b) => {
                Some(rows.alpha_stats(b.as_raw().chunks_exact(2).map(|p| (p[0], p[0], p[0], p[1]))))
            }
            DynamicImage::ImageRgba16(b) => Some(
                rows.alpha_stats(
                    b.as_raw()
                        .chunks_exact(4)
                        .map(|p| (hb(p[0]), hb(p[1]), hb(p[2]), hb(p[3]))),
                ),
            ),
            DynamicImage::ImageLumaA16(b) => Some(
                rows.alpha_stats(
                    b.as_raw()
                        .chunks_exact(2)
                        .map(|p| (hb(p[0]), hb(p[0]), hb(p[0]), hb(p[1]))),
                ),
            ),
            DynamicImage::ImageLuma16(b) => {
                rows.div16 = if b.as_raw().iter().any(|&v| v > 255) {
                    65535.0
                } else {
                    255.0
                };
                None
            }
            DynamicImage::ImageRgb32F(b) => {
                let grey =
                    |p: &[f32]| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
                rows.div_float = if b.as_raw().chunks_exact(3).any(|p| grey(p) > 1.0) {
                    255.0
                } else {
                    1.0
                };
                None
            }
            _ => None,
        };
        if let Some((min_a, sum_all, sum_opaque, n_opaque)) = stats {
            if min_a < 255 {
                let n = (width * height).max(1);
                let fg = if n_opaque > 0 {
                    sum_opaque / n_opaque as f64
                } else {
                    sum_all / n as f64
                };
                rows.under = Some(if fg < 0.5 { 1.0 } else { 0.0 });
            }
        }
        rows
    }

    /// (min alpha, sum of grey, sum of grey where alpha >= 128 (a / 255 >=
    /// 0.5), count of those).
    fn alpha_stats(&self, px: impl Iterator<Item = (u8, u8, u8, u8)>) -> (u8, f64, f64, usize) {
        let (mut min_a, mut sum_all, mut sum_opaque, mut n_opaque) = (255u8, 0.0, 0.0, 0usize);
        for (r, g, b, a) in px {
            let grey = self.luts.grey(r, g, b);
            min_a = min_a.min(a);
            sum_all += grey;
            if a >= 128 {
                sum_opaque += grey;
                n_opaque += 1;
            }
        }
        (min_a, sum_all, sum_opaque, n_opaque)
    }

    /// Grey row `y` into `out` (`width` values).
    fn row(&self, y: usize, out: &mut [f32]) {
        let w = self.width;
        let luts = &self.luts;
        // over the alpha rule's background, when compositing
        let put = |o: &mut f32, grey: f64, a: u8| {
            *o = match self.under {
                Some(under) => {
                    let a = a as f64 / 255.0;
                    (a * grey + (1.0 - a) * under) as f32
                }
                None => grey as f32,
            }
        };
        match &*self.image {
            DynamicImage::ImageLuma8(b) => {
                for (o, &v) in out.iter_mut().zip(&b.as_raw()[y * w..(y + 1) * w]) {
                    *o = luts.l[v as usize];
                }
            }
            DynamicImage::ImageRgb8(b) => {
                for (o, p) in out
                    .iter_mut()
                    .zip(b.as_raw()[3 * y * w..3 * (y + 1) * w].chunks_exact(3))
                {
                    *o = luts.grey(p[0], p[1], p[2]) as f32;
                }
            }
            DynamicImage::ImageRgba8(b) => {
                for (o, p) in out
                    .iter_mut()
                    .zip(b.as_raw()[4 * y * w..4 * (y + 1) * w].chunks_exact(4))
                {
                    put(o, luts.grey(p[0], p[1], p[2]), p[3]);
                }
            }
            DynamicImage::ImageLumaA8(b) => {
                for (o, p) in out
                    .iter_mut()
                    .zip(b.as_raw()[2 * y * w..2 * (y + 1) * w].chunks_exact(2))
                {
                    put(o, luts.grey(p[0], p[0], p[0]), p[1]);
                }
            }
            DynamicImage::ImageLuma16(b) => {
                for (o, &v) in out.iter_mut().zip(&b.as_raw()[y * w..(y + 1) * w]) {
                    *o = (v as f64 / self.div16).clamp(0.0, 1.0) as f32;
                }
            }
            DynamicImage::ImageLumaA16(b) => {
                for (o, p) in out
                    .iter_mut()
                    .zip(b.as_raw()[2 * y * w..2 * (y + 1) * w].chunks_exact(2))
                {
                    put(o, luts.grey(hb(p[0]), hb(p[0]), hb(p[0])), hb(p[1]));
                }
            }
            DynamicImage::ImageRgb16(b) => {
                for (o, p) in out
                    .iter_mut()
                    .zip(b.as_raw()[3 * y * w..3 * (y + 1) * w].chunks_exact(3))
                {
                    *o = luts.grey(hb(p[0]), hb(p[1]), hb(p[2])) as f32;
                }
            }
            DynamicImage::ImageRgba16(b) => {
                for (o, p) in out
                    .iter_mut()
                    .zip(b.as_raw()[4 * y * w..4 * (y + 1) * w].chunks_exact(4))
                {
                    put(o, luts.grey(hb(p[0]), hb(p[1]), hb(p[2])), hb(p[3]));
                }
            }
            DynamicImage::ImageRgb32F(b) => {
                for (o, p) in out
                    .iter_mut()
                    .zip(b.as_raw()[3 * y * w..3 * (y + 1) * w].chunks_exact(3))
                {
                    let g = 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
                    *o = (g / self.div_float).clamp(0.0, 1.0) as f32;
                }
            }
            _ => unreachable!("GreyRows::new converts other modes to RGBA8"),
        }
    }
}

/// The high byte of a 16-bit sample (Pillow's reading of 16-bit RGB(A)/LA).
fn hb(v: u16) -> u8 {
    (v >> 8) as u8
}

/// `v / 255` for grey, and `0.299 * (r / 255)` etc. in f64, summed in
/// Python's order.
struct Luts {
    l: [f32; 256],
    r: [f64; 256],
    g: [f64; 256],
    b: [f64; 256],
}

impl Luts {
    fn new() -> Luts {
        Luts {
            l: std::array::from_fn(|v| (v as f64 / 255.0) as f32),
            r: std::array::from_fn(|v| 0.299 * (v as f64 / 255.0)),
            g: std::array::from_fn(|v| 0.587 * (v as f64 / 255.0)),
            b: std::array::from_fn(|v| 0.114 * (v as f64 / 255.0)),
        }
    }

    #[inline]
    fn grey(&self, r: u8, g: u8, b: u8) -> f64 {
        self.r[r as usize] + self.g[g as usize] + self.b[b as usize]
    }
}

// ------------------------------------------------------------------ helpers

/// The rows of Python's `resample_matrix`, stored sparsely: output `k`
/// reads inputs `first[k] .. first[k] + len` with `weights[span[k]]`.
#[derive(Clone, Debug)]
pub struct Taps {
    pub first: Vec<usize>,
    pub span: Vec<std::ops::Range<usize>>,
    pub weights: Vec<f64>,
}

impl Taps {
    fn row(&self, k: usize) -> (usize, &[f64]) {
        (self.first[k], &self.weights[self.span[k].clone()])
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
    resize_rows(a.height, a.width, out_h, out_w, |y, row| {
        row.copy_from_slice(a.row(y))
    })
}

/// `resize` of the `h x w` image whose row y `fill(y, row)` writes: rows
/// first (saxpy over whole rows, each input row read once into a ring of
/// the filter's height), then columns.
fn resize_rows(
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
    mut fill: impl FnMut(usize, &mut [f32]),
) -> Grey {
    if (h, w) == (out_h, out_w) {
        // The filter is then the identity (weights 1 and 0), exactly.
        let mut out = Grey::pooled(w, h, 0.0);
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
    let cap = my.span.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut ring = Buf::new(cap * w, 0f32);
    let mut next = 0;
    let mut tmp = Buf::new(out_h * w, 0f32);
    for (k, acc) in tmp.chunks_exact_mut(w).enumerate() {
        let (first, wts) = my.row(k);
        while next < first + wts.len() {
            fill(next, &mut ring[(next % cap) * w..(next % cap + 1) * w]);
            next += 1;
        }
        for (y, &wt) in (first..).zip(wts) {
            let wt = wt as f32;
            let src = &ring[(y % cap) * w..(y % cap + 1) * w];
            acc.iter_mut().zip(src).for_each(|(o, &v)| *o += wt * v);
        }
    }
    let mut out = Grey::pooled(out_w, out_h, 0.0);
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

/// Step 3: mean over the (2r+1)^2 window, counting only the pixels inside
/// the image.
pub fn box_blur(a: &Grey, r: usize) -> Grey {
    let mut out = Grey::pooled(a.width, a.height, 0.0);
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
/// column sums over the window's rows, then prefix sums along the row.
fn box_blur_rows(a: &Grey, r: usize, mut visit: impl FnMut(usize, &[f64])) {
    let (h, w) = (a.height, a.width);
    let mut col = Buf::new(w, 0f64);
    let mut pre = Buf::new(w + 1, 0f64);
    let mut out = Buf::new(w, 0f64);
    // 1 / (pixels of x's window inside the row); reciprocals instead of
    // Python's divisions: within an ulp, and only a sign is taken from this
    let mut inv = Buf::new(w, 0f64);
    for (x, v) in inv.iter_mut().enumerate() {
        *v = 1.0 / ((x + r + 1).min(w) - x.saturating_sub(r)) as f64;
    }
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
        let mut acc = 0.0;
        for (p, &c) in pre[1..].iter_mut().zip(col.iter()) {
            acc += c * inv_count;
            *p = acc;
        }
        // windows [x - r, x + r] clipped to [0, w): pre[u] - pre[l]
        for (x, (o, &iv)) in out.iter_mut().zip(inv.iter()).enumerate() {
            *o = (pre[(x + r + 1).min(w)] - pre[x.saturating_sub(r)]) * iv;
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
    let mut s = Scratch::default();
    // Clipped windows = valid windows over r identity values at each end.
    let mut padded = Buf::new((h + 2 * r) * w, ident);
    padded[r * w..(r + h) * w].copy_from_slice(&a.data);
    let mut rows = Buf::new(h * w, 0f32);
    vhgw_valid::<MAX>(&padded, h + 2 * r, w, r, &mut rows, &mut s);
    let mut t = Buf::new((w + 2 * r) * h, ident);
    transpose(&rows, h, w, &mut t[r * h..(r + w) * h]);
    let mut cols = Buf::new(w * h, 0f32);
    vhgw_valid::<MAX>(&t, w + 2 * r, h, r, &mut cols, &mut s);
    let mut out = Grey::pooled(w, h, 0.0);
    transpose(&cols, w, h, &mut out.data);
    out
}

/// Step 4's closing of the padded image, cropped by `2r` px on every side:
/// `min_filter(max_filter(a, r), r)` there (its windows never reach the
/// padded image's edge, so no clipping). Column passes: van Herk/Gil-Werman
/// over whole rows; row passes: `window_along_rows`, no transposes.
fn closing_cropped(a: &Grey, r: usize) -> Grey {
    let (h, w) = (a.height, a.width);
    assert!(
        h > 4 * r && w > 4 * r,
        "closing_cropped: image smaller than the padding"
    );
    let mut s = Scratch::default();
    let (h1, w2, h2) = (h - 2 * r, w - 4 * r, h - 4 * r);
    let mut x = Buf::new(h1 * w, 0f32);
    let mut y = Buf::new(h1 * w, 0f32);
    // max along columns (rows r .. h-r), then along rows
    vhgw_valid::<true>(&a.data, h, w, r, &mut x, &mut s);
    window_along_rows::<true>(&mut x, &mut y, r);
    // min along rows (valid columns: 0 .. w1 - 2r = w2), then along columns
    window_along_rows::<false>(&mut x, &mut y, r);
    for (dst, src) in y[..h1 * w2].chunks_exact_mut(w2).zip(x.chunks_exact(w)) {
        dst.copy_from_slice(&src[..w2]);
    }
    let mut out = Grey::pooled(w2, h2, 0.0);
    vhgw_valid::<false>(&y[..h1 * w2], h1, w2, r, &mut out.data, &mut s);
    out
}

/// Windowed max (or min) along rows, in place: `plane[i] =
/// op(plane[i ..= i + 2r])` for i in 0 .. len - 2r, with `plane` taken as
/// one flat array (`tmp`: scratch of the same length). In each row of
/// width w the columns 0 .. w - 2r hold the valid windows; the others mix
/// in the next row and must not be read. Log-doubling: `op` over windows
/// of 1, 2, 4, ... px, then of two overlapping ones; each pass is one
/// elementwise op of two shifted slices (exact, as max and min are).
fn window_along_rows<const MAX: bool>(plane: &mut [f32], tmp: &mut [f32], r: usize) {
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
    // ping-pong between the two buffers; one copy at the end if needed
    let (mut src, mut dst) = (&mut *plane, &mut *tmp);
    for &k in &shifts {
        dst[..n - k]
            .iter_mut()
            .zip(&src[..n - k])
            .zip(&src[k..])
            .for_each(|((o, &a), &b)| *o = op::<MAX>(a, b));
        std::mem::swap(&mut src, &mut dst);
    }
    if shifts.len() % 2 == 1 {
        plane.copy_from_slice(tmp);
    }
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

/// Buffers of the van Herk/Gil-Werman filter, reused across passes.
struct Scratch {
    g: Buf<f32>,
    h: Buf<f32>,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            g: Buf::new(0, 0.0),
            h: Buf::new(0, 0.0),
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
fn vhgw_valid<const MAX: bool>(
    src: &[f32],
    n: usize,
    lanes: usize,
    r: usize,
    out: &mut [f32],
    s: &mut Scratch,
) {
    let win = 2 * r + 1;
    assert!(n >= win && src.len() == n * lanes && out.len() == (n - 2 * r) * lanes);
    if r == 0 {
        out.copy_from_slice(src);
        return;
    }
    s.g.resize(n * lanes, 0.0);
    s.h.resize(n * lanes, 0.0);
    let (g, h) = (&mut s.g.0[..n * lanes], &mut s.h.0[..n * lanes]);
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
pub fn pad_odd(a: &Grey, p: usize) -> Grey {
    let (h, w) = (a.height, a.width);
    let hp = h + 2 * p;
    let mut rows = Buf::new(hp * w, 0f32);
    for k in 1..=p {
        let kk = k.min(h - 1);
        let (r0, rk) = (a.row(0), a.row(kk));
        for ((o, &e), &m) in rows[(p - k) * w..(p - k + 1) * w]
            .iter_mut()
            .zip(r0)
            .zip(rk)
        {
            *o = 2.0 * e - m;
        }
        let (rn, rm) = (a.row(h - 1), a.row(h - 1 - kk));
        for ((o, &e), &m) in rows[(p + h - 1 + k) * w..(p + h + k) * w]
            .iter_mut()
            .zip(rn)
            .zip(rm)
        {
            *o = 2.0 * e - m;
        }
    }
    rows[p * w..(p + h) * w].copy_from_slice(&a.data);
    let wp = w + 2 * p;
    let mut out = Grey::pooled(wp, hp, 0.0);
    for y in 0..hp {
        let src = &rows[y * w..(y + 1) * w];
        let dst = &mut out.data[y * wp..(y + 1) * wp];
        dst[p..p + w].copy_from_slice(src);
        for k in 1..=p {
            let kk = k.min(w - 1);
            dst[p - k] = 2.0 * src[0] - src[kk];
            dst[p + w - 1 + k] = 2.0 * src[w - 1] - src[w - 1 - kk];
        }
    }
    out
}

/// Step 5's histogram (numpy's binning: bin i is [edge i, edge i+1), the
/// last one closed).
fn otsu_histogram(values: &[f32], bins: usize, vmax: f64) -> Vec<u32> {
    // numpy: bin i holds edge[i] <= v < edge[i+1] (the last bin also v ==
    // vmax), with edge[i] = i * (vmax / bins) and edge[bins] = vmax; the
    // estimate v * bins / vmax is corrected against those edges.
    let step = vmax / bins as f64;
    let edges: Vec<f64> = (0..=bins)
        .map(|i| if i == bins { vmax } else { i as f64 * step })
        .collect();
    let scale = bins as f64 / vmax;
    // four interleaved histograms: runs of equal bins do not wait on each
    // other's increments
    let mut counts = vec![0u32; 4 * bins];
    for (n, &v) in values.iter().enumerate() {
        let v = v as f64;
        if !(v >= 0.0 && v <= vmax) {
            continue;
        }
        let x = v * scale;
        let mut i = x as usize;
        // Far (1e-9 of a bin) from an edge, the estimate is the bin: the
        // rounding of x and of the edges is some 1e-14 of a bin. Near one,
        // check against numpy's edges.
        let frac = x - i as f64;
        if !(1e-9..1.0 - 1e-9).contains(&frac) || i >= bins {
            i = i.min(bins - 1);
            while v < edges[i] {
                i -= 1;
            }
            while i + 1 < bins && v >= edges[i + 1] {
                i += 1;
            }
        }
        counts[(n & 3) * bins + i] += 1;
    }
    (0..bins)
        .map(|i| counts[i] + counts[bins + i] + counts[2 * bins + i] + counts[3 * bins + i])
        .collect()
}

/// Step 5: Otsu threshold of `values` in [0, vmax] over `bins` bins (numpy's
/// histogram binning: bin i is [edge i, edge i+1), the last one closed);
/// returns the upper edge of the best lower class (the first maximum).
pub fn otsu(values: &[f32], bins: usize, vmax: f64) -> f64 {
    let hist = otsu_histogram(values, bins, vmax);
    let (mut w0, mut m0) = (vec![0f64; bins], vec![0f64; bins]);
    let (mut cw, mut cm) = (0.0, 0.0);
    for i in 0..bins {
        cw += hist[i] as f64;
        cm += hist[i] as f64 * ((i as f64 + 0.5) * vmax / bins as f64);
        w0[i] = cw;
        m0[i] = cm;
    }
    let (wt, mt) = (cw, cm);
    let (mut best, mut best_k) = (0.0f64, 0usize);
    for k in 0..bins {
        let w1 = wt - w0[k];
        if w0[k] > 0.0 && w1 > 0.0 {
            let between = (mt * w0[k] / wt - m0[k]).powi(2) / (w0[k] * w1);
            if between > best {
                best = between;
                best_k = k;
            }
        }
    }
    (best_k + 1) as f64 * vmax / bins as f64
}

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

/// Step 7: the `q`-th percentile, numpy's default (linear interpolation
/// between the sorted values at (n - 1) * q / 100, with numpy's `_lerp`),
/// in O(n). `values` (not empty) is reordered.
pub fn percentile(values: &mut [f32], q: f64) -> f64 {
    let n = values.len();
    assert!(n > 0, "percentile of nothing");
    let vi = (n - 1) as f64 * (q / 100.0);
    let (i, gamma) = if vi >= (n - 1) as f64 {
        (n - 1, 0.0)
    } else {
        let prev = vi.max(0.0).floor();
        (prev as usize, vi - prev)
    };
    let (_, a, upper) = values.select_nth_unstable_by(i, |x, y| x.total_cmp(y));
    let a = *a as f64;
    let b = upper
        .iter()
        .copied()
        .min_by(|x, y| x.total_cmp(y))
        .map_or(a, |b| b as f64);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

// ------------------------------------------------------------------ pipeline

/// Steps 1-10: decoded image -> 28x28 (ink high, row-major), or None if no
/// ink is found. The same as `preprocess_grey(&load_grey(image))`, bit for
/// bit, but step 1 is done row by row inside step 2's resize, so a big
/// photo is never copied at full size.
pub fn preprocess(image: &DynamicImage) -> Option<[f32; OUT * OUT]> {
    let src = GreyRows::new(image);
    let (wh, ww) = work_size(src.height, src.width)?;
    let g = resize_rows(src.height, src.width, wh, ww, |y, row| src.row(y, row));
    drop(src);
    steps_3_to_10(g, &mut Trace::default())
}

/// Steps 2-10 on a grey image in [0, 1].
pub fn preprocess_grey(grey: &Grey) -> Option<[f32; OUT * OUT]> {
    preprocess_grey_traced(grey, &mut Trace::default())
}

/// `preprocess_grey`, also recording its decisions in `trace`.
pub fn preprocess_grey_traced(grey: &Grey, trace: &mut Trace) -> Option<[f32; OUT * OUT]> {
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

/// Steps 3-10 on the working-size grey image.
fn steps_3_to_10(mut g: Grey, trace: &mut Trace) -> Option<[f32; OUT * OUT]> {
    let (wh, ww) = (g.height, g.width);
    trace.work = (wh, ww);

    // 3. polarity: the heavier tail of the high-pass h = g - blur is the ink
    let mut skew = 0f64;
    box_blur_rows(&g, POL_RADIUS, |y, blur| {
        skew += g
            .row(y)
            .iter()
            .zip(blur)
            .map(|(&v, &b)| (v as f64 - b).powi(3))
            .sum::<f64>();
    });
    trace.light_ink = skew > 0.0;
    if trace.light_ink {
        g.data.iter_mut().for_each(|v| *v = 1.0 - *v);
    }

    // 4. background (closing of the point-reflected image) and ink strength
    let p = 2 * BG_RADIUS;
    // = min_filter(max_filter(pad_odd(g, p), r), r)[p:-p, p:-p], exactly
    let bg = closing_cropped(&pad_odd(&g, p), BG_RADIUS);
    let mut d = Buf::new(wh * ww, 0f32);
    let mut dmax = 0f32;
    for ((o, &b), &v) in d.iter_mut().zip(&bg.data).zip(&g.data) {
        let (b, v) = (b as f64, v as f64);
        *o = ((b - v) / b.max(BG_FLOOR)).clamp(0.0, 1.0) as f32;
        dmax = if *o > dmax { *o } else { dmax };
    }
    drop((bg, g));

    // 5. threshold; no ink if the strongest is weaker than MIN_CONTRAST
    if (dmax as f64) < MIN_CONTRAST {
        return None;
    }
    let dmax = dmax as f64;
    let t = otsu(&d, OTSU_BINS, dmax).max(MIN_THRESHOLD * dmax);
    trace.threshold = t;
    let mask: Vec<bool> = d.iter().map(|&v| v as f64 > t).collect();

    // 6. components: prefer those off the border; the largest and its neighbours
    let comps = components(&mask, wh, ww);
    let n = comps.areas.len();
    trace.n_components = n;
    if n == 0 {
        give(comps.labels);
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
        give(comps.labels);
        return None;
    }
    let bb = boxes[big];
    let side = (bb[2] - bb[0] + 1).max(bb[3] - bb[1] + 1);
    let mut keep_label = vec![false; n + 1];
    // 8. (box) the kept pixels' bounding box = the union of the kept boxes
    let mut kbox = bb;
    for &i in &cand {
        if i == big
            || (areas[i] as f64 >= KEEP_AREA * areas[big] as f64
                && box_gap(&boxes[i], &bb) as f64 <= KEEP_GAP * side as f64)
        {
            keep_label[i + 1] = true;
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
    let kept: Vec<bool> = comps
        .labels
        .iter()
        .map(|&l| keep_label[l as usize])
        .collect();
    give(comps.labels);

    // 7. ink image; it is zero outside the kept box grown by KEEP_DILATE,
    // so v is only stored (and steps 8-9 only sum) over that region
    let mut kept_d = Buf::new(0, 0f32);
    kept_d.extend(d.iter().zip(&kept).filter(|(_, &k)| k).map(|(&v, _)| v));
    let hi = percentile(&mut kept_d, HI_PERCENTILE);
    trace.hi = hi;
    let lo = LO_FRACTION * t;
    let den = (hi - lo).max(1e-6);
    let near = dilate(&kept, wh, ww, KEEP_DILATE);
    let (y0, y1) = (
        kbox[0].saturating_sub(KEEP_DILATE),
        (kbox[2] + KEEP_DILATE + 1).min(wh),
    );
    let (x0, x1) = (
        kbox[1].saturating_sub(KEEP_DILATE),
        (kbox[3] + KEEP_DILATE + 1).min(ww),
    );
    let rw = x1 - x0;
    let mut v = Buf::new((y1 - y0) * rw, 0f64);
    for y in y0..y1 {
        let (dr, nr) = (
            &d[y * ww + x0..y * ww + x1],
            &near[y * ww + x0..y * ww + x1],
        );
        for ((o, &dv), &m) in v[(y - y0) * rw..(y - y0 + 1) * rw]
            .iter_mut()
            .zip(dr)
            .zip(nr)
        {
            *o = if m {
                ((dv as f64 - lo) / den).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
    }

    // 8. box, scale, centre of mass
    let l = (kbox[2] - kbox[0] + 1).max(kbox[3] - kbox[1] + 1);
    let s = BOX / l as f64;
    let (mut total, mut sy, mut sx) = (0f64, 0f64, 0f64);
    for (y, row) in (y0..y1).zip(v.chunks_exact(rw)) {
        let (mut rt, mut rx) = (0f64, 0f64);
        for (x, &val) in (x0..x1).zip(row) {
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

    // 9. resample into 28x28 (zeros outside the working image)
    let grid = |c: f64| -> Vec<f64> { (0..OUT).map(|i| c + (i as f64 - COM) / s).collect() };
    let my = resample_matrix(wh, &grid(cy), 1.0 / s, false);
    let mx = resample_matrix(ww, &grid(cx), 1.0 / s, false);
    let mut tmp = Buf::new(OUT * rw, 0f64);
    for (i, acc) in tmp.chunks_exact_mut(rw).enumerate() {
        let (first, wts) = my.row(i);
        for (y, &wt) in (first..).zip(wts) {
            if (y0..y1).contains(&y) {
                let src = &v[(y - y0) * rw..(y - y0 + 1) * rw];
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
                .filter(|(x, _)| (x0..x1).contains(x))
                .map(|(x, &wt)| wt * acc[x - x0])
                .sum();
        }
    }

    // 10. strokes' core to 1
    let m = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m > 0.0 && m < 1.0 {
        out.iter_mut().for_each(|v| *v /= m);
    }
    Some(out.map(|v| v.clamp(0.0, 1.0) as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift32 in [0, 1).
    struct Rng(u32);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            (self.0 >> 8) as f32 / (1u32 << 24) as f32
        }
    }

    /// A dark anti-aliased ring (a '0') plus a bar on lit paper with grain.
    fn photo(w: usize, h: usize) -> Grey {
        let mut rng = Rng(7);
        let (cy, cx, rad, th) = (
            h as f32 * 0.45,
            w as f32 * 0.55,
            h as f32 * 0.22,
            h as f32 * 0.06,
        );
        let mut g = Grey::filled(w, h, 0.0);
        for y in 0..h {
            for x in 0..w {
                let dist = ((y as f32 - cy).powi(2) + (x as f32 - cx).powi(2)).sqrt();
                let ring = (th / 2.0 - (dist - rad).abs() + 0.5).clamp(0.0, 1.0);
                let paper = 0.85 - 0.25 * x as f32 / w as f32 + 0.02 * (rng.next() - 0.5);
                g.data[y * w + x] = paper * (1.0 - ring) + 0.12 * ring;
            }
        }
        g
    }

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

    #[test]
    fn alpha_is_composited_by_the_ink_colour() {
        // dark ink, transparent background -> over white
        let img = image::RgbaImage::from_fn(4, 1, |x, _| {
            image::Rgba([0, 0, 0, [255, 255, 0, 51][x as usize]])
        });
        let g = load_grey(&DynamicImage::ImageRgba8(img));
        assert_eq!(g.data[0], 0.0);
        assert_eq!(g.data[2], 1.0);
        assert!((g.data[3] - 0.8).abs() < 1e-6);
        // light ink -> over black
        let img = image::RgbaImage::from_fn(3, 1, |x, _| {
            image::Rgba([255, 255, 255, [255, 0, 128][x as usize]])
        });
        let g = load_grey(&DynamicImage::ImageRgba8(img));
        assert!((g.data[0] - 1.0).abs() < 1e-6);
        assert_eq!(g.data[1], 0.0);
        // fully opaque: the alpha channel is ignored
        let img = image::RgbaImage::from_pixel(2, 2, image::Rgba([255, 0, 0, 255]));
        assert!((load_grey(&DynamicImage::ImageRgba8(img)).data[0] - 0.299).abs() < 1e-6);
    }

    #[test]
    fn sixteen_bit_modes() {
        let full = image::ImageBuffer::from_raw(2, 1, vec![65535u16, 300]).unwrap();
        let g = load_grey(&DynamicImage::ImageLuma16(full));
        assert_eq!(g.data[0], 1.0);
        assert!((g.data[1] - 300.0 / 65535.0).abs() < 1e-7);
        // no value above 255: divided by 255 (the Python rule)
        let low = image::ImageBuffer::from_raw(2, 1, vec![255u16, 51]).unwrap();
        let g = load_grey(&DynamicImage::ImageLuma16(low));
        assert_eq!(g.data, vec![1.0, 0.2]);
        // RGB16 keeps the high byte, as Pillow reads it
        let rgb = image::ImageBuffer::from_raw(1, 1, vec![0xFFFFu16, 0x00FF, 0x80FF]).unwrap();
        let g = load_grey(&DynamicImage::ImageRgb16(rgb));
        let want = 0.299 + 0.114 * 128.0 / 255.0;
        assert!((g.data[0] as f64 - want).abs() < 1e-6);
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

    fn random(w: usize, h: usize, seed: u32) -> Grey {
        let mut rng = Rng(seed);
        Grey::new(w, h, (0..w * h).map(|_| rng.next()).collect())
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

    #[test]
    fn otsu_splits_two_modes() {
        let mut v = vec![0.1f32; 500];
        v.extend(std::iter::repeat_n(0.8f32, 100));
        let t = otsu(&v, 256, 0.8f32 as f64);
        assert!(t > 0.1 && t < 0.8, "{t}");
        assert_eq!(t, 33.0 * (0.8f32 as f64) / 256.0, "the first maximum");
        assert_eq!(
            otsu(&[0.5; 10], 256, 0.5),
            0.5 / 256.0,
            "no split: the first bin"
        );
    }

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

    #[test]
    fn percentile_like_numpy() {
        assert_eq!(percentile(&mut [3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&mut [4.0, 1.0, 3.0, 2.0], 50.0), 2.5);
        assert_eq!(percentile(&mut [7.0], 50.0), 7.0);
        // np.percentile([1, 2, 3, 4, 10], [0, 25, 90, 100]) = 1, 2, 7.6, 10
        for (q, want) in [(0.0, 1.0), (25.0, 2.0), (90.0, 7.6), (100.0, 10.0)] {
            let got = percentile(&mut [10.0, 2.0, 4.0, 1.0, 3.0], q);
            assert!((got - want).abs() < 1e-12, "q {q}: {got}");
        }
    }

    /// numpy's binning done the slow way: every value against the edges.
    fn otsu_by_edges(values: &[f32], bins: usize, vmax: f64) -> Vec<u32> {
        let step = vmax / bins as f64;
        let edges: Vec<f64> = (0..=bins)
            .map(|i| if i == bins { vmax } else { i as f64 * step })
            .collect();
        let mut hist = vec![0u32; bins];
        for &v in values {
            let v = v as f64;
            if (0.0..=vmax).contains(&v) {
                let i = (0..bins)
                    .find(|&i| v >= edges[i] && (v < edges[i + 1] || i == bins - 1))
                    .unwrap();
                hist[i] += 1;
            }
        }
        hist
    }

    #[test]
    fn otsu_bins_exactly_like_numpy_even_on_the_edges() {
        let vmax = 0.7f32 as f64;
        let mut rng = Rng(99);
        let mut values: Vec<f32> = (0..20_000).map(|_| rng.next() * 0.75).collect();
        // Values on and next to every edge.
        for i in 0..=256 {
            let e = (i as f64 * vmax / 256.0) as f32;
            values.extend([
                e,
                f32::from_bits(e.to_bits() + 1),
                f32::from_bits(e.to_bits().max(1) - 1),
            ]);
        }
        values.push(vmax as f32);
        assert_eq!(
            otsu_histogram(&values, 256, vmax),
            otsu_by_edges(&values, 256, vmax),
            "bins differ from numpy's"
        );
    }

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
            let taps = mx.span.iter().map(|s| s.len()).max().unwrap();
            match taps {
                0..=4 => columns::<4>(&a.data, w, &mx, &mut fast),
                5..=8 => columns::<8>(&a.data, w, &mx, &mut fast),
                9..=16 => columns::<16>(&a.data, w, &mx, &mut fast),
                _ => columns_any(&a.data, w, &mx, &mut fast),
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
