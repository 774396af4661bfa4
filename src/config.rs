//! Validated settings, built from the parsed command line.
//!
//! Owns: every check that needs more than one flag, a lookup (users) or a
//! file (config.json), turning `cli`'s raw values into what the rest of the
//! crate runs on. Must not: start anything.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{
    Cli, Command, FrontArgs, HealthArgs, LogFormat, MnistArgs, ProxyArgs, TimelineArgs, WrapArgs,
};
use tracing_subscriber::filter::Targets;

use crate::cli::TlsMode;
use crate::error::Error;
use crate::http::probe::{Probe, Readiness};
use crate::http::tls::{self, Source};
use crate::http::FrontConfig;
use crate::http::{admission, metrics, proxy};
use crate::model_config::ModelConfig;
use crate::supervisor::{ChildSpec, Credentials};
use crate::timeline::{restart, Quiet, Settings as Timeline};

/// `--drain-min` when neither the flag nor config.json's health section
/// says.
const DRAIN_MIN: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once, at start
pub enum Mode {
    Wrap(WrapConfig),
    Mnist(MnistConfig),
    Health(HealthConfig),
    CheckConfig(PathBuf),
}

impl Mode {
    /// Validates the parsed command line.
    pub fn from_cli(cli: Cli) -> Result<Mode, Error> {
        match cli.command {
            None => WrapConfig::from_args(&cli.wrap).map(Mode::Wrap),
            Some(Command::Mnist(args)) => MnistConfig::from_args(&args).map(Mode::Mnist),
            Some(Command::Health(args)) => Ok(Mode::Health(HealthConfig { args, tls: None })),
            Some(Command::CheckConfig { file }) => Ok(Mode::CheckConfig(file)),
        }
    }

    /// The front, if the mode has one.
    pub fn front_mut(&mut self) -> Option<&mut FrontConfig> {
        match self {
            Mode::Wrap(c) => c.proxy.as_mut().map(|p| &mut p.front),
            Mode::Mnist(c) => Some(&mut c.front),
            Mode::Health(_) | Mode::CheckConfig(_) => None,
        }
    }

    /// Whether TLS is asked for (a front with TLS, or an https:// health
    /// URL), and whether it is plugged in (see `http::tls::attach`).
    pub fn tls(&self) -> (bool, bool) {
        match self {
            Mode::Wrap(WrapConfig {
                proxy: Some(ProxyConfig { front, .. }),
                ..
            })
            | Mode::Mnist(MnistConfig { front, .. }) => match &front.tls {
                Some(t) => (true, t.layer.is_some()),
                None => (false, false),
            },
            Mode::Health(h) if h.args.url.starts_with("https://") => (true, h.tls.is_some()),
            _ => (false, false),
        }
    }

    /// The format of our own log lines.
    pub fn log_format(&self) -> LogFormat {
        match self {
            Mode::Wrap(c) => c.log_format,
            Mode::Mnist(c) => c.log_format,
            Mode::Health(_) | Mode::CheckConfig(_) => LogFormat::Text,
        }
    }

    /// Which of our own log lines to write.
    pub fn log_filter(&self) -> Targets {
        match self {
            Mode::Wrap(c) => c.log_filter.clone(),
            Mode::Mnist(c) => c.log_filter.clone(),
            Mode::Health(_) | Mode::CheckConfig(_) => log_filter(None),
        }
    }
}

/// The `health` verb.
pub struct HealthConfig {
    pub args: HealthArgs,
    /// The https:// client, once plugged in (see `http::tls::attach`).
    pub tls: Option<std::sync::Arc<dyn tls::Connect>>,
}

impl std::fmt::Debug for HealthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthConfig")
            .field("args", &self.args)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Everything wrap mode needs.
#[derive(Debug, Clone)]
pub struct WrapConfig {
    pub(crate) child: ChildSpec,
    pub(crate) signal_group: bool,
    pub(crate) timeline: Timeline,
    pub(crate) log_format: LogFormat,
    pub(crate) log_filter: Targets,
    /// The HTTP front and its upstream; `None` with `--no-proxy`.
    pub(crate) proxy: Option<ProxyConfig>,
}

/// The HTTP front of wrap mode.
#[derive(Debug, Clone)]
pub(crate) struct ProxyConfig {
    pub front: FrontConfig,
    pub upstream: SocketAddr,
    pub probe: Probe,
    pub proxy: proxy::Settings,
    /// Threads serving client connections (`--proxy-threads`), at least 1.
    pub threads: usize,
    /// How long the platform takes to see `/health` fail, from
    /// config.json's health section: the default of `--drain-min`.
    pub health_detection: Option<Duration>,
}

/// Everything mnist mode needs.
#[derive(Debug, Clone)]
pub struct MnistConfig {
    pub front: FrontConfig,
    pub timeline: Timeline,
    pub max_image_bytes: u64,
    /// `--max-pixels`, at least 1.
    pub max_pixels: u64,
    /// `--decode-memory`, at least 1 MiB.
    pub decode_memory: u64,
    /// `--upload-memory`, at least 1 MiB.
    pub upload_memory: u64,
    /// `--compute-nice`, 0-19.
    pub compute_nice: u8,
    pub log_format: LogFormat,
    pub log_filter: Targets,
}

impl WrapConfig {
    pub(crate) fn from_args(args: &WrapArgs) -> Result<WrapConfig, Error> {
        let sup = &args.supervisor;
        let user = sup.user.as_deref().map(Credentials::resolve).transpose()?;
        let proxy = if args.no_proxy {
            None
        } else {
            Some(ProxyConfig::from_args(&args.front, &args.proxy)?)
        };
        if args.no_proxy && sup.timeline.drain_quiet_period.is_some() {
            return Err(Error::Config(
                "--drain-quiet-period needs the HTTP front (it watches the requests), not --no-proxy".into(),
            ));
        }
        let detection = proxy.as_ref().and_then(|p| p.health_detection);
        let mut env = Vec::new();
        if let Some(p) = &proxy {
            // Servers that read PORT (Flask, many others) find the upstream
            // port without being told; an explicit PORT wins.
            if std::env::var_os("PORT").is_none() {
                env.push((
                    OsString::from("PORT"),
                    OsString::from(p.upstream.port().to_string()),
                ));
            }
        }
        Ok(WrapConfig {
            child: ChildSpec {
                command: args.command.clone(),
                keep_stderr: sup.keep_stderr,
                user,
                env,
            },
            signal_group: sup.signal_group,
            timeline: Timeline {
                stop_signal: sup.stop_signal,
                leftover_grace: sup.leftover_grace,
                restart: restart::Policy {
                    when: sup.restart,
                    backoff_min: sup.restart_backoff.0,
                    backoff_max: sup.restart_backoff.1,
                    max_restarts: sup.max_restarts,
                    window: sup.restart_window,
                },
                ..timeline(&sup.timeline, detection)
            },
            log_format: args.log.log_format,
            log_filter: log_filter(args.log.log_level.clone()),
            proxy,
        })
    }
}

impl ProxyConfig {
    fn from_args(front: &FrontArgs, proxy: &ProxyArgs) -> Result<ProxyConfig, Error> {
        let model = proxy.config.as_deref().map(ModelConfig::load).transpose()?;
        let health = model.as_ref().and_then(|m| m.health.as_ref());
        let front = front_config(front, model.as_ref())?;
        if same_socket(front.listen, proxy.upstream) {
            return Err(Error::Config(format!(
                "--upstream {} is the address we listen on (--listen {}); the child must listen elsewhere, e.g. 127.0.0.1:8081",
                proxy.upstream, front.listen
            )));
        }
        let readiness = match proxy.upstream_health.as_deref() {
            None => Readiness::Auto {
                health_path: health.map_or_else(|| "/health".to_owned(), |h| h.url.clone()),
            },
            Some(tcp) if tcp.eq_ignore_ascii_case("tcp") => Readiness::Tcp,
            Some(path) => {
                check_path("--upstream-health", path)?;
                Readiness::Path(path.to_owned())
            }
        };
        if proxy.proxy_threads == 0 {
            return Err(Error::Config("--proxy-threads must be at least 1".into()));
        }
        check_timer("--stream-idle-timeout", proxy.stream_idle_timeout)?;
        let settings = proxy::Settings {
            upstream: proxy.upstream,
            idle_timeout: proxy.upstream_idle_timeout,
            max_body: front.max_body,
            stream_idle_timeout: proxy.stream_idle_timeout.or(front.request_timeout),
            forwarded_proto: if front.tls.is_some() { "https" } else { "http" },
        };
        Ok(ProxyConfig {
            front,
            upstream: proxy.upstream,
            probe: Probe {
                upstream: proxy.upstream,
                readiness,
                interval: proxy.probe_interval.max(Duration::from_millis(10)),
                unhealthy_after: proxy.unhealthy_after,
                patience: health.map(|h| Duration::from_secs(h.patience_seconds())),
            },
            proxy: settings,
            threads: proxy.proxy_threads,
            health_detection: health.map(|h| Duration::from_secs(h.detection_seconds())),
        })
    }
}

impl MnistConfig {
    pub fn from_args(args: &MnistArgs) -> Result<MnistConfig, Error> {
        for (flag, value) in [
            ("--decode-memory", args.decode_memory),
            ("--upload-memory", args.upload_memory),
        ] {
            if value < 1 << 20 {
                return Err(Error::Config(format!(
                    "{flag} {value} is below 1 MiB (1048576); even a small photo needs more"
                )));
            }
        }
        Ok(MnistConfig {
            front: front_config(&args.front, None)?,
            timeline: timeline(&args.timeline, None),
            max_image_bytes: args.max_image_bytes,
            max_pixels: args.max_pixels,
            decode_memory: args.decode_memory,
            upload_memory: args.upload_memory,
            compute_nice: args.compute_nice,
            log_format: args.log.log_format,
            log_filter: log_filter(args.log.log_level.clone()),
        })
    }
}

/// `--log-level`, else RUST_LOG (if it parses), else info.
fn log_filter(flag: Option<Targets>) -> Targets {
    flag.or_else(|| {
        std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| crate::cli::parse_log_filter(&v).ok())
    })
    .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

/// The timeline's settings; `detection` is how long the platform takes
/// to see `/health` fail (config.json), the default of `--drain-min`.
fn timeline(args: &TimelineArgs, detection: Option<Duration>) -> Timeline {
    Timeline {
        drain_delay: args.drain_delay,
        stop_timeout: args.stop_timeout,
        stop_signal: libc::SIGTERM,
        leftover_grace: Duration::ZERO,
        restart: restart::Policy::NEVER,
        quiet: args.drain_quiet_period.map(|period| Quiet {
            period,
            min: args.drain_min.or(detection).unwrap_or(DRAIN_MIN),
        }),
    }
}

/// config.json's `apis` as metric routes.
fn routes(model: &ModelConfig) -> Result<Vec<metrics::Route>, Error> {
    model
        .apis
        .iter()
        .enumerate()
        .map(|(i, api)| {
            let method = hyper::Method::from_bytes(api.method.to_ascii_uppercase().as_bytes())
                .map_err(|_| {
                    Error::Config(format!(
                        "config.json apis[{i}].method {:?} is not an HTTP method",
                        api.method
                    ))
                })?;
            Ok(metrics::Route {
                url: api.url.clone(),
                method,
            })
        })
        .collect()
}

/// The front's settings; `model` is the config.json, if any: its
/// health.url is the health path unless `--health-path` says otherwise, and
/// its protocols decide `--tls auto`.
fn front_config(args: &FrontArgs, model: Option<&ModelConfig>) -> Result<FrontConfig, Error> {
    let declared_health = model
        .and_then(|m| m.health.as_ref())
        .map(|h| h.url.as_str());
    let health_path = args
        .health_path
        .clone()
        .or_else(|| declared_health.map(str::to_owned))
        .unwrap_or_else(|| "/health".to_owned());
    let source = if args.health_path.is_some() {
        "--health-path"
    } else {
        "config.json health.url"
    };
    check_path(source, &health_path)?;
    let observe = &args.observe;
    let own = [
        ("--status-path", &args.status_path),
        ("--metrics-path", &observe.metrics_path),
        ("--live-path", &observe.live_path),
    ];
    for (i, (flag, path)) in own.iter().enumerate() {
        let Some(p) = path else { continue };
        check_path(flag, p)?;
        if *p == health_path {
            return Err(Error::Config(format!("{flag} {p} is also the health path")));
        }
        if let Some((other, _)) = own[..i].iter().find(|(_, q)| q.as_ref() == Some(p)) {
            return Err(Error::Config(format!("{flag} {p} is also {other}")));
        }
    }
    let admission = args.admission.max_concurrency.map(|n| admission::Settings {
        max_concurrency: n,
        max_queue: args.admission.max_queue.unwrap_or(n),
        queue_timeout: args.admission.queue_timeout,
    });
    if let Some(n) = args.max_connections {
        if !(1..=MAX_CONNECTIONS).contains(&n) {
            return Err(Error::Config(format!(
                "--max-connections {n}: use 1 to {MAX_CONNECTIONS}"
            )));
        }
    }
    // The connection clock works in milliseconds: shorter timers would
    // fire without end. Below this, no real client could be served anyway.
    check_timer("--keep-alive", Some(args.keep_alive))?;
    check_timer("--request-timeout", args.request_timeout)?;
    let tls =
        tls_source(args, model.and_then(ModelConfig::wants_tls))?.map(|source| tls::Settings {
            source,
            handshake_timeout: args.tls_handshake_timeout,
            layer: None,
        });
    Ok(FrontConfig {
        listen: args.listen,
        health_path,
        status_path: args.status_path.clone(),
        metrics_path: observe.metrics_path.clone(),
        routes: model.map(routes).transpose()?.unwrap_or_default(),
        live_path: observe.live_path.clone(),
        access_log: observe.access_log,
        admission,
        keep_alive: args.keep_alive,
        max_connections: args.max_connections,
        request_timeout: args.request_timeout,
        max_body: args.max_body,
        tls,
    })
}

/// Where the certificate comes from, if TLS is on: `--tls`, the files, and
/// what config.json asks for (`wants`: the field that asks, if one does).
fn tls_source(args: &FrontArgs, wants: Option<String>) -> Result<Option<Source>, Error> {
    let files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Source::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None) => None,
        (Some(_), None) => return Err(Error::Config("--tls-cert needs --tls-key".into())),
        (None, Some(_)) => return Err(Error::Config("--tls-key needs --tls-cert".into())),
    };
    let self_signed = || Source::SelfSigned {
        names: tls::self_signed_names(),
    };
    match args.tls {
        TlsMode::Off => match (files, wants) {
            (_, Some(field)) => Err(Error::Config(format!(
                "--tls off, but config.json's {field} asks for TLS; serve TLS (--tls auto, with --tls-cert/--tls-key or self-signed) or make the protocol http/ws"
            ))),
            (Some(_), None) => Err(Error::Config(
                "--tls off, but --tls-cert and --tls-key are given".into(),
            )),
            (None, None) => Ok(None),
        },
        TlsMode::SelfSigned if files.is_some() => Err(Error::Config(
            "--tls self-signed makes its own certificate: drop --tls-cert and --tls-key, or use --tls auto".into(),
        )),
        TlsMode::SelfSigned => Ok(Some(self_signed())),
        TlsMode::Auto => Ok(files.or_else(|| wants.map(|_| self_signed()))),
    }
}

/// The most connections `--max-connections` may allow.
const MAX_CONNECTIONS: usize = 1_000_000;

/// The shortest timer the connection clock (in milliseconds) can keep:
/// shorter ones would fire without end, and no real client could be served
/// within them anyway.
const MIN_TIMER: Duration = Duration::from_millis(100);

fn check_timer(flag: &str, value: Option<Duration>) -> Result<(), Error> {
    match value {
        Some(v) if v < MIN_TIMER => Err(Error::Config(format!(
            "{flag} must be at least {} ms",
            MIN_TIMER.as_millis()
        ))),
        _ => Ok(()),
    }
}

/// A path we answer ourselves or probe: an origin-form path, without a
/// query (it is compared with the request's path alone).
fn check_path(flag: &str, path: &str) -> Result<(), Error> {
    let valid = path.starts_with('/')
        && !path.contains(['?', '#'])
        && hyper::http::uri::PathAndQuery::try_from(path).is_ok();
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{flag} {path:?} must be a path starting with '/', without a query, spaces or non-ASCII characters"
        )))
    }
}

/// Whether a connection to `upstream` would reach our own listener.
fn same_socket(listen: SocketAddr, upstream: SocketAddr) -> bool {
    listen.port() == upstream.port()
        && (listen.ip() == upstream.ip() || listen.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_must_differ_from_listen() {
        assert!(same_socket(
            "0.0.0.0:8080".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        ));
        assert!(same_socket(
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        ));
        assert!(!same_socket(
            "0.0.0.0:8080".parse().unwrap(),
            "127.0.0.1:8081".parse().unwrap()
        ));
        assert!(!same_socket(
            "127.0.0.2:8080".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        ));
    }

    /// `--drain-min`: the flag, else the platform's detection time from
    /// config.json, else 30 s; and no quiet drain without its flag.
    #[test]
    fn drain_min_defaults() {
        use clap::Parser;
        let quiet = |flags: &[&str], detection: Option<u64>| {
            let argv = ["modelarts-init"]
                .iter()
                .chain(flags)
                .chain(&["--", "true"]);
            let cli = Cli::try_parse_from(argv).unwrap();
            let t = timeline(
                &cli.wrap.supervisor.timeline,
                detection.map(Duration::from_secs),
            );
            t.quiet.map(|q| (q.period.as_secs(), q.min.as_secs()))
        };
        assert_eq!(quiet(&[], Some(7)), None);
        let on = ["--drain-quiet-period", "3s"];
        assert_eq!(quiet(&on, None), Some((3, 30)));
        assert_eq!(quiet(&on, Some(7)), Some((3, 7)));
        let min = ["--drain-quiet-period", "3s", "--drain-min", "5s"];
        assert_eq!(quiet(&min, Some(7)), Some((3, 5)));
    }
}
