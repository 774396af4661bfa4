//! The one-shot verbs: `health`, `check-config`, and `mnist` (which
//! replaces this process with the mnist binary).
//!
//! Owns: what each verb prints and its exit code. Must not: start a child
//! or a front.

use std::path::Path;

use crate::config::HealthConfig;
use crate::error::Error;
use crate::model_config::ModelConfig;

/// `health`: 0 if the URL answers 200, else 1 with the reason on stderr (2
/// for bad TLS flags).
pub(super) async fn health(config: HealthConfig) -> Result<u8, Error> {
    let HealthConfig { args, tls } = config;
    match crate::http::client::get_url(&args.url, args.timeout, tls.as_deref()).await {
        Ok(s) if s == hyper::StatusCode::OK => Ok(0),
        Ok(s) => {
            eprintln!("modelarts-init: {} answered {s}", args.url);
            Ok(1)
        }
        Err(e) => {
            eprintln!("modelarts-init: {}", crate::error::Chain(&e));
            Ok(1)
        }
    }
}

/// `check-config FILE`: validates and describes a config.json.
pub(super) fn check_config(path: &Path) -> Result<u8, Error> {
    let config = ModelConfig::load(path)?;
    print!("{}: valid\n{}", path.display(), config.describe());
    Ok(0)
}

/// The binary that serves mnist mode.
pub const MNIST_BINARY: &str = "modelarts-init-mnist";

/// `modelarts-init mnist`: replaces this process with `modelarts-init-mnist`
/// and the same arguments: the one next to our own executable, else the one
/// in PATH. Returns only on failure.
///
/// Why a second binary (as git and cargo do with their subcommands): tract
/// brings about 20 MB of code, and its constructors would keep it linked
/// into the init that every container runs, tripling the init's resident
/// memory and slowing its start-up. The init pays nothing for the model.
pub fn exec_mnist() -> Result<u8, Error> {
    exec_sibling(MNIST_BINARY, "mnist mode is a second binary")
}

/// Replaces this process with `binary` and the same arguments: the one
/// next to our own executable, else the one in PATH. Returns only on
/// failure, saying `why` the binary is needed and where it goes.
pub fn exec_sibling(binary: &str, why: &str) -> Result<u8, Error> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(binary))
        .filter(|p| p.exists());
    let program = beside.unwrap_or_else(|| binary.into());
    let source = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(Error::Spawn {
        command: format!(
            "{} ({why}: `cargo build --release` builds it; install it next to modelarts-init)",
            program.display()
        ),
        source,
    })
}
