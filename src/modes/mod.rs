//! Running each mode of the command line to its end: the wiring.
//!
//! Owns: turning a validated [`Mode`] into running parts (the async
//! runtime, the front, the child, the timeline) and an exit code.
//! Submodules: `wrap` (wrap mode and pure init), `verbs` (`health`,
//! `check-config`, and `mnist`, which execs the second binary). Must not:
//! decide policy; the timeline, the front and the supervisor do.

mod verbs;
mod wrap;

use std::process::ExitCode;
use std::time::Duration;

use crate::config::Mode;
use crate::error::Error;

pub use verbs::{exec_mnist, exec_sibling, MNIST_BINARY};

/// The whole program, for the binaries: parse, configure, `plug` (the TLS
/// build plugs rustls in here; the init's own binary plugs nothing), log,
/// run, exit. A failure is one line on stderr and its exit code.
pub fn main(plug: fn(&mut Mode) -> Result<(), Error>) -> ExitCode {
    let cli = match crate::cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(crate::cli::report_usage_error("modelarts-init", e)),
    };
    let mode = match Mode::from_cli(cli).and_then(|mut m| plug(&mut m).map(|()| m)) {
        Ok(mode) => mode,
        Err(e) => return fail(e),
    };
    let _log = crate::logging::init(mode.log_format(), &mode.log_filter());
    match run(mode) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "cannot run");
            fail(e)
        }
    }
}

/// Prints a failure as one line on stderr and returns its exit code.
fn fail(e: Error) -> ExitCode {
    eprintln!("modelarts-init: {e}");
    ExitCode::from(e.exit_code())
}

/// Runs `mode` to the end and returns the process exit code. A mode that
/// asks for TLS without it plugged in (see `http::tls::attach`) execs the
/// TLS build instead, `modelarts-init-tls`, with the same arguments.
pub(crate) fn run(mode: Mode) -> Result<u8, Error> {
    if let (true, false) = mode.tls() {
        return exec_sibling(
            crate::http::tls::TLS_BINARY,
            "TLS is served by modelarts-init-tls, the TLS build of modelarts-init",
        );
    }
    match mode {
        // One thread in both wrap modes. Pure init only waits for signals
        // and timers. The proxy only moves bytes between sockets: one
        // thread costs less CPU per request than a work-stealing pool
        // (bench/README.md), and the server it fronts is on the other cores.
        Mode::Wrap(c) => block_on(wrap::run(c)),
        // The model lives in its own binary, so that the init, which runs
        // in every container, does not carry tract's 20 MB of code (it
        // would triple its resident memory); see `exec_mnist`.
        Mode::Mnist(_) => exec_mnist(),
        Mode::Health(args) => block_on(verbs::health(args)),
        Mode::CheckConfig(path) => verbs::check_config(&path),
    }
}

/// Runs `f` on a new tokio runtime on this thread: the init's modes and
/// the mnist server's front all run on one (more serving threads, with
/// `--proxy-threads`, have one each). Without a multi-threaded runtime
/// anywhere, tokio's work-stealing scheduler (and the libm its statistics
/// pull in) stays out of the init's binary and resident memory.
pub fn block_on<F: std::future::Future<Output = Result<u8, Error>>>(f: F) -> Result<u8, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Os {
            what: "cannot start the async runtime",
            source,
        })?;
    let result = runtime.block_on(f);
    // Do not wait for work still running on blocking threads: the
    // timeline has already decided that we exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}
