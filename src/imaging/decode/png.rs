//! PNG: the header read by the `png` crate, the exact output size, and the
//! decode to the least the preprocessing reads.
//!
//! Owns: the transformations (palettes and low bit depths expanded, as the
//! `image` crate does; 16-bit colour and alpha samples cut to their high
//! byte, the only byte step 1 reads of them; 16-bit grey kept whole, as
//! step 1 divides it by 65535 or 255), the estimate, and the image built
//! from the rows. Must not: read past the first image chunk before the
//! size has passed the pixel limit, or inflate text and ICC chunks.

use std::io::Cursor;

use ::png::{BitDepth, ColorType, Transformations};
use image::{DynamicImage, ImageBuffer};

use super::{check_pixels, DecodeError, Format, Header, Limits, Oriented, Path};

/// Most bytes the `png` crate may allocate for the chunks before the image
/// data (palette, EXIF); text and ICC chunks are skipped.
const CHUNK_BYTES: usize = 4 << 20;

fn failed(e: ::png::DecodingError) -> DecodeError {
    DecodeError::Corrupt(e.to_string())
}

/// A decoder set up with our transformations, its header read and checked.
fn reader<'a>(
    bytes: &'a [u8],
    limits: Option<&Limits>,
) -> Result<::png::Reader<Cursor<&'a [u8]>>, DecodeError> {
    let mut decoder =
        ::png::Decoder::new_with_limits(Cursor::new(bytes), ::png::Limits { bytes: CHUNK_BYTES });
    decoder.set_ignore_text_chunk(true);
    decoder.set_ignore_iccp_chunk(true);
    let info = decoder.read_header_info().map_err(failed)?;
    if let Some(limits) = limits {
        check_pixels(info.width, info.height, limits)?;
    }
    let strip = info.bit_depth == BitDepth::Sixteen && info.color_type != ColorType::Grayscale;
    decoder.set_transformations(if strip {
        Transformations::EXPAND | Transformations::STRIP_16
    } else {
        Transformations::EXPAND
    });
    decoder.read_info().map_err(failed)
}

pub(super) fn probe(bytes: &[u8], limits: &Limits) -> Result<Header, DecodeError> {
    let reader = reader(bytes, Some(limits))?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    let out = reader
        .output_buffer_size()
        .ok_or_else(|| DecodeError::Corrupt("the PNG's size overflows".into()))?
        as u64;
    let (_, depth) = reader.output_color_type();
    // 16-bit samples are read as bytes, then made u16s: interlaced images
    // hold both at once (the others go row by row)
    let widen = if depth == BitDepth::Sixteen && info.interlaced {
        out
    } else {
        0
    };
    // the decoder's own rows (current and previous), a few times over
    let rows = 4 * (info.raw_row_length() as u64 + 64);
    let rotated = if info.exif_metadata.is_some() { out } else { 0 };
    Ok(Header {
        format: Format::Png,
        width,
        height,
        progressive: false,
        memory: out + (widen + rows).max(rotated),
        path: Path::Png,
    })
}

pub(super) fn decode(bytes: &[u8]) -> Result<Oriented, DecodeError> {
    let mut reader = reader(bytes, None)?;
    let orientation = reader
        .info()
        .exif_metadata
        .as_deref()
        .and_then(image::metadata::Orientation::from_exif_chunk);
    let (width, height) = (reader.info().width, reader.info().height);
    let (colour, depth) = reader.output_color_type();
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| DecodeError::Corrupt("the PNG's size overflows".into()))?;
    let short = || DecodeError::Corrupt("the PNG holds fewer pixels than its size".into());
    let image = if depth == BitDepth::Sixteen {
        let samples = read_u16(&mut reader, size)?;
        match colour {
            ColorType::Grayscale => DynamicImage::ImageLuma16(
                ImageBuffer::from_raw(width, height, samples).ok_or_else(short)?,
            ),
            ColorType::GrayscaleAlpha => DynamicImage::ImageLumaA16(
                ImageBuffer::from_raw(width, height, samples).ok_or_else(short)?,
            ),
            _ => return Err(DecodeError::Unsupported),
        }
    } else {
        let mut buf = vec![0u8; size];
        reader.next_frame(&mut buf).map_err(failed)?;
        match colour {
            ColorType::Grayscale => DynamicImage::ImageLuma8(
                ImageBuffer::from_raw(width, height, buf).ok_or_else(short)?,
            ),
            ColorType::GrayscaleAlpha => DynamicImage::ImageLumaA8(
                ImageBuffer::from_raw(width, height, buf).ok_or_else(short)?,
            ),
            ColorType::Rgb => DynamicImage::ImageRgb8(
                ImageBuffer::from_raw(width, height, buf).ok_or_else(short)?,
            ),
            ColorType::Rgba => DynamicImage::ImageRgba8(
                ImageBuffer::from_raw(width, height, buf).ok_or_else(short)?,
            ),
            ColorType::Indexed => return Err(DecodeError::Unsupported),
        }
    };
    Ok((image, orientation))
}

/// The image's big-endian 16-bit samples as u16s: row by row into the
/// output when the image is not interlaced, else through a byte buffer.
fn read_u16(
    reader: &mut ::png::Reader<Cursor<&[u8]>>,
    size: usize,
) -> Result<Vec<u16>, DecodeError> {
    let be = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    if reader.info().interlaced {
        let mut buf = vec![0u8; size];
        reader.next_frame(&mut buf).map_err(failed)?;
        return Ok(buf.chunks_exact(2).map(be).collect());
    }
    let mut out = Vec::with_capacity(size / 2);
    while let Some(row) = reader.next_row().map_err(failed)? {
        out.extend(row.data().chunks_exact(2).map(be));
    }
    if out.len() != size / 2 {
        return Err(DecodeError::Corrupt(
            "the PNG ends before its last row (truncated upload?)".into(),
        ));
    }
    Ok(out)
}
