//! modelarts-init: a PID-1 init wrapper for model-serving containers.
//!
//! It runs any server as its child and makes the container meet the
//! ModelArts runtime contract (rules R1-R11 in `shared/spec`): reaps every
//! zombie, forwards signals, merges the child's stderr into stdout (R4),
//! owns port 8080 with a streaming proxy and a synthesized `/health` (R1,
//! R3, R7), and on SIGTERM follows rule R8's drain (60 s of service, then
//! SIGTERM to the child, then SIGKILL before 90 s).
//!
//! Module map:
//! - [`cli`]: flags and `MODELARTS_INIT_*` variables, parsed from a slice.
//! - [`config`]: validated settings built from the flags and config.json.
//! - [`model_config`]: the model's ModelArts config.json.
//! - [`error`]: the error enum; exit codes are decided there, once.
//! - [`logging`]: `tracing` on stdout, text or JSON, non-blocking.
//! - [`footprint`]: only the code that runs stays resident.
//! - [`timeline`]: the R8 stop timeline and restarts: one pure state
//!   machine and the loop that drives it.
//! - [`lifecycle`]: the read-only view of the timeline that everybody reads.
//! - [`supervisor`]: spawn, signal, reap and sweep the child's tree.
//! - [`http`]: the front on port 8080: server, proxy, health, status.
//! - [`modes`]: the wiring that runs each mode to its end.
//! - [`imaging`]: decoding and preprocessing for the mnist server (the
//!   init never calls it, so the linker drops it from the init).
//! - `fuzzing` (hidden): re-exports for the cargo fuzz targets in `fuzz/`
//!   of items that are otherwise `pub(crate)`.
//!
//! The mnist server is a second binary, `modelarts-init-mnist` (its code is
//! in `src/mnist/`, on top of this library); see [`exec_mnist`].

pub mod cli;
pub mod config;
pub mod error;
pub mod footprint;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod imaging;
pub mod lifecycle;
pub mod logging;
pub(crate) mod model_config;
pub mod modes;
pub mod supervisor;
pub mod timeline;

pub use error::Error;
pub use http::fronts::{start_front, FRONT_GRACE};
pub use modes::{block_on, exec_mnist};
