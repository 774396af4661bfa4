//! JPEG: the frame header read by walking the markers, the memory a
//! decode needs, and the decode itself (zune-jpeg, straight to luma).
//!
//! Owns: the marker walk (frame size, components and their sampling,
//! progressive or not, EXIF present, the number of scans, a complete file),
//! the estimate (the output, plus every component's coefficients when the
//! decoder must hold them all: progressive or non-interleaved scans) and
//! the scan limit. Must not: decode a pixel of a file whose scans, size or
//! end do not pass.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};
use zune_jpeg::zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};

use super::{check_pixels, DecodeError, Format, Header, Limits, Oriented, Path};

/// Most scans (SOS markers) of a JPEG. Encoders write 1 (baseline) to
/// about 10 (progressive); each scan of a progressive file walks the whole
/// image again, so thousands of them are a CPU bomb.
pub const MAX_SCANS: usize = 100;

/// The start-of-frame header and what comes before the first scan.
#[derive(Debug, Default)]
struct Frame {
    width: u32,
    height: u32,
    progressive: bool,
    /// (horizontal, vertical) sampling factor of each component.
    sampling: Vec<(u8, u8)>,
    /// Component ids (an RGB-coded JPEG names them 'R', 'G', 'B').
    ids: Vec<u8>,
    /// Adobe APP14's colour transform (0: none, i.e. RGB or CMYK).
    adobe_transform: Option<u8>,
    exif: bool,
    /// Components in the first scan (fewer than the frame's: the scans
    /// are not interleaved and the decoder keeps every coefficient).
    first_scan: usize,
}

fn corrupt(what: &str) -> DecodeError {
    DecodeError::Corrupt(what.to_owned())
}

/// The next marker at or after `i`: (marker byte, index after it). Fill
/// bytes (0xFF) are skipped; stray bytes between segments too (decoders
/// tolerate them).
fn next_marker(bytes: &[u8], mut i: usize) -> Option<(u8, usize)> {
    loop {
        i += bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        match *bytes.get(i)? {
            0x00 => continue,
            m => return Some((m, i + 1)),
        }
    }
}

/// The segment after a marker at `i`: (its payload, the index after it).
fn segment(bytes: &[u8], i: usize) -> Result<(&[u8], usize), DecodeError> {
    let len = bytes
        .get(i..i + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| corrupt("the JPEG ends inside a marker"))?;
    if len < 2 || i + len > bytes.len() {
        return Err(corrupt("the JPEG ends inside a marker segment"));
    }
    Ok((&bytes[i + 2..i + len], i + len))
}

/// Walks the markers up to the first scan's header.
fn frame(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let mut f = Frame::default();
    let mut seen_frame = false;
    let mut i = 2;
    loop {
        let (m, at) =
            next_marker(bytes, i).ok_or_else(|| corrupt("the JPEG ends before its first scan"))?;
        if matches!(m, 0x01 | 0xD0..=0xD8) {
            i = at;
            continue;
        }
        if m == 0xD9 {
            return Err(corrupt("the JPEG has no scan"));
        }
        let (seg, end) = segment(bytes, at)?;
        match m {
            0xC0..=0xCF if !matches!(m, 0xC4 | 0xC8 | 0xCC) && !seen_frame => {
                if seg.len() < 6 {
                    return Err(corrupt("short frame header"));
                }
                f.height = u16::from_be_bytes([seg[1], seg[2]]) as u32;
                f.width = u16::from_be_bytes([seg[3], seg[4]]) as u32;
                f.progressive = matches!(m & 0x0F, 2 | 6 | 10 | 14);
                let n = seg[5] as usize;
                if n == 0 || n > 4 || seg.len() < 6 + 3 * n {
                    return Err(corrupt("bad component count in the frame header"));
                }
                for c in seg[6..6 + 3 * n].chunks_exact(3) {
                    let (h, v) = (c[1] >> 4, c[1] & 0x0F);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                        return Err(corrupt("bad sampling factors in the frame header"));
                    }
                    f.ids.push(c[0]);
                    f.sampling.push((h, v));
                }
                seen_frame = true;
            }
            0xE1 if seg.starts_with(b"Exif\0\0") => f.exif = true,
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => {
                f.adobe_transform = Some(seg[11])
            }
            0xDA => {
                if !seen_frame {
                    return Err(corrupt("a scan before the frame header"));
                }
                f.first_scan = seg.first().map_or(0, |&n| n as usize);
                return Ok(f);
            }
            _ => {}
        }
        i = end;
    }
}

/// (scans, whether an end-of-image marker follows the last one): the
/// whole file walked, entropy-coded data skipped. The decoder fills a
/// truncated image with grey and reports success, which would classify
/// half a photo; an EXIF thumbnail's own markers are inside its APP1
/// segment and do not count.
fn scans(bytes: &[u8]) -> Result<(usize, bool), DecodeError> {
    let (mut count, mut i) = (0, 2);
    while let Some((m, at)) = next_marker(bytes, i) {
        match m {
            0xD9 => return Ok((count, count > 0)),
            0x01 | 0xD0..=0xD8 => i = at,
            _ => {
                let (_, end) = segment(bytes, at)?;
                count += usize::from(m == 0xDA);
                // next_marker skips the entropy-coded data: 0xFF in it is
                // followed by 0x00 (stuffing) or a restart marker.
                i = end;
            }
        }
    }
    Ok((count, false))
}

/// Whether zune-jpeg's luma output applies: a grey or YCbCr JPEG.
fn is_luma_path(f: &Frame) -> bool {
    match f.sampling.len() {
        1 => true,
        3 => matches!(f.adobe_transform, None | Some(1)) && f.ids != [b'R', b'G', b'B'],
        _ => false,
    }
}

pub(super) fn probe(bytes: &[u8], limits: &Limits) -> Result<Header, DecodeError> {
    let f = frame(bytes)?;
    check_pixels(f.width, f.height, limits)?;
    let (w, h) = (f.width as u64, f.height as u64);
    let hmax = f.sampling.iter().map(|s| s.0).max().unwrap_or(1) as u64;
    let vmax = f.sampling.iter().map(|s| s.1).max().unwrap_or(1) as u64;
    let (mcu_x, mcu_y) = (w.div_ceil(8 * hmax), h.div_ceil(8 * vmax));
    // 64 i16 per block; every component, at its own sampling
    let coefficients: u64 = f
        .sampling
        .iter()
        .map(|&(sh, sv)| mcu_x * sh as u64 * mcu_y * sv as u64 * 128)
        .sum();
    let all_coefficients = f.progressive || f.first_scan < f.sampling.len();
    // one MCU row of every component, before and after upsampling
    let rows = mcu_x * hmax * 8 * vmax * 8 * f.sampling.len() as u64 * 4;
    let luma = is_luma_path(&f);
    let out = if luma { w * h } else { w * h * 4 };
    // the `image` crate copies zune-jpeg's output once more
    let copy = if luma { 0 } else { out };
    let rotated = if f.exif { out } else { 0 };
    let transient = rows + copy + if all_coefficients { coefficients } else { 0 };
    Ok(Header {
        format: Format::Jpeg,
        width: f.width,
        height: f.height,
        progressive: f.progressive,
        memory: out + transient.max(rotated),
        path: if luma {
            Path::JpegLuma
        } else {
            Path::JpegOther
        },
    })
}

pub(super) fn decode(bytes: &[u8], header: &Header) -> Result<Oriented, DecodeError> {
    let (count, complete) = scans(bytes)?;
    if count > MAX_SCANS {
        return Err(DecodeError::TooManyScans {
            scans: count,
            limit: MAX_SCANS,
        });
    }
    if !complete {
        return Err(corrupt(
            "the JPEG ends before its end-of-image marker (truncated upload?)",
        ));
    }
    match header.path {
        Path::JpegLuma => decode_luma(bytes, header),
        _ => decode_other(bytes, header),
    }
}

/// A colour (YCbCr) or grey JPEG decoded straight to its luma, the grey
/// the model needs: the chroma planes are neither upsampled nor converted,
/// which is most of a colour JPEG's decoding time. `preprocess.py` does the
/// same (Pillow's `draft("L")`: libjpeg's luma output).
fn decode_luma(bytes: &[u8], header: &Header) -> Result<Oriented, DecodeError> {
    let failed = |e: zune_jpeg::errors::DecodeErrors| DecodeError::Corrupt(e.to_string());
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(header.width as usize)
        .set_max_height(header.height as usize)
        .jpeg_set_out_colorspace(ColorSpace::Luma);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(failed)?;
    if !matches!(
        decoder.input_colorspace(),
        Some(ColorSpace::YCbCr | ColorSpace::Luma)
    ) {
        // Markers in an order the walk did not foresee: the general path,
        // still within the estimate (the `image` crate enforces it).
        return decode_other(bytes, header);
    }
    if decoder.dimensions() != Some((header.width as usize, header.height as usize)) {
        return Err(corrupt("the JPEG's size differs between its headers"));
    }
    let pixels = decoder.decode().map_err(failed)?;
    let grey = image::GrayImage::from_raw(header.width, header.height, pixels)
        .ok_or_else(|| corrupt("the JPEG decoded to fewer pixels than its size"))?;
    let orientation = decoder
        .exif()
        .and_then(|exif| image::metadata::Orientation::from_exif_chunk(exif));
    Ok((DynamicImage::ImageLuma8(grey), orientation))
}

/// CMYK and RGB-coded JPEGs: the `image` crate's conversions.
fn decode_other(bytes: &[u8], header: &Header) -> Result<Oriented, DecodeError> {
    let failed = |e: image::ImageError| match e {
        image::ImageError::Unsupported(_) => DecodeError::Unsupported,
        other => DecodeError::Corrupt(other.to_string()),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Jpeg);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    limits.max_alloc = Some(header.memory);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(failed)?;
    let orientation = decoder.orientation().ok();
    let image = DynamicImage::from_decoder(decoder).map_err(failed)?;
    Ok((image, orientation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_walk_reads_a_real_photo() {
        let bytes = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images/seven.jpg"),
        )
        .unwrap();
        let f = frame(&bytes).unwrap();
        assert_eq!((f.width, f.height), (134, 115));
        assert!(is_luma_path(&f));
        assert_eq!(scans(&bytes).unwrap(), (1, true));
        let cut = &bytes[..bytes.len() / 3];
        assert!(!scans(cut).unwrap().1, "a truncated file");
    }
}
