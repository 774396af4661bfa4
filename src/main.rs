//! The `modelarts-init` binary: parse, configure, log, run, exit. Every
//! decision lives in the library; this file only wires it together.

use std::process::ExitCode;

use clap::error::ErrorKind;
use modelarts_init::{cli, config::Mode, logging, run};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let mode = match Mode::from_cli(cli) {
        Ok(mode) => mode,
        Err(e) => return fail(e),
    };
    let _log = logging::init(mode.log_format());
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

/// `--help` and `--version` print in full and succeed; any other usage
/// error is reduced to its one-line message and exits 2.
fn usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            // clap puts the message first and, for lists ("required
            // arguments were not provided:"), the items on the next lines.
            let rendered = e.render().to_string();
            let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut line = lines.next().unwrap_or("invalid arguments").to_owned();
            if line.ends_with(':') {
                if let Some(item) = lines.next() {
                    line = format!("{line} {item}");
                }
            }
            let line = line.trim_start_matches("error: ");
            eprintln!("modelarts-init: {line} (see --help)");
            ExitCode::from(2)
        }
    }
}
