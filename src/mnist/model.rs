//! The bundled MNIST model, run with tract.
//!
//! Owns: the ONNX bytes (embedded at build time, trained by
//! `examples/mnist/train.py`; see `examples/mnist/MODEL.md`), loading them
//! once (`into_optimized`, `into_runnable`) and running one 28x28 image.
//! Must not: be called on the async reactor threads; inference is CPU work,
//! and callers run it on blocking threads.

use tract_onnx::prelude::*;

/// The model file, embedded so the binary needs nothing at run time (R10).
pub static ONNX: &[u8] = include_bytes!("model.onnx");

/// Side of the model's square input.
pub const SIDE: usize = 28;

/// One input image: 28x28 floats in [0, 1], ink high, row-major.
pub type Input = [f32; SIDE * SIDE];

/// The optimized, runnable model.
pub struct Model {
    plan: std::sync::Arc<TypedRunnableModel>,
}

/// The model could not be loaded (a build problem, not a user one).
#[derive(Debug, thiserror::Error)]
#[error("cannot load the bundled MNIST model: {0}")]
pub struct LoadError(String);

/// Inference failed.
#[derive(Debug, thiserror::Error)]
#[error("inference failed: {0}")]
pub struct RunError(String);

impl Model {
    /// Parses and optimizes the embedded model for a fixed 1x1x28x28 input.
    pub fn load() -> Result<Model, LoadError> {
        let err = |e: TractError| LoadError(format!("{e:#}"));
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &ONNX[..])
            .map_err(err)?
            .with_input_fact(0, f32::fact([1, 1, SIDE, SIDE]).into())
            .map_err(err)?
            .into_optimized()
            .map_err(err)?
            .into_runnable()
            .map_err(err)?;
        Ok(Model { plan })
    }

    /// The ten logits for one image.
    pub fn logits(&self, input: &Input) -> Result<[f32; 10], RunError> {
        let err = |e: TractError| RunError(format!("{e:#}"));
        let tensor = Tensor::from_shape(&[1, 1, SIDE, SIDE], input).map_err(err)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(err)?;
        let view = outputs[0].as_slice::<f32>().map_err(err)?;
        let mut logits = [0f32; 10];
        if view.len() != logits.len() {
            return Err(RunError(format!("expected 10 logits, got {}", view.len())));
        }
        logits.copy_from_slice(view);
        Ok(logits)
    }

    /// The predicted digit.
    pub fn predict(&self, input: &Input) -> Result<u8, RunError> {
        Ok(argmax(&self.logits(input)?))
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f32; 10]) -> u8 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u8
}
