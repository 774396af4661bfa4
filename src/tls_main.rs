//! The `modelarts-init-tls` binary: modelarts-init with rustls plugged in
//! (HTTPS and WSS on the front, https:// for the `health` verb). The init's
//! own binary execs it, with the same arguments, when `--tls`, a config.json
//! or a health URL asks for TLS, so that the init that does not use TLS
//! carries none of rustls's code (see `http::tls`).
//!
//! Owns: plugging the TLS layer into the shared `modes::main`. Must not:
//! decide anything else (every decision is the library's).

use std::process::ExitCode;

fn main() -> ExitCode {
    modelarts_init::modes::main(modelarts_init::http::tls::attach)
}
