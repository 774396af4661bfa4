//! The entry points of the cargo fuzz targets (`fuzz/`, a workspace of its
//! own) into items that are not the library's interface.
//!
//! Owns: the re-exports that only the fuzz targets use, each with the
//! target that needs it, so that the visibility of the modules behind them
//! stays `pub(crate)`. Must not: hold logic, or be used by the binaries
//! (hidden from the docs: no stability is promised).

/// config.json parsing, as `--config` and `check-config` do it
/// (`fuzz/fuzz_targets/model_config.rs`): `ModelConfig::parse`, then
/// `describe` and the health's `patience_seconds`.
pub use crate::model_config::ModelConfig;
