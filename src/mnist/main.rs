//! `modelarts-init-mnist`: the standalone mnist server (rule R2), as its
//! own binary so that the init does not carry tract (see
//! `modelarts_init::exec_mnist`). It takes the same command line as
//! `modelarts-init mnist ...`, which execs it.
//!
//! Modules: `app` (the upload, decoding and the HTTP answer), `compute`
//! (the compute threads, one per core, that run the rest), `model` (the
//! bundled ONNX model, run with tract), `stages` (`--bench-stages`: the
//! per-image stages timed, for bench/mnist.sh). The photo -> 28x28
//! preprocessing is the library's `imaging::preprocess`.

mod app;
mod compute;
mod model;
mod stages;

use std::process::ExitCode;

use modelarts_init::{cli, config::Mode, logging, Error};

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "--bench-stages")
    {
        let args: Vec<String> = std::env::args_os()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return ExitCode::from(stages::run(&args));
    }
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(cli::report_usage_error(e)),
    };
    let config = match Mode::from_cli(cli) {
        Ok(Mode::Mnist(config)) => config,
        Ok(_) => return fail(Error::Config(
            "modelarts-init-mnist only serves `mnist [OPTIONS]`; use modelarts-init for the rest"
                .into(),
        )),
        Err(e) => return fail(e),
    };
    let _log = logging::init(config.log_format);
    match app::run(config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "cannot run");
            fail(e)
        }
    }
}

fn fail(e: Error) -> ExitCode {
    eprintln!("modelarts-init: {e}");
    ExitCode::from(e.exit_code())
}
