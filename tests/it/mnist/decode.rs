//! The library's decoder, `modelarts_init::imaging::decode`, linked as the
//! mnist binary links it (and a fuzz target would), without tract: seed
//! images mutated at random decode or fail with an error, never a panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

use modelarts_init::imaging::decode::{decode_within, Limits};
use modelarts_init::imaging::preprocess::preprocess;

use super::*;

#[test]
fn mutated_uploads_decode_or_fail_without_panicking() {
    let seeds: Vec<Vec<u8>> = ["seven.jpg", "zero.jpg", "two.png", "four.png"]
        .iter()
        .map(|n| fs::read(repo().join("examples/images").join(n)).unwrap())
        .collect();
    let limits = Limits::default();
    let mut state = 0x9E37_79B9u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as usize
    };
    let (mut decoded, mut refused) = (0, 0);
    for i in 0..3000 {
        let mut bytes = seeds[i % seeds.len()].clone();
        // a few bytes changed, most often in the headers
        for _ in 0..1 + next() % 6 {
            let span = if next() % 2 == 0 { 600 } else { bytes.len() };
            let at = next() % span.min(bytes.len());
            bytes[at] = next() as u8;
        }
        if next() % 5 == 0 {
            bytes.truncate(next() % bytes.len());
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            decode_within(&bytes, &limits).map(|image| preprocess(&image).is_some())
        }));
        match outcome {
            Ok(Ok(_)) => decoded += 1,
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                refused += 1
            }
            Err(_) => panic!("mutation {i} panicked the decoder"),
        }
    }
    eprintln!("mutated uploads: {decoded} decoded, {refused} refused with an error");
    assert!(decoded > 0 && refused > 0);
}
