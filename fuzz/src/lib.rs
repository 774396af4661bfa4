//! What the fuzz targets share: the mnist server's image path (probe, then
//! decode, then preprocess) under limits like the server's, and the
//! invariants it must keep whatever the bytes.
//!
//! Owns: the limits and the checks. Must not: hold a target's own input
//! handling (multipart, HTTP).

use modelarts_init::imaging::decode::{self, Limits};
use modelarts_init::imaging::preprocess;

/// Limits small enough for a fuzzer's memory (libFuzzer's default RSS
/// limit is 2 GB), large enough for every seed.
pub const LIMITS: Limits = Limits {
    max_pixels: 4_000_000,
    max_memory: 64 << 20,
};

/// The mnist server's path for one upload: the header is checked before
/// anything is decoded, and the decode keeps to what the header promised.
pub fn image(bytes: &[u8]) {
    let Ok(header) = decode::probe(bytes, &LIMITS) else {
        return;
    };
    let pixels = header.width as u64 * header.height as u64;
    assert!(pixels > 0 && pixels <= LIMITS.max_pixels, "{header:?}");
    assert!(header.memory <= LIMITS.max_memory, "{header:?}");
    let Ok(image) = decode::decode(bytes, &header) else {
        return;
    };
    // EXIF orientation may swap the sides, never change the pixel count.
    assert_eq!(
        image.width() as u64 * image.height() as u64,
        pixels,
        "decoded {}x{}, header {header:?}",
        image.width(),
        image.height()
    );
    if let Some(input) = preprocess::preprocess(&image) {
        assert!(
            input.iter().all(|v| v.is_finite()),
            "a non-finite model input"
        );
    }
}
