//! `modelarts-init-mnist`: the standalone mnist server (rule R2), as its
//! own binary so that the init does not carry tract (see
//! `modelarts_init::exec_mnist`). It takes the flags of
//! `modelarts-init mnist ...` (which execs it), with or without the word
//! `mnist` first, and has its own `--help`.
//!
//! Modules: `server` (the wiring: front, model, timeline), `http` (the app:
//! routes, upload, admission), `budget` (the decode memory shared by
//! concurrent decodes), `compute` (the compute threads, one per core),
//! `pipeline` (decode, preprocess, predict, and the kind of each failure),
//! `errors` (the answers that are not a digit, and their log lines),
//! `model` (the bundled ONNX model, run with tract), `stages`
//! (`--bench-stages`: the per-image stages timed, for bench/mnist.sh).
//! Decoding and preprocessing are the library's `imaging`.

mod budget;
mod compute;
mod errors;
mod http;
mod model;
mod pipeline;
mod server;
mod stages;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use modelarts_init::cli::{self, MnistArgs};
use modelarts_init::config::MnistConfig;
use modelarts_init::{logging, Error};

/// The command line of `modelarts-init-mnist`.
#[derive(Debug, Parser)]
#[command(
    name = "modelarts-init-mnist",
    version,
    about = "Serves the bundled MNIST model on the ModelArts HTTP front (R2).",
    long_about = "Serves the bundled MNIST model on the ModelArts HTTP front (R2): \
        `curl -F images=@seven.jpg :8080/` answers {\"mnist_result\": 7}. /health answers \
        {\"health\": \"true\"} once the model is loaded; SIGTERM follows rule R8's drain \
        (--drain-delay of service, then exit).\n\n\
        Uploads are bounded: --max-image-bytes per upload, --max-pixels per image (read \
        from the header before anything is decoded), and --decode-memory shared by all \
        the decodes running at once; --upload-memory bounds the uploads being read. Sizes \
        take K, M or G (128M). The compute threads run at --compute-nice (19: the HTTP \
        thread comes first).\n\n\
        `modelarts-init mnist [OPTIONS]` runs this program with the same options; the \
        word `mnist` may also be given here. Every flag can also be set with an \
        environment variable MODELARTS_INIT_<FLAG>.",
    after_help = "Example: modelarts-init-mnist --listen 0.0.0.0:8080 --max-pixels 20000000"
)]
struct MnistCli {
    #[command(flatten)]
    args: MnistArgs,
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--bench-stages") {
        let rest: Vec<String> = args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return ExitCode::from(stages::run(&rest));
    }
    // `modelarts-init mnist ARGS` execs us with `mnist ARGS`.
    // Messages name the command as the user typed it.
    let program = if args.get(1).is_some_and(|a| a == "mnist") {
        args.remove(1);
        "modelarts-init mnist"
    } else {
        "modelarts-init-mnist"
    };
    let parsed = match MnistCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(cli::report_usage_error(program, e)),
    };
    // TLS is linked here (this binary carries tract; rustls adds little).
    let config = match MnistConfig::from_args(&parsed.args)
        .and_then(|mut c| modelarts_init::http::tls::attach_front(&mut c.front).map(|()| c))
    {
        Ok(config) => config,
        Err(e) => return fail(program, e),
    };
    let _log = logging::init(config.log_format, &config.log_filter);
    match server::run(config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "cannot run");
            fail(program, e)
        }
    }
}

fn fail(program: &str, e: Error) -> ExitCode {
    eprintln!("{program}: {e}");
    ExitCode::from(e.exit_code())
}
