//! `--metrics-path`: after real traffic through gunicorn, the page parsed
//! by the Prometheus project's own Python parser has the counts of the
//! requests sent, by the routes config.json declares; and `--live-path`,
//! the access log, and the refusals of flags that make no sense.

use std::fs;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::front_config::assert_refused_before_child;
use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// The metrics page of `f` as the Python parser read it.
pub struct Scrape {
    pub content_type: String,
    pub families: Value,
    samples: Vec<(String, Value, f64)>,
}

impl Scrape {
    /// Scrapes `url` with `tests/py/parse_metrics.py`; panics with the
    /// parser's complaint if the page is not valid OpenMetrics text.
    pub fn of(url: &str) -> Scrape {
        let mut cmd = Command::new(python());
        cmd.arg(py_script("parse_metrics.py"))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut r = Running::spawn(cmd);
        let code = r.expect_code(secs(30));
        r.stdout.wait_eof(secs(5));
        assert_eq!(code, 0, "the parser refused the page\n{}", r.dump());
        let out: Value = serde_json::from_str(&r.stdout.text()).unwrap();
        let samples = out["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s[0].as_str().unwrap().to_owned(),
                    s[1].clone(),
                    s[2].as_f64().unwrap(),
                )
            })
            .collect();
        Scrape {
            content_type: out["content_type"].as_str().unwrap_or("").to_owned(),
            families: out["families"].clone(),
            samples,
        }
    }

    /// The value of sample `name` with exactly these labels, if present.
    pub fn get(&self, name: &str, labels: Value) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == labels)
            .map(|s| s.2)
    }

    /// Every sample called `name`: (labels, value).
    pub fn all(&self, name: &str) -> Vec<(&Value, f64)> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
            .collect()
    }
}

/// Declares two routes; its metrics section changes nothing (the front
/// answers the metrics path itself).
const CONFIG: &str = r#"{
  "model_algorithm": "test",
  "apis": [{"url": "/", "method": "get"}, {"url": "/echo", "method": "post"}],
  "metrics": {"url": "/metrics", "port": 8081}
}"#;

/// Real traffic through gunicorn, then a scrape parsed by
/// prometheus_client's OpenMetrics parser: the request counts and the
/// histogram counts match what was sent, by the declared routes (never a
/// raw path), health probes and scrapes are not counted, a request
/// timeout is an upstream error, and the process figures are there.
#[test]
fn metrics_count_the_requests_by_declared_route() {
    let (init, dir, listen, upstream) = init_on_free_ports(
        "metrics",
        &["--metrics-path", "/metrics", "--request-timeout", "500ms"],
    );
    let cfg = dir.join("config.json");
    fs::write(&cfg, CONFIG).unwrap();
    let init = init.arg("--config").arg(&cfg);
    let argv = gunicorn_argv(&dir, upstream, &[]);
    let mut f = Front::spawn(init, dir, listen, &argv);
    f.wait_ready("/health");
    let url = f.url("/metrics");
    // A scrape before the traffic: it counts nothing, itself included.
    let before = Scrape::of(&url);
    assert!(
        before.all("modelarts_init_requests_total").is_empty(),
        "{:?}",
        before.samples
    );

    for _ in 0..5 {
        assert_eq!(f.get("/").unwrap().status, 200);
    }
    for _ in 0..3 {
        let r = http(f.listen, "POST", "/echo", &[], b"abc").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "abc"));
    }
    for _ in 0..2 {
        assert_eq!(f.get("/status/404").unwrap().status, 404);
    }
    assert_eq!(f.get("/bytes?n=10").unwrap().status, 200);
    assert_eq!(f.get("/slow?s=2").unwrap().status, 504);
    for _ in 0..3 {
        assert_health_true(&f.get("/health").unwrap());
    }

    let s = Scrape::of(&url);
    assert!(
        s.content_type.starts_with("application/openmetrics-text"),
        "{}",
        s.content_type
    );
    assert_eq!(s.families["modelarts_init_requests"], "counter");
    assert_eq!(
        s.families["modelarts_init_request_duration_seconds"],
        "histogram"
    );
    let labels = |route: &str, method: &str, class: &str| json!({"route": route, "method": method, "class": class});
    let expected = [
        (labels("/", "GET", "2xx"), 5.0),
        (labels("/echo", "POST", "2xx"), 3.0),
        (labels("other", "GET", "4xx"), 2.0),
        (labels("other", "GET", "2xx"), 1.0),
        (labels("other", "GET", "5xx"), 1.0),
    ];
    let requests = s.all("modelarts_init_requests_total");
    assert_eq!(requests.len(), expected.len(), "{requests:?}");
    for (l, n) in &expected {
        assert_eq!(
            s.get("modelarts_init_requests_total", l.clone()),
            Some(*n),
            "{l} in {requests:?}"
        );
        for h in [
            "modelarts_init_request_duration_seconds_count",
            "modelarts_init_upstream_duration_seconds_count",
        ] {
            assert_eq!(s.get(h, l.clone()), Some(*n), "{h} {l}");
        }
    }
    // Route labels are the declared ones or "other", never a path.
    for (l, _) in s.all("modelarts_init_request_duration_seconds_bucket") {
        let route = l["route"].as_str().unwrap();
        assert!(["/", "/echo", "other"].contains(&route), "{l}");
    }
    // The timed-out request's latency is the timeout's, and it is an
    // upstream error of kind timeout.
    let slow = s
        .get(
            "modelarts_init_request_duration_seconds_sum",
            labels("other", "GET", "5xx"),
        )
        .unwrap();
    assert!((0.45..1.9).contains(&slow), "{slow}");
    assert_eq!(
        s.get(
            "modelarts_init_upstream_errors_total",
            json!({"kind": "timeout"})
        ),
        Some(1.0)
    );
    assert_eq!(
        s.get(
            "modelarts_init_upstream_errors_total",
            json!({"kind": "connect"})
        ),
        Some(0.0)
    );
    for reason in ["queue_full", "queue_timeout", "stopping", "not_ready"] {
        assert_eq!(
            s.get("modelarts_init_rejected_total", json!({"reason": reason})),
            Some(0.0),
            "{reason}"
        );
    }
    // The process figures, read when scraped.
    assert_eq!(
        s.get("modelarts_init_state", json!({"state": "ready"})),
        Some(1.0)
    );
    assert_eq!(
        s.get("modelarts_init_state", json!({"state": "draining"})),
        Some(0.0)
    );
    assert_eq!(
        s.get("modelarts_init_child_restarts_total", json!({})),
        Some(0.0)
    );
    let processes = s
        .get("modelarts_init_child_tree_processes", json!({}))
        .unwrap();
    assert!(
        processes >= 3.0,
        "gunicorn master and 2 workers: {processes}"
    );
    let tree_rss = s
        .get("modelarts_init_child_tree_resident_memory_bytes", json!({}))
        .unwrap();
    assert!(tree_rss > 10e6, "{tree_rss}");
    let own = s
        .get("modelarts_init_resident_memory_bytes", json!({}))
        .unwrap();
    assert!(own > 500e3 && own < 100e6, "{own}");
    assert!(s
        .get("modelarts_init_cpu_seconds_total", json!({}))
        .is_some());
    assert_eq!(
        s.get("modelarts_init_requests_in_flight", json!({})),
        Some(0.0)
    );
    // Without --max-concurrency there is no queue to show.
    assert!(s.all("modelarts_init_queue_depth").is_empty());
}

/// Without the flags, the metrics and live paths are the app's: gunicorn's
/// 404s; `/health` is still ours.
#[test]
fn metrics_and_live_paths_are_off_by_default() {
    let f = start_gunicorn("metrics-off", &[], &[]);
    for path in ["/metrics", "/live"] {
        let r = f.get(path).unwrap();
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|v| v.starts_with("text/html")),
            "{path}: not gunicorn's 404: {r:?}"
        );
    }
    assert_health_true(&f.get("/health").unwrap());
}

/// `--live-path` answers 200 while `/health` fails in the drain, and
/// `--access-log` writes one line per request (the front's own answers
/// included) with the X-Request-Id the upstream saw: the client's, or one
/// made here; `--log-level` selects the access lines by their target.
#[test]
fn live_path_and_access_log() {
    let mut f = start_gunicorn(
        "access-log",
        &[
            "--live-path",
            "/live",
            "--access-log",
            "--log-level",
            "warn,modelarts_init::access=info",
            "--drain-delay",
            "2s",
        ],
        &[],
    );
    let live = f.get("/live").unwrap();
    assert_eq!(live.status, 200);
    assert_eq!(live.json(), json!({"live": "true"}));

    let mut c = Conn::open(f.listen).unwrap();
    let given = c
        .request("GET", "/headers", &[("X-Request-Id", "abc-123")], b"")
        .unwrap();
    assert_eq!(
        given.json()["x-request-id"],
        "abc-123",
        "passed upstream as is"
    );
    let made = c.get("/headers").unwrap().json();
    let id = made["x-request-id"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "a made id: {id}"
    );
    assert_eq!(c.get("/status/404").unwrap().status, 404);

    let line = |needle: &str| {
        f.wait_log(needle, secs(5))
            .unwrap_or_else(|| panic!("no access line with {needle}\n{}", f.run.dump()))
    };
    let l = line("abc-123");
    for part in [
        "method=GET",
        "path=\"/headers\"",
        "route=\"other\"",
        "status=200",
        "duration_ms=",
        "upstream_ms=",
    ] {
        assert!(l.contains(part), "{part} in {l}");
    }
    assert!(line(&id).contains("path=\"/headers\""));
    assert!(line("path=\"/status/404\"").contains("status=404"));
    let own = line("path=\"/live\"");
    assert!(
        own.contains("route=\"front\"") && !own.contains("upstream_ms"),
        "{own}"
    );
    // The filter let the access lines through and nothing at info else.
    assert!(!f.run.stdout.contains("listening"), "{}", f.run.dump());

    // In the drain, /health fails and the live path still answers 200.
    f.sigterm_until_draining();
    let live = f.get("/live").unwrap();
    assert_eq!(live.status, 200, "{}", live.text());
    f.run.expect_exit(secs(20));
}

/// Flags that make no sense are refused before the child starts, exit 2.
#[test]
fn nonsensical_observe_and_admission_flags_exit_2() {
    let dir = TempDir::new("observe-flags");
    let marker = dir.join("ran");
    let cases: &[&[&str]] = &[
        &["--metrics-path", "/health"],
        &["--metrics-path", "/m", "--live-path", "/m"],
        &["--status-path", "/s", "--metrics-path", "/s"],
        &["--live-path", "live"],
        &["--max-queue", "3"],
        &["--queue-timeout", "1s"],
        &["--max-concurrency", "0"],
        &["--drain-min", "5s"],
    ];
    for flags in cases {
        let what = flags.join(" ");
        let (init, ..) = init_on_free_ports("observe-flags", flags);
        let r = assert_refused_before_child(init, &marker, &what);
        let err = r.stderr.text();
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(err.starts_with("modelarts-init: "), "{what}: {err}");
    }
}
