//! Steps 3 and 4: box blur, min/max filters, the background closing and
//! the point-reflected padding.
//!
//! Owns: the windowed filters, one file per concern (`blur`: the box blur;
//! `minmax`: min, max and the closing; `pad`: the padding), exact where
//! preprocess.py is (min/max) and within an ulp where it divides. Must
//! not: allocate outside the pool.

mod blur;
mod minmax;
mod pad;

pub use blur::box_blur;
pub(crate) use blur::box_blur_rows;
pub(crate) use minmax::closing_cropped;
pub use minmax::{max_filter, min_filter};
pub use pad::pad_odd;
