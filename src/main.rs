//! The `modelarts-init` binary: parse, configure, log, run, exit. Every
//! decision lives in the library (`modes::main`); this file only wires it
//! together, with nothing plugged in: TLS is `modelarts-init-tls`'s, which
//! this binary execs when TLS is asked for (see `http::tls`).
//!
//! Owns: the order of the first two calls (the footprint advice, then the
//! library's `main`). Must not: link anything of TLS, or decide anything.

use std::process::ExitCode;

fn main() -> ExitCode {
    modelarts_init::footprint::map_only_code_that_runs();
    modelarts_init::modes::main(|_| Ok(()))
}
