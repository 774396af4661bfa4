//! The bundled MNIST model, run with tract.
//!
//! Owns: the ONNX bytes (embedded at build time, trained by
//! `examples/mnist/train.py`; see `examples/mnist/MODEL.md`), loading them
//! once (`into_optimized`, `into_runnable`) and running one 28x28 image.
//! Must not: be called on the async reactor threads; inference is CPU work,
//! and the compute threads run it.

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
pub struct RunError(pub(crate) String);

/// What the compute threads run on a 28x28: the model, or in unit tests a
/// stand-in that fails on purpose.
pub trait Predict: Send + Sync + 'static {
    fn predict(&self, input: &Input) -> Result<u8, RunError>;
}

impl Predict for Model {
    fn predict(&self, input: &Input) -> Result<u8, RunError> {
        Model::predict(self, input)
    }
}

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
        let view = outputs[0].to_plain_array_view::<f32>().map_err(err)?;
        let mut logits = [0f32; 10];
        if view.len() != logits.len() {
            return Err(RunError(format!("expected 10 logits, got {}", view.len())));
        }
        for (l, v) in logits.iter_mut().zip(view.iter()) {
            *l = *v;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// tract must compute what the training script computed, on the first
    /// 2000 digits of the MNIST test split (committed with the script's
    /// predictions and logits in tests/data).
    #[test]
    fn tract_agrees_with_the_training_script() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let raw = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(repo.join("tests/data/mnist-test-sample.bin.gz"))
            .output()
            .expect("gzip -dc");
        assert!(raw.status.success());
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo.join("tests/data/mnist-test-sample.json")).unwrap(),
        )
        .unwrap();
        let count = reference["count"].as_u64().unwrap() as usize;
        assert_eq!(raw.stdout.len(), count * 784);
        let model = Model::load().expect("load the bundled model");
        let mut worst = 0f32;
        let mut correct = 0;
        for i in 0..count {
            let mut input = [0f32; 784];
            for (x, b) in input.iter_mut().zip(&raw.stdout[i * 784..(i + 1) * 784]) {
                *x = *b as f32 / 256.0;
            }
            let logits = model.logits(&input).unwrap();
            let want = reference["predictions"][i].as_u64().unwrap() as u8;
            assert_eq!(
                argmax(&logits),
                want,
                "digit {i}: tract disagrees with the training script"
            );
            for (a, b) in logits
                .iter()
                .zip(reference["logits"][i].as_array().unwrap())
            {
                worst = worst.max((a - b.as_f64().unwrap() as f32).abs());
            }
            if reference["labels"][i].as_u64() == Some(want as u64) {
                correct += 1;
            }
        }
        eprintln!("tract vs training logits: max abs difference {worst}; accuracy on the sample {correct}/{count}");
        assert!(worst < 1e-3, "logits differ by up to {worst}");
    }
}
