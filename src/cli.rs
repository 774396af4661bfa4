//! Command-line interface: every flag, its `MODELARTS_INIT_*` environment
//! variable, and its default explained in the runtime contract's terms.
//!
//! Owns: parsing (from an argument slice and an environment lookup, so tests
//! never touch the process environment) and the value syntax of durations and
//! users. Must not: validate across flags or touch the OS; `config` turns
//! these raw values into settings.

use std::ffi::OsString;
use std::time::Duration;

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// How modelarts-init is invoked.
#[derive(Debug, Parser)]
#[command(
    name = "modelarts-init",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    about = "A PID-1 init for model-serving containers (ModelArts, Kubernetes).",
    long_about = "A PID-1 init for model-serving containers (ModelArts, Kubernetes).\n\n\
        Runs COMMAND as its child: reaps every zombie, forwards signals, merges the child's \
        stderr into stdout (R4) and exits with the child's status. It owns port 8080 (R1): \
        requests are proxied to the child on --upstream, and /health answers \
        {\"health\": \"true\"} while the child is ready (R3). On SIGTERM it follows the \
        ModelArts shutdown rule R8: /health fails at once but traffic is served for \
        --drain-delay (60 s), then the child gets SIGTERM, and whatever is left is SIGKILLed \
        after --stop-timeout (25 s), inside the 90 s bound.\n\n\
        Every flag can also be set with an environment variable MODELARTS_INIT_<FLAG>.",
    after_help = "Example: modelarts-init -- gunicorn -k gevent --keep-alive 200 -b 127.0.0.1:8081 app:app"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub wrap: WrapArgs,
}

/// The modes besides wrapping a command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the bundled MNIST model on the same HTTP front (R2):
    /// `curl -F images=@seven.jpg :8080/` answers {"mnist_result": 7}.
    Mnist(MnistArgs),
    /// Exit 0 if the health URL answers 200, else 1 (for Docker HEALTHCHECK
    /// in images without curl).
    Health(HealthArgs),
    /// Validate a ModelArts config.json and print what it declares.
    CheckConfig {
        /// The config.json to check.
        file: std::path::PathBuf,
    },
}

/// `mnist` mode.
#[derive(Debug, Args)]
pub struct MnistArgs {
    #[command(flatten)]
    pub front: FrontArgs,

    #[command(flatten)]
    pub timeline: TimelineArgs,

    /// Largest accepted image upload, in bytes; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 10 * 1024 * 1024,
          env = "MODELARTS_INIT_MAX_IMAGE_BYTES")]
    pub max_image_bytes: u64,

    /// Largest image, in pixels (width x height), read from its header
    /// before anything is decoded; larger ones get 413.
    #[arg(long, value_name = "PIXELS", default_value_t = crate::imaging::decode::DEFAULT_MAX_PIXELS,
          env = "MODELARTS_INIT_MAX_PIXELS")]
    pub max_pixels: u64,

    /// Memory, in bytes, that concurrent decodes share (default 128 MiB),
    /// each decode's need estimated from its image's header: a decode
    /// that does not fit waits for room (up to --request-timeout), one
    /// that could never fit gets 413.
    #[arg(long, value_name = "BYTES", default_value_t = crate::imaging::decode::DEFAULT_DECODE_MEMORY,
          env = "MODELARTS_INIT_DECODE_MEMORY")]
    pub decode_memory: u64,

    /// Memory, in bytes, for the uploads being read or waiting for their
    /// decode (default 64 MiB), each counted at its Content-Length (at
    /// --max-image-bytes when chunked): past it, an upload is not read
    /// until room is given back.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20,
          env = "MODELARTS_INIT_UPLOAD_MEMORY")]
    pub upload_memory: u64,

    #[command(flatten)]
    pub log: LogArgs,
}

/// `health` verb.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The URL to check.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/health",
        env = "MODELARTS_INIT_HEALTH_URL"
    )]
    pub url: String,

    /// Give up after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration,
          env = "MODELARTS_INIT_HEALTH_TIMEOUT")]
    pub timeout: Duration,
}

/// Wrap mode: supervise COMMAND.
#[derive(Debug, Args)]
pub struct WrapArgs {
    #[command(flatten)]
    pub supervisor: SupervisorArgs,

    /// Pure init: no HTTP listener, no port 8080 (a pure tini replacement).
    #[arg(long, env = "MODELARTS_INIT_NO_PROXY")]
    pub no_proxy: bool,

    #[command(flatten)]
    pub front: FrontArgs,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// The server to run, with its arguments (put it after `--`).
    #[arg(value_name = "COMMAND", trailing_var_arg = true, required = true)]
    pub command: Vec<OsString>,
}

/// The HTTP listener on port 8080, shared by wrap and mnist modes.
#[derive(Debug, Args, Clone)]
pub struct FrontArgs {
    /// Address to listen on (R1: ModelArts calls port 8080).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0:8080",
        env = "MODELARTS_INIT_LISTEN"
    )]
    pub listen: SocketAddr,

    /// Path answered with {"health": "true"} while ready (R3); default
    /// /health, or config.json's health.url.
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_HEALTH_PATH")]
    pub health_path: Option<String>,

    /// Idle keep-alive of client connections (R7: 200 s for lossless
    /// rolling upgrades); also the time a client has to send its headers.
    #[arg(long, value_name = "DURATION", default_value = "200s", value_parser = parse_duration,
          env = "MODELARTS_INIT_KEEP_ALIVE")]
    pub keep_alive: Duration,

    /// Concurrent client connections; more wait in the listen backlog.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10_000,
        env = "MODELARTS_INIT_MAX_CONNECTIONS"
    )]
    pub max_connections: usize,

    /// Answer 504 if the response has not started after this long (R9:
    /// the platform fails synchronous requests past 60 s). Default: off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "MODELARTS_INIT_REQUEST_TIMEOUT")]
    pub request_timeout: Option<Duration>,

    /// Largest request body, in bytes; larger ones get 413. Default: off.
    #[arg(long, value_name = "BYTES", env = "MODELARTS_INIT_MAX_BODY")]
    pub max_body: Option<u64>,

    /// Serve a JSON status page (state, child pid, requests, the child
    /// tree's memory and CPU) at this path. Default: off, so nothing new is
    /// exposed on the API port.
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_STATUS_PATH")]
    pub status_path: Option<String>,
}

/// Wrap mode's upstream: the child's own HTTP server.
#[derive(Debug, Args, Clone)]
pub struct ProxyArgs {
    /// Where the child listens; the child gets PORT=<its port> in its
    /// environment unless PORT is set already.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8081",
        env = "MODELARTS_INIT_UPSTREAM"
    )]
    pub upstream: SocketAddr,

    /// Readiness = GET of this path on the upstream answers 2xx or 3xx.
    /// Default: readiness = a TCP connection to the upstream succeeds.
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_UPSTREAM_HEALTH")]
    pub upstream_health: Option<String>,

    /// Time between readiness probes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration,
          env = "MODELARTS_INIT_PROBE_INTERVAL")]
    pub probe_interval: Duration,

    /// Failed probes in a row before a ready upstream counts as unhealthy.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..), env = "MODELARTS_INIT_UNHEALTHY_AFTER")]
    pub unhealthy_after: u32,

    /// Idle timeout of pooled upstream connections; keep it below the
    /// upstream's own keep-alive (gunicorn: 2 s) so that we never reuse a
    /// connection it is closing.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration,
          env = "MODELARTS_INIT_UPSTREAM_IDLE_TIMEOUT")]
    pub upstream_idle_timeout: Duration,

    /// A ModelArts config.json: its health.url becomes the health path, its
    /// health timings the patience after which a slow start is logged.
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Threads that serve client connections, each with its own share of
    /// them (SO_REUSEPORT) and its own upstream pool, like nginx's worker
    /// processes. Default 1: the server behind the proxy is what needs the
    /// other cores; raise it only for a fast upstream on a spare core.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        env = "MODELARTS_INIT_PROXY_THREADS"
    )]
    pub proxy_threads: usize,
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

/// Prints a parse failure and returns the exit code: `--help` and
/// `--version` print in full and succeed; any other usage error is reduced
/// to its one-line message and exits 2.
pub fn report_usage_error(e: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
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
            2
        }
    }
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
        let cli = parse([
            "modelarts-init",
            "--drain-delay",
            "1s",
            "--",
            "sleep",
            "--x",
        ])
        .unwrap();
        assert_eq!(
            cli.wrap.command,
            vec![OsString::from("sleep"), OsString::from("--x")]
        );
        assert_eq!(
            cli.wrap.supervisor.timeline.drain_delay,
            Duration::from_secs(1)
        );
    }
}
