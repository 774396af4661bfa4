//! Photo -> 28x28 MNIST-style model input: a line-by-line port of the
//! reference `examples/mnist/preprocess.py` (same ten steps, same
//! constants, same results within float tolerance). Each pub function
//! names the step of the Python it mirrors, and is public so that the
//! tests (and whoever ports a change) can hold it against the Python.
//!
//! Owns: turning a decoded image into `[f32; 784]` (ink high, the ink box's
//! longer side 20 px, the centre of mass at (14, 14)). Must not: decode
//! bytes or apply EXIF orientation (`imaging::decode` does), run the model,
//! or diverge from the Python: change both together. Cost: linear in the
//! input's pixels for steps 1 and 2, then bounded by the working size
//! (at most 128 x 384 px). Working buffers are recycled per thread
//! (`pool`), so a steady stream of requests allocates no fresh pages.
//!
//! Modules, one per step family: `grey` (step 1: colour to grey, alpha,
//! 16-bit), `resize` (steps 2 and 9: the triangle filter), `filters`
//! (steps 3-4: box blur, min/max, closing, padding), `threshold` (steps 5
//! and 7: Otsu, percentile), `components` (steps 6-7: labelling,
//! dilation), `ink` (steps 6-9: the kept components, the ink image, its
//! centre and the resampling), `steps` (the pipeline that runs them), `pool` (buffers),
//! `wide` (the same code compiled for AVX2, chosen at run time).

mod components;
mod filters;
mod grey;
mod ink;
mod pool;
mod resize;
mod steps;
#[cfg(test)]
mod test_images;
mod threshold;
mod wide;

pub use components::{box_gap, components, dilate, Components};
pub use filters::{box_blur, max_filter, min_filter, pad_odd};
pub use grey::{load_grey, Grey};
pub use resize::{resample_matrix, resize, Taps};
pub use steps::{
    preprocess, preprocess_grey, preprocess_grey_traced, work_size, working_memory, Trace,
    STEPS_MEMORY,
};
pub use threshold::{otsu, percentile};

/// Working size: shorter side, px ...
pub const WORK_SHORT: f64 = 128.0;
/// ... unless the longer side would exceed this.
pub const WORK_LONG: f64 = 384.0;
/// Box blur radius for the polarity high-pass (window 81).
pub const POL_RADIUS: usize = 40;
/// Closing radius for the background (window 31).
pub const BG_RADIUS: usize = 15;
/// Minimum background brightness used as divisor.
pub const BG_FLOOR: f64 = 0.1;
pub const OTSU_BINS: usize = 256;
/// The strongest ink must be >= 8% darker than its local background.
pub const MIN_CONTRAST: f64 = 0.08;
/// The threshold is never below 20% of the strongest ink.
pub const MIN_THRESHOLD: f64 = 0.2;
/// Fewer ink pixels than this in the main component: no digit.
pub const MIN_PIXELS: usize = 10;
/// Prefer components off the border if one has >= 25% of the largest's area.
pub const BORDER_RATIO: f64 = 0.25;
/// Keep components with >= 8% of the main one's area ...
pub const KEEP_AREA: f64 = 0.08;
/// ... that lie within 30% of its box size from its box.
pub const KEEP_GAP: f64 = 0.3;
/// Ink farther than this (px, square window) from kept pixels is erased.
pub const KEEP_DILATE: usize = 2;
/// Ink strength mapped to 0: LO_FRACTION * threshold.
pub const LO_FRACTION: f64 = 0.5;
/// Ink strength mapped to 1: this percentile of d over the kept pixels.
pub const HI_PERCENTILE: f64 = 50.0;
/// Longer side of the ink box in the output, px.
pub const BOX: f64 = 20.0;
/// Where the centre of mass goes (row and col index).
pub const COM: f64 = 14.0;
/// Side of the output.
pub const OUT: usize = 28;
