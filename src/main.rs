//! The `modelarts-init` binary: parse, configure, log, run, exit. Every
//! decision lives in the library; this file only wires it together.

use std::process::ExitCode;

use modelarts_init::{cli, config::Mode, logging, run};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(cli::report_usage_error(e)),
    };
    let mode = match Mode::from_cli(cli) {
        Ok(mode) => mode,
        Err(e) => return fail(e),
    };
    let _log = logging::init(mode.log_format(), &mode.log_filter());
    match run(mode) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "cannot run");
            fail(e)
        }
    }
}

/// Prints a failure as one line on stderr and returns its exit code.
fn fail(e: modelarts_init::Error) -> ExitCode {
    eprintln!("modelarts-init: {e}");
    ExitCode::from(e.exit_code())
}
