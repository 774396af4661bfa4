//! The crate's error type, and the one place where errors become exit codes.
//!
//! Owns: every failure `run` can return and its exit status (2 for bad
//! configuration, 126/127 for a child that cannot be executed, as a shell
//! would). Must not: print or log; `main` does that once.

use std::io;
use std::path::PathBuf;

/// Everything that can stop modelarts-init before or instead of a child's
/// exit status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, environment variable or config file value is wrong.
    #[error("{0}")]
    Config(String),

    /// The command to run does not exist (exit 127, like a shell).
    #[error("cannot run {command:?}: command not found ({source}); check the command after `--` and PATH")]
    CommandNotFound {
        command: String,
        #[source]
        source: io::Error,
    },

    /// The command exists but cannot be executed (exit 126, like a shell).
    #[error("cannot run {command:?}: not executable ({source}); check its permissions and interpreter line")]
    CommandNotExecutable {
        command: String,
        #[source]
        source: io::Error,
    },

    /// The child could not be started for another reason (fork failed,
    /// privileges could not be dropped, ...).
    #[error("cannot start {command:?}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {source}; is another process using the port? choose another with --listen")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },

    /// A config.json could not be read or is invalid.
    #[error("{path}: {message}")]
    ConfigFile { path: PathBuf, message: String },

    /// The bundled model could not be loaded (a build problem).
    #[error("{0}")]
    Model(String),

    /// Setting up signal handling or another OS resource failed.
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The process exit status for this error: 2 for anything the user
    /// configured wrong, 126/127 as a shell reports an unrunnable command,
    /// 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Bind { .. } | Error::ConfigFile { .. } => 2,
            Error::CommandNotFound { .. } => 127,
            Error::CommandNotExecutable { .. } => 126,
            Error::Spawn { .. } | Error::Os { .. } | Error::Model(_) => 1,
        }
    }
}

/// An error and its causes, one after the other (`a: b: c`), for log lines:
/// hyper's errors say only "connection error" until their cause is shown.
/// A cause already spelled out by the error before it is not repeated.
pub(crate) struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            next = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("upstream request failed")]
    struct Outer(#[source] io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect: {0}")]
    struct Repeats(#[source] io::Error);

    #[test]
    fn causes_follow_once() {
        let e = Outer(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset by peer",
        ));
        assert_eq!(
            Chain(&e).to_string(),
            "upstream request failed: reset by peer"
        );
        let e = Repeats(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(Chain(&e).to_string(), "cannot connect: refused");
    }
}
