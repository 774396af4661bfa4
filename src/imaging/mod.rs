//! Images for the mnist server: decoding uploads within limits, and the
//! photo -> 28x28 preprocessing. A module of the library so that the mnist
//! binary, the tests and fuzz targets link it without tract, and the init,
//! which never calls it, does not carry it (the linker drops it).
//!
//! Owns: [`decode`] (header probe, limits, memory estimate, decoding) and
//! [`preprocess`] (the port of `examples/mnist/preprocess.py`). Must not:
//! know about HTTP, the model or the server's threads.

pub mod decode;
pub mod preprocess;
