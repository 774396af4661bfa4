//! Step 1: the decoded image to grey in [0, 1], whole or row by row.
//!
//! Owns: `Grey` (the working image type), the colour weights, the alpha
//! rule and the 16-bit rules of preprocess.py's `load_grey`. Must not:
//! resize or filter (the later steps do).

use image::DynamicImage;

use super::pool::{give, take_dirty};

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

    /// A `width x height` image in a recycled buffer, to be overwritten
    /// before it is read (`pool::take_dirty`).
    pub(crate) fn pooled_dirty(width: usize, height: usize) -> Grey {
        Grey {
            width,
            height,
            data: take_dirty(width * height),
        }
    }
}

impl Drop for Grey {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.data));
    }
}
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
    let mut g = Grey::pooled_dirty(src.width, src.height);
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
pub(crate) struct GreyRows<'a> {
    image: std::borrow::Cow<'a, DynamicImage>,
    pub(crate) width: usize,
    pub(crate) height: usize,
    luts: Luts,
    /// The alpha rule's background grey, if the image is composited.
    under: Option<f64>,
    /// 16-bit grey divisor (65535, or 255 if no value exceeds 255).
    div16: f64,
    /// Float divisor (255 if some grey exceeds 1, else 1: Pillow's "F").
    div_float: f64,
}

impl<'a> GreyRows<'a> {
    pub(crate) fn new(image: &'a DynamicImage) -> GreyRows<'a> {
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
    #[inline(always)]
    pub(crate) fn row(&self, y: usize, out: &mut [f32]) {
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
                    // = (v as f64 / 255.0) as f32 for every v (unit
                    // test), and a division vectorises where a lookup
                    // does not
                    *o = v as f32 / 255.0;
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

/// `0.299 * (r / 255)` etc. in f64, summed in Python's order.
struct Luts {
    r: [f64; 256],
    g: [f64; 256],
    b: [f64; 256],
}

impl Luts {
    fn new() -> Luts {
        Luts {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn grey_bytes_divide_in_f32_as_in_f64() {
        for v in 0..=255u8 {
            assert_eq!(v as f32 / 255.0, (v as f64 / 255.0) as f32, "{v}");
        }
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
}
