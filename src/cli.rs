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
use tracing_subscriber::filter::Targets;

pub use crate::timeline::restart::When;

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
#[allow(clippy::large_enum_variant)] // parsed once, at start
pub enum Command {
    /// Serve the bundled MNIST model on the same HTTP front (R2):
    /// `curl -F images=@seven.jpg :8080/` answers {"mnist_result": 7}.
    Mnist(Box<MnistArgs>),
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

    /// Largest accepted image upload, in bytes (or with K, M, G: 10M);
    /// larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = bytes::<u64>(1), env = "MODELARTS_INIT_MAX_IMAGE_BYTES")]
    pub max_image_bytes: u64,

    /// Largest image, in pixels (width x height), read from its header
    /// before anything is decoded; larger ones get 413.
    #[arg(long, value_name = "PIXELS", default_value_t = crate::imaging::decode::DEFAULT_MAX_PIXELS,
          value_parser = whole::<u64>(1, None), allow_negative_numbers = true,
          env = "MODELARTS_INIT_MAX_PIXELS")]
    pub max_pixels: u64,

    /// Memory, in bytes (or 128M), that concurrent decodes share (default
    /// 128 MiB), each decode's need estimated from its image's header: a decode
    /// that does not fit waits for room (up to --request-timeout), one
    /// that could never fit gets 413.
    #[arg(long, value_name = "BYTES", default_value_t = crate::imaging::decode::DEFAULT_DECODE_MEMORY,
          value_parser = bytes::<u64>(0), env = "MODELARTS_INIT_DECODE_MEMORY")]
    pub decode_memory: u64,

    /// Memory, in bytes (or 64M), for the uploads being read or waiting for
    /// their decode (default 64 MiB), each counted at its Content-Length (at
    /// --max-image-bytes when chunked): past it, an upload is not read
    /// until room is given back.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20,
          value_parser = bytes::<u64>(0), env = "MODELARTS_INIT_UPLOAD_MEMORY")]
    pub upload_memory: u64,

    /// CPU priority (nice, 0-19) of the compute threads (decoding,
    /// preprocessing, the model), absolute. At 19 (the default) the HTTP
    /// thread preempts them, so that a finished answer is written sooner
    /// (a lower p99); but busy processes at nice 0 in the same container
    /// (a `kubectl exec` session's too) then take nearly all the CPU from
    /// them: set 0 if the container runs any.
    #[arg(long, value_name = "NICE", default_value_t = 19,
          value_parser = whole::<u8>(0, Some(19)), allow_negative_numbers = true,
          env = "MODELARTS_INIT_COMPUTE_NICE")]
    pub compute_nice: u8,

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

    /// For an https:// URL: accept any certificate (e.g. the self-signed
    /// one of --tls self-signed).
    #[arg(long, env = "MODELARTS_INIT_HEALTH_INSECURE")]
    pub insecure: bool,

    /// For an https:// URL: accept certificates issued by this PEM root
    /// only (for 127.0.0.1 and ::1, whatever names they carry).
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_HEALTH_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
}

/// Wrap mode: supervise COMMAND.
#[derive(Debug, Args)]
pub struct WrapArgs {
    #[command(flatten)]
    pub supervisor: SupervisorArgs,

    /// Pure init: no HTTP listener, no port 8080 (a pure tini replacement).
    /// The HTTP front's flags have no effect then, and are refused.
    #[arg(long, env = "MODELARTS_INIT_NO_PROXY", conflicts_with_all = FRONT_ARG_IDS)]
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

/// The ids of every flag of [`FrontArgs`] and [`ProxyArgs`] (their field
/// names), which `--no-proxy` refuses (a unit test checks the list is
/// whole). Listed, because clap's conflicts with a flattened struct's
/// group are not reliable.
const FRONT_ARG_IDS: [&str; 25] = [
    "listen",
    "health_path",
    "keep_alive",
    "max_connections",
    "request_timeout",
    "max_body",
    "tls",
    "tls_cert",
    "tls_key",
    "tls_handshake_timeout",
    "status_path",
    "metrics_path",
    "live_path",
    "access_log",
    "max_concurrency",
    "max_queue",
    "queue_timeout",
    "upstream",
    "upstream_health",
    "probe_interval",
    "unhealthy_after",
    "upstream_idle_timeout",
    "stream_idle_timeout",
    "config",
    "proxy_threads",
];

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

    /// Client connections held at once, in all. At the limit, the
    /// connection idle the longest is closed to make room (as nginx does);
    /// when none is idle, more wait in the listen backlog. Default: what
    /// the open-files limit allows, (limit - 64) / 2, logged at start.
    #[arg(long, value_name = "N", value_parser = whole::<usize>(0, None),
          allow_negative_numbers = true,
          env = "MODELARTS_INIT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Answer 504 if the response has not started after this long (R9:
    /// the platform fails synchronous requests past 60 s). Default: off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "MODELARTS_INIT_REQUEST_TIMEOUT")]
    pub request_timeout: Option<Duration>,

    /// Largest request body, in bytes (or with K, M, G: 10M); larger ones
    /// get 413. Default: off.
    #[arg(long, value_name = "BYTES", value_parser = bytes::<u64>(0),
          env = "MODELARTS_INIT_MAX_BODY")]
    pub max_body: Option<u64>,

    /// TLS on the listener (HTTPS and WSS; the app behind stays plain
    /// HTTP). auto: with the files if --tls-cert/--tls-key are given, else
    /// self-signed when config.json's health or apis protocol is https or
    /// wss, else off. self-signed: a key and certificate made at start (in
    /// memory, never written), for platforms that do not verify it.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = TlsMode::Auto,
          env = "MODELARTS_INIT_TLS")]
    pub tls: TlsMode,

    /// PEM certificate chain to serve (with --tls-key).
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --tls-cert: PKCS#8, PKCS#1 or SEC1; RSA or EC.
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// A TLS handshake not done by then is cut (and counted).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration,
          env = "MODELARTS_INIT_TLS_HANDSHAKE_TIMEOUT")]
    pub tls_handshake_timeout: Duration,

    /// Serve a JSON status page (state, child pid, requests, the child
    /// tree's memory and CPU) at this path. Default: off, so nothing new is
    /// exposed on the API port.
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_STATUS_PATH")]
    pub status_path: Option<String>,

    #[command(flatten)]
    pub observe: ObserveArgs,

    #[command(flatten)]
    pub admission: AdmissionArgs,
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

    /// What proves the upstream ready. PATH: a GET of PATH answers 2xx or
    /// 3xx, every --probe-interval; `tcp`: a TCP connection is accepted.
    /// Default: until first ready, config.json's health.url (else /health)
    /// answers 2xx/3xx, or, where that is 404, `/` answers below 500 (a
    /// worker runs the app); after that a TCP connect, and the HTTP probe
    /// again only when no proxied request has succeeded for 30 s.
    #[arg(long, value_name = "PATH|tcp", env = "MODELARTS_INIT_UPSTREAM_HEALTH")]
    pub upstream_health: Option<String>,

    /// Time between readiness probes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration,
          env = "MODELARTS_INIT_PROBE_INTERVAL")]
    pub probe_interval: Duration,

    /// Failed probes in a row before a ready upstream counts as unhealthy.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = whole::<u32>(1, None), allow_negative_numbers = true,
          env = "MODELARTS_INIT_UNHEALTHY_AFTER")]
    pub unhealthy_after: u32,

    /// Idle timeout of pooled upstream connections; keep it below the
    /// upstream's own keep-alive (gunicorn: 2 s) so that we never reuse a
    /// connection it is closing.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration,
          env = "MODELARTS_INIT_UPSTREAM_IDLE_TIMEOUT")]
    pub upstream_idle_timeout: Duration,

    /// Cut a streamed response (server-sent events, chunked) whose upstream
    /// sends no data for this long, closing the client's connection (a head
    /// was already sent). Default: the value of --request-timeout, else off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "MODELARTS_INIT_STREAM_IDLE_TIMEOUT")]
    pub stream_idle_timeout: Option<Duration>,

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
        value_parser = whole::<usize>(0, None), allow_negative_numbers = true,
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

    /// The signal the child gets at the end of the drain delay (and for a
    /// second SIGTERM), like Docker's STOPSIGNAL: e.g. QUIT for php-fpm and
    /// nginx, which stop gracefully on it.
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = crate::supervisor::signals::parse,
          env = "MODELARTS_INIT_STOP_SIGNAL")]
    pub stop_signal: i32,

    /// When the child exits, what is left of its process group and every
    /// other descendant gets SIGTERM, then SIGKILL after this long (or at
    /// the stop deadline, whichever comes first), and is reaped before we
    /// exit.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration,
          env = "MODELARTS_INIT_LEFTOVER_GRACE")]
    pub leftover_grace: Duration,

    /// Start the child again when it exits: never (the platform restarts
    /// containers, and a dying server should stay visible), on-failure (a
    /// non-zero exit or a signal) or always. Never once a stop has begun.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = When::Never,
          env = "MODELARTS_INIT_RESTART")]
    pub restart: When,

    /// The delay before a restart: MIN first, doubling up to MAX; back to
    /// MIN once the child has been ready for 60 s.
    #[arg(long, value_name = "MIN..MAX", default_value = "1s..30s", value_parser = parse_backoff,
          env = "MODELARTS_INIT_RESTART_BACKOFF")]
    pub restart_backoff: (Duration, Duration),

    /// At most this many restarts within --restart-window; at the next
    /// exit, exit with the child's status.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 5,
        value_parser = whole::<u32>(0, None), allow_negative_numbers = true,
        env = "MODELARTS_INIT_MAX_RESTARTS"
    )]
    pub max_restarts: u32,

    /// The window --max-restarts counts in.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration,
          env = "MODELARTS_INIT_RESTART_WINDOW")]
    pub restart_window: Duration,
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

    /// End the drain delay early once no request has arrived for this long
    /// (health probes and metrics scrapes do not count), but never before
    /// --drain-min: the balancer has visibly moved on. Default: off, the
    /// full --drain-delay.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          env = "MODELARTS_INIT_DRAIN_QUIET_PERIOD")]
    pub drain_quiet_period: Option<Duration>,

    /// With --drain-quiet-period: never end the delay before this much
    /// after SIGTERM. Default: the time the platform needs to see /health
    /// fail, config.json's failure_threshold x period_seconds +
    /// timeout_seconds; else 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          requires = "drain_quiet_period", env = "MODELARTS_INIT_DRAIN_MIN")]
    pub drain_min: Option<Duration>,
}

/// What the front tells about the traffic: metrics, liveness, access log.
#[derive(Debug, Args, Clone)]
pub struct ObserveArgs {
    /// Serve Prometheus metrics (OpenMetrics text) at this path: requests
    /// by route (config.json's apis, else `other`), method and status
    /// class, latencies, the queue, rejections, upstream errors, the
    /// lifecycle state, restarts, the child tree's memory and CPU, ours.
    /// Answered here, never proxied. Default: off.
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_METRICS_PATH")]
    pub metrics_path: Option<String>,

    /// Answer 200 {"live": "true"} at this path while the process is up,
    /// during the drain too: for a Kubernetes livenessProbe (one on
    /// /health fails in the drain, and the kubelet then kills the
    /// container early). Default: off.
    #[arg(long, value_name = "PATH", env = "MODELARTS_INIT_LIVE_PATH")]
    pub live_path: Option<String>,

    /// One log line per request (method, path, route, status, duration,
    /// upstream time, X-Request-Id, generated when absent and passed
    /// upstream), the front's own answers included; target
    /// `modelarts_init::access` for --log-level. Default: off.
    #[arg(long, env = "MODELARTS_INIT_ACCESS_LOG")]
    pub access_log: bool,
}

/// Admission control in front of the app.
#[derive(Debug, Args, Clone)]
pub struct AdmissionArgs {
    /// At most N requests in flight to the app at once (across all
    /// --proxy-threads); the next --max-queue wait in order, the rest get
    /// 503 {"error": "overloaded"} with Retry-After: 1. Default: off.
    #[arg(long, value_name = "N", value_parser = whole::<u32>(1, None),
          allow_negative_numbers = true,
          env = "MODELARTS_INIT_MAX_CONCURRENCY")]
    pub max_concurrency: Option<u32>,

    /// With --max-concurrency: how many more may wait (default: N); past
    /// that, 503 at once.
    #[arg(
        long,
        value_name = "M",
        requires = "max_concurrency",
        value_parser = whole::<u32>(0, None), allow_negative_numbers = true,
        env = "MODELARTS_INIT_MAX_QUEUE"
    )]
    pub max_queue: Option<u32>,

    /// With --max-concurrency: how long a request may wait for its turn,
    /// then 503; the wait counts toward --request-timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration,
          requires = "max_concurrency", env = "MODELARTS_INIT_QUEUE_TIMEOUT")]
    pub queue_timeout: Duration,
}

/// Logging settings.
#[derive(Debug, Args, Clone)]
pub struct LogArgs {
    /// Format of our own log lines on stdout (R4).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "MODELARTS_INIT_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Which of our own lines to write: error, warn, info or debug, or
    /// RUST_LOG-style targets (`info,modelarts_init::http=debug`). Default:
    /// RUST_LOG if set, else info.
    #[arg(long, value_name = "LEVEL|FILTER", value_parser = parse_log_filter,
          env = "MODELARTS_INIT_LOG_LEVEL")]
    pub log_level: Option<Targets>,
}

/// Parses `--log-level`: a level, or `target=level` pairs after an optional
/// default level, comma-separated.
pub fn parse_log_filter(text: &str) -> Result<Targets, String> {
    text.parse::<Targets>().map_err(|e| {
        format!("{text:?} is not a log level or filter ({e}); use error, warn, info or debug")
    })
}

/// `--tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    Auto,
    Off,
    SelfSigned,
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
pub fn report_usage_error(program: &str, e: clap::Error) -> u8 {
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
            eprintln!("{program}: {line} (see --help)");
            2
        }
    }
}

/// What `whole` and `bytes` say of a number past the flag's type or u64.
const TOO_LARGE: &str = "too large";

/// A whole-number flag in [lo, hi] (`hi` None: the type's own limit),
/// saying what is wrong in words where clap would print "invalid digit
/// found in string" or "0 is not in 1..4294967295".
pub fn whole<T>(lo: u64, hi: Option<u64>) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: TryFrom<u64>,
{
    move |text| {
        let n: i128 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number"))?;
        match u64::try_from(n) {
            Ok(n) => in_range(n, lo, hi),
            Err(_) if n < 0 => Err(range_message(lo, hi)),
            Err(_) => Err(TOO_LARGE.to_owned()),
        }
    }
}

/// A size in bytes: a whole number, or one with a unit K, M or G (1024,
/// 1024^2, 1024^3, as nginx reads them; `Ki`/`KiB` and `KB` are read the
/// same), at least `lo`.
pub fn bytes<T>(lo: u64) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: TryFrom<u64>,
{
    move |text| {
        let not_a_size =
            || format!("{text:?} is not a size; use a number of bytes, or e.g. 512K, 128M, 1G");
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "ki" | "kib" | "kb" => 10,
            "m" | "mi" | "mib" | "mb" => 20,
            "g" | "gi" | "gib" | "gb" => 30,
            _ => return Err(not_a_size()),
        };
        let n = number.parse::<u64>().map_err(|_| not_a_size())?;
        let n = n
            .checked_mul(1 << shift)
            .ok_or_else(|| TOO_LARGE.to_owned())?;
        in_range(n, lo, None)
    }
}

/// `n` as a T in [lo, hi]; clap prefixes the message with the value and
/// the flag ("invalid value '20' for '--compute-nice <NICE>': use 0 to 19").
fn in_range<T: TryFrom<u64>>(n: u64, lo: u64, hi: Option<u64>) -> Result<T, String> {
    if n < lo || hi.is_some_and(|hi| n > hi) {
        return Err(range_message(lo, hi));
    }
    T::try_from(n).map_err(|_| TOO_LARGE.to_owned())
}

fn range_message(lo: u64, hi: Option<u64>) -> String {
    match hi {
        Some(hi) => format!("use {lo} to {hi}"),
        None => format!("use at least {lo}"),
    }
}

/// Parses `MIN..MAX` (two durations, MIN at most MAX) for
/// `--restart-backoff`.
pub fn parse_backoff(text: &str) -> Result<(Duration, Duration), String> {
    let (min, max) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not a range; use MIN..MAX, e.g. 1s..30s"))?;
    let (min, max) = (parse_duration(min)?, parse_duration(max)?);
    if min > max {
        return Err(format!("{text:?}: MIN is larger than MAX"));
    }
    Ok((min, max))
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
    match Duration::try_from_secs_f64(value * scale) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("{text:?} is out of range: at most 8760h (a year)")),
    }
}

/// The longest duration a flag takes: timers are added to the clock, and
/// nothing here needs to wait longer.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

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
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        assert!(parse_duration("9999999999999999999").is_err());
    }

    #[test]
    fn whole_numbers() {
        let nice = whole::<u8>(0, Some(19));
        assert_eq!(nice("0"), Ok(0));
        assert_eq!(nice("19"), Ok(19));
        assert_eq!(nice("20"), Err("use 0 to 19".into()));
        assert_eq!(nice("x"), Err("\"x\" is not a whole number".into()));
        assert_eq!(nice("-1"), Err("use 0 to 19".into()));
        let n = whole::<u32>(1, None);
        assert_eq!(n("0"), Err("use at least 1".into()));
        assert_eq!(n("-5"), Err("use at least 1".into()));
        assert_eq!(n("1.5"), Err("\"1.5\" is not a whole number".into()));
        assert_eq!(n("4294967295"), Ok(u32::MAX));
        assert_eq!(n("4294967296"), Err("too large".into()));
        assert!(n("99999999999999999999999").is_err());
    }

    #[test]
    fn sizes() {
        let b = bytes::<u64>(1);
        assert_eq!(b("1000"), Ok(1000));
        assert_eq!(b("512K"), Ok(512 << 10));
        assert_eq!(b("128M"), Ok(128 << 20));
        assert_eq!(b("128Mi"), Ok(128 << 20));
        assert_eq!(b("64mib"), Ok(64 << 20));
        assert_eq!(b("1G"), Ok(1 << 30));
        assert_eq!(b("0"), Err("use at least 1".into()));
        assert!(b("M").is_err());
        assert!(b("1.5M").is_err());
        assert!(b("12 parsecs").is_err());
        assert_eq!(b("8 M"), Ok(8 << 20));
        assert!(b("").is_err());
        assert_eq!(b("99999999999G"), Err("too large".into()));
        assert_eq!(bytes::<u64>(0)("0"), Ok(0));
    }

    #[test]
    fn backoff_ranges() {
        let s = Duration::from_secs;
        assert_eq!(parse_backoff("1s..30s"), Ok((s(1), s(30))));
        assert_eq!(
            parse_backoff("500ms..2"),
            Ok((Duration::from_millis(500), s(2)))
        );
        assert!(parse_backoff("30s..1s").is_err());
        assert!(parse_backoff("1s").is_err());
        assert!(parse_backoff("1s..x").is_err());
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

    #[test]
    fn the_fronts_flags_are_refused_with_no_proxy() {
        for flag in [
            ["--listen", "0.0.0.0:9000"],
            ["--upstream", "127.0.0.1:9001"],
            ["--max-connections", "5"],
            ["--upstream-health", "tcp"],
        ] {
            let e = parse([
                "modelarts-init",
                "--no-proxy",
                flag[0],
                flag[1],
                "--",
                "true",
            ])
            .unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{flag:?}"
            );
            assert!(e.to_string().contains(flag[0]), "{e}");
        }
        // The list is every flag of the front and the proxy.
        let mut ids: Vec<String> = [
            FrontArgs::augment_args(clap::Command::new("f")),
            ProxyArgs::augment_args(clap::Command::new("p")),
        ]
        .iter()
        .flat_map(|c| c.get_arguments().map(|a| a.get_id().to_string()))
        .collect();
        ids.sort();
        let mut listed: Vec<String> = FRONT_ARG_IDS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(ids, listed);
        // The supervisor's own flags go with it.
        let cli = parse([
            "modelarts-init",
            "--no-proxy",
            "--drain-delay",
            "0s",
            "--",
            "true",
        ]);
        assert!(cli.unwrap().wrap.no_proxy);
    }
}
