//! Command-line interface: every flag, its `MODELARTS_INIT_*` environment
//! variable, and its default explained in the runtime contract's terms.
//!
//! Owns: parsing (from an argument slice and an environment lookup, so tests
//! never touch the process environment) and the value syntax of durations and
//! users. Must not: validate across flags or touch the OS; `config` turns
//! these raw values into settings.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// How modelarts-init is invoked.
#[derive(Debug, Parser)]
#[command(
    name = "modelarts-init",
    version,
    about = "A PID-1 init for model-serving containers (ModelArts, Kubernetes).",
    long_about = "A PID-1 init for model-serving containers (ModelArts, Kubernetes).\n\n\
        Runs COMMAND as its child: reaps every zombie, forwards signals, merges the child's \
        stderr into stdout (R4) and exits with the child's status. On SIGTERM it follows the \
        ModelArts shutdown rule R8: keep serving for --drain-delay (60 s), then SIGTERM the \
        child, then SIGKILL whatever is left after --stop-timeout (25 s), inside the 90 s bound.\n\n\
        Every flag can also be set with an environment variable MODELARTS_INIT_<FLAG>.",
    after_help = "Example: modelarts-init -- gunicorn -k gevent --keep-alive 200 -b 127.0.0.1:8081 app:app"
)]
pub struct Cli {
    #[command(flatten)]
    pub wrap: WrapArgs,
}

/// Wrap mode: supervise COMMAND.
#[derive(Debug, Args)]
pub struct WrapArgs {
    #[command(flatten)]
    pub supervisor: SupervisorArgs,

    /// Pure init: no HTTP listener (the HTTP front is not built yet, so this
    /// is currently the only mode).
    #[arg(long, env = "MODELARTS_INIT_NO_PROXY")]
    pub no_proxy: bool,

    #[command(flatten)]
    pub log: LogArgs,

    /// The server to run, with its arguments (put it after `--`).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        required = true
    )]
    pub command: Vec<OsString>,
}

/// The child's process settings and the shutdown timeline (rule R8).
#[derive(Debug, Args)]
pub struct SupervisorArgs {
    #[command(flatten)]
    pub timeline: TimelineArgs,

    /// Forward signals to the child's whole process group instead of the
    /// child alone.
    #[arg(long, env = "MODELARTS_INIT_SIGNAL_GROUP")]
    pub signal_group: bool,

    /// Do not merge the child's stderr into stdout (R4: ModelArts shows
    /// stdout only, so merging is the default).
    #[arg(long, env = "MODELARTS_INIT_KEEP_STDERR")]
    pub keep_stderr: bool,

    /// Run the child as this user and group, by name or id, e.g. `1000:100`
    /// (ModelArts' ma-user). Default: our own user.
    #[arg(long, value_name = "USER[:GROUP]", env = "MODELARTS_INIT_USER")]
    pub user: Option<String>,
}

/// The R8 shutdown timeline; shared by wrap mode and the mnist server.
#[derive(Debug, Args, Clone, Copy)]
pub struct TimelineArgs {
    /// After our SIGTERM, keep serving this long before the child gets
    /// SIGTERM (R8: the platform wants 60 s of service after SIGTERM).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration,
          env = "MODELARTS_INIT_DRAIN_DELAY")]
    pub drain_delay: Duration,

    /// After the child's SIGTERM, wait this long before SIGKILL to its
    /// process group and every other descendant (60 + 25 s leaves time to
    /// reap, answer and exit inside R8's 90 s bound).
    #[arg(long, value_name = "DURATION", default_value = "25s", value_parser = parse_duration,
          env = "MODELARTS_INIT_STOP_TIMEOUT")]
    pub stop_timeout: Duration,
}

/// Logging settings.
#[derive(Debug, Args, Clone, Copy)]
pub struct LogArgs {
    /// Format of our own log lines on stdout (R4).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "MODELARTS_INIT_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Format of modelarts-init's own log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses the command line `args` (program name first), reading defaults
/// from the environment through clap's `env`.
///
/// On a usage error returns clap's error; `--help` and `--version` come back
/// as errors of kind `DisplayHelp`/`DisplayVersion`, which the caller prints.
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)
}

/// Parses `60`, `60s`, `500ms`, `2m`, `1h` or `1.5s` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; use e.g. 60, 60s, 500ms or 2m"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}; use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400").is_err());
    }

    #[test]
    fn command_after_double_dash() {
        let cli = parse(["modelarts-init", "--drain-delay", "1s", "--", "sleep", "--x"]).unwrap();
        assert_eq!(cli.wrap.command, vec![OsString::from("sleep"), OsString::from("--x")]);
        assert_eq!(cli.wrap.supervisor.timeline.drain_delay, Duration::from_secs(1));
    }
}
