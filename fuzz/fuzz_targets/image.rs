//! Image decode + preprocess (`modelarts_init::imaging`), as the mnist
//! server runs them on an upload's bytes: see `fuzz_support::image`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_support::image(data));
