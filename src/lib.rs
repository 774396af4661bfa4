//! modelarts-init: a PID-1 init wrapper for model-serving containers.
//!
//! It runs any server as its child and makes the container meet the
//! ModelArts runtime contract (rules R1-R11 in `shared/spec`): reaps every
//! zombie, forwards signals, merges the child's stderr into stdout, and on
//! SIGTERM follows rule R8's drain (60 s of service, then SIGTERM, then
//! SIGKILL before 90 s).
//!
//! Module map:
//! - [`cli`]: flags and `MODELARTS_INIT_*` variables, parsed from a slice.
//! - [`config`]: validated settings built from the flags.
//! - [`error`]: the error enum; exit codes are decided there, once.
//! - [`logging`]: `tracing` on stdout, text or JSON, non-blocking.
//! - [`lifecycle`]: the one state machine everybody reads.
//! - [`supervisor`]: spawn, signal, reap and kill the child.
//! - [`shutdown`]: the R8 timeline.

pub mod cli;
pub mod config;
pub mod error;
pub mod lifecycle;
pub mod logging;
pub mod shutdown;
pub mod supervisor;

pub use error::Error;

use config::WrapConfig;
use lifecycle::Lifecycle;
use supervisor::{reaper, signals, Child, ExitStatus};

/// Runs wrap mode to the end and returns the exit code: the child's, or
/// 128+N if signal N killed it.
///
/// Pure-init mode runs on a single-threaded runtime: it only waits for
/// signals and timers, and must not pay for threads it does not use.
pub fn run_wrap(config: WrapConfig) -> Result<u8, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Os {
            what: "cannot start the async runtime",
            source,
        })?;
    runtime.block_on(wrap(config))
}

async fn wrap(config: WrapConfig) -> Result<u8, Error> {
    let lifecycle = Lifecycle::new();
    // Signals first: a SIGCHLD or SIGTERM between spawn and here would
    // otherwise be lost.
    let signals = signals::listen()?;
    match reaper::become_subreaper_unless_pid1() {
        Ok(true) => tracing::info!(pid = std::process::id(), "not PID 1: registered as child subreaper"),
        Ok(false) => tracing::info!("running as PID 1"),
        Err(e) => tracing::warn!(error = %e, "cannot become a child subreaper; orphans will go to the real init"),
    }
    let child = Child::spawn(&config.child, config.signal_group)?;
    // Without an HTTP front there is no readiness to probe: a running child
    // is as ready as we can tell.
    lifecycle.set_ready(true);
    let status = shutdown::run(
        Some(child),
        signals,
        &lifecycle,
        config.timeline,
        std::future::ready(()),
    )
    .await;
    Ok(exit_code(status))
}

/// The child's status as our exit code. A child we could not even collect
/// after SIGKILL is reported as killed by SIGKILL.
fn exit_code(status: Option<ExitStatus>) -> u8 {
    status
        .unwrap_or(ExitStatus::Signal(libc::SIGKILL))
        .exit_code()
}
