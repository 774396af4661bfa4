//! Decoding an upload (JPEG or PNG) within limits set by configuration.
//!
//! Two steps, so that a server can admit a decode before it starts it:
//! [`probe`] reads the header only (size, colour type, progressive or
//! not), refuses an image over the pixel limit, and estimates from the
//! header the most memory the decode and the preprocessing will hold at
//! once ([`Header::memory`]); [`decode`] then decodes to the least the
//! preprocessing needs: a YCbCr or grey JPEG straight to its luma, a PNG
//! with 16-bit colour samples cut to their high byte (all that step 1
//! reads of them).
//!
//! Owns: the format check, the limits (pixels, memory, JPEG scans), the
//! estimates and the decoders' settings. Must not: allocate a pixel
//! buffer before the header has been checked, or let a decoder allocate
//! much more than the estimate says (it counts the decoders' buffers as
//! their code allocates them; bench/README.md compares it with the growth
//! of VmHWM, and tests/it/mnist/limits.rs holds the server's peak).

mod jpeg;
mod png;

use image::DynamicImage;

use crate::imaging::preprocess;

/// `--max-pixels`' default: a 40-megapixel photo (a phone's biggest).
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// `--decode-memory`'s default: 128 MiB, whatever the number of cores.
pub const DEFAULT_DECODE_MEMORY: u64 = 128 << 20;

/// Limits of one decode.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most pixels (width x height) of an image.
    pub max_pixels: u64,
    /// Most bytes one decode (with its preprocessing) may need; more is
    /// refused, as it could never be admitted.
    pub max_memory: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_memory: DEFAULT_DECODE_MEMORY,
        }
    }
}

/// The formats we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

/// What the header says, read before any pixel is decoded.
#[derive(Debug, Clone)]
pub struct Header {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// A progressive JPEG (its coefficients are held whole while decoding).
    pub progressive: bool,
    /// Upper bound of the bytes the decode and preprocessing hold at once
    /// (steps 3-10 of preprocessing work on planes of the working size,
    /// whatever the image: `preprocess::STEPS_MEMORY` per thread, not
    /// counted here).
    pub memory: u64,
    /// How `decode` proceeds.
    path: Path,
}

/// The decoder a probed image takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// A YCbCr or grey JPEG, decoded to its luma by zune-jpeg.
    JpegLuma,
    /// Another JPEG colour space (CMYK, RGB), through the `image` crate.
    JpegOther,
    /// A PNG, through the `png` crate.
    Png,
}

/// Why an image was not decoded. Each is the uploader's doing, never ours.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported image format; send a JPEG or PNG")]
    Unsupported,
    #[error("cannot decode the image (truncated or corrupt?): {0}")]
    Corrupt(String),
    #[error("the image is {width}x{height} px ({}); the limit is {}", mp(*width as u64 * *height as u64), mp(*limit))]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("the image is {width}x{height} px and needs about {} MB of memory to decode; the limit is {} MB", mb(*needed), mb(*limit))]
    TooMuchMemory {
        width: u32,
        height: u32,
        needed: u64,
        limit: u64,
    },
    #[error("the JPEG has {scans} scans; the limit is {limit} (a progressive JPEG has about 10)")]
    TooManyScans { scans: usize, limit: usize },
}

impl DecodeError {
    /// A limit, rather than a broken file: the answer is 413.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            DecodeError::TooManyPixels { .. }
                | DecodeError::TooMuchMemory { .. }
                | DecodeError::TooManyScans { .. }
        )
    }
}

/// A pixel count as people write it: "268 MP", "40 MP", "1.5 MP", and
/// below 0.1 MP the count itself, "15410 px".
pub fn mp(pixels: u64) -> String {
    let m = pixels as f64 / 1e6;
    if pixels < 100_000 {
        format!("{pixels} px")
    } else if m >= 100.0 {
        format!("{} MP", m.floor())
    } else {
        let one = format!("{:.1}", (m * 10.0).floor() / 10.0);
        format!("{} MP", one.trim_end_matches(".0"))
    }
}

/// Bytes in MB (2^20), rounded up.
fn mb(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Reads the header of a JPEG or PNG and checks it against `limits`:
/// nothing of the size of the image is allocated.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<Header, DecodeError> {
    let mut header = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        jpeg::probe(bytes, limits)?
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        png::probe(bytes, limits)?
    } else {
        return Err(DecodeError::Unsupported);
    };
    header.memory += preprocess::working_memory(header.height as usize, header.width as usize);
    if header.memory > limits.max_memory {
        return Err(DecodeError::TooMuchMemory {
            width: header.width,
            height: header.height,
            needed: header.memory,
            limit: limits.max_memory,
        });
    }
    Ok(header)
}

/// The pixel limit, checked as soon as a decoder has read the size.
fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!(
            "the header says {width}x{height} px"
        )));
    }
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

/// Decodes a probed image (EXIF orientation applied).
pub fn decode(bytes: &[u8], header: &Header) -> Result<DynamicImage, DecodeError> {
    let mut image = match header.path {
        Path::JpegLuma | Path::JpegOther => jpeg::decode(bytes, header)?,
        Path::Png => png::decode(bytes)?,
    };
    if let Some(o) = image.1 {
        image.0.apply_orientation(o);
    }
    Ok(image.0)
}

/// `probe` then `decode`: for one-off decodes (tests, fuzzing, the stage
/// timings), which have no memory budget to wait for.
pub fn decode_within(bytes: &[u8], limits: &Limits) -> Result<DynamicImage, DecodeError> {
    decode(bytes, &probe(bytes, limits)?)
}

/// An image and the orientation its EXIF block asks for.
type Oriented = (DynamicImage, Option<image::metadata::Orientation>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megapixels_read_as_written() {
        assert_eq!(mp(16384 * 16384), "268 MP");
        assert_eq!(mp(40_000_000), "40 MP");
        assert_eq!(mp(1_500_000), "1.5 MP");
        assert_eq!(mp(36_000_000), "36 MP");
        assert_eq!(mp(4_290_250_000), "4290 MP");
        assert_eq!(mp(15_410), "15410 px");
        let e = DecodeError::TooManyPixels {
            width: 16384,
            height: 16384,
            limit: 40_000_000,
        };
        assert_eq!(
            e.to_string(),
            "the image is 16384x16384 px (268 MP); the limit is 40 MP"
        );
    }

    #[test]
    fn not_an_image_is_unsupported() {
        let limits = Limits {
            max_pixels: 1 << 20,
            max_memory: 1 << 30,
        };
        for bytes in [&b""[..], b"GIF89a", b"\xFF\xD8", b"hello"] {
            assert!(matches!(
                probe(bytes, &limits),
                Err(DecodeError::Unsupported)
            ));
        }
    }
}
