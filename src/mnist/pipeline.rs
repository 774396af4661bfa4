//! One upload's computation: decode, preprocess, predict.
//!
//! Owns: the order of the three and the kind of each failure (`Failure`):
//! the image's fault (a decode error, no digit) or ours (the model failed,
//! something panicked). Must not: know about HTTP answers (`errors` maps
//! the kinds to statuses) or hold the decoded image past preprocessing.

use modelarts_init::imaging::decode::{self, DecodeError, Header};
use modelarts_init::imaging::preprocess;

use crate::model::{Predict, RunError};

/// Why an upload got no digit.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The image cannot be decoded within the limits (4xx).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Decoded, but no ink was found (422).
    #[error("no digit found in the image")]
    NoDigit,
    /// The model failed on a valid input: our fault (500).
    #[error(transparent)]
    Model(#[from] RunError),
    /// A decoder, the preprocessing or the model panicked (500).
    #[error("panic while classifying the upload")]
    Panic,
}

/// Decodes `bytes` (probed as `header`), preprocesses and predicts.
pub fn classify(bytes: &[u8], header: &Header, model: &dyn Predict) -> Result<u8, Failure> {
    let input = {
        let image = decode::decode(bytes, header)?;
        preprocess::preprocess(&image).ok_or(Failure::NoDigit)?
    };
    Ok(model.predict(&input)?)
}
