//! Prometheus metrics of the front (`--metrics-path`).
//!
//! Owns: the series the request path writes, made once at start and
//! shared by every serving thread ([`Metrics`]): per (route, method,
//! status class) a latency histogram and an upstream-latency histogram
//! (their counts are the request counters), rejections by reason and
//! upstream errors by kind. Routes are config.json's `apis` (url and
//! method), else one route `other`, never the raw path, so the label set
//! stays bounded. Submodules: `histogram` (atomic buckets), `scrape`
//! (reading it all, with the lifecycle, the process tree and our own
//! memory, when scraped, and encoding it with prometheus-client). Must
//! not: lock, allocate or read /proc on the request path.

mod histogram;
mod scrape;

pub(crate) use histogram::{Histogram, Reading};
pub(crate) use scrape::answer;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hyper::{Method, StatusCode};

/// A declared route: a request for exactly `url` with `method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub url: String,
    pub method: Method,
}

/// The route label of requests that match no declared route.
const OTHER: &str = "other";

/// Method labels of the `other` route; any other method is `OTHER`.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];

/// 1xx to 5xx.
const CLASSES: usize = 5;

/// Why a request was answered 503 without reaching the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    QueueFull,
    QueueTimeout,
    Stopping,
    NotReady,
}

impl Reason {
    const ALL: [Reason; 4] = [
        Reason::QueueFull,
        Reason::QueueTimeout,
        Reason::Stopping,
        Reason::NotReady,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::QueueFull => "queue_full",
            Reason::QueueTimeout => "queue_timeout",
            Reason::Stopping => "stopping",
            Reason::NotReady => "not_ready",
        }
    }
}

/// Why the app gave no answer of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection to the upstream.
    Connect,
    /// The connection broke or the answer was not HTTP.
    Connection,
    /// `--request-timeout` ran out.
    Timeout,
    /// The child exited before answering.
    Exited,
}

impl UpstreamFailure {
    const ALL: [UpstreamFailure; 4] = [
        UpstreamFailure::Connect,
        UpstreamFailure::Connection,
        UpstreamFailure::Timeout,
        UpstreamFailure::Exited,
    ];

    fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Connection => "connection",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Exited => "exited",
        }
    }
}

/// Latencies of one (route, method, status class).
#[derive(Debug, Default)]
struct Series {
    /// From the request head to the answer's head, queue included.
    total: Histogram,
    /// The app's part of it (requests that reached the app).
    upstream: Histogram,
}

/// Every series, shared by the serving threads.
#[derive(Debug)]
pub struct Metrics {
    /// The declared routes, then `other` once per method label.
    labels: Vec<(String, &'static str)>,
    declared: Vec<Route>,
    series: Box<[Series]>,
    rejected: [AtomicU64; 4],
    failures: [AtomicU64; 4],
}

/// Where a request's figures go: its route and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(u16);

impl Metrics {
    pub fn new(routes: &[Route]) -> Metrics {
        let mut declared = Vec::new();
        let mut labels = Vec::new();
        for r in routes {
            if !declared.contains(r) {
                labels.push((escape(&r.url), method_label(&r.method)));
                declared.push(r.clone());
            }
        }
        labels.extend(METHODS.iter().map(|m| (OTHER.to_owned(), m.as_str())));
        labels.push((OTHER.to_owned(), "OTHER"));
        let series = (0..labels.len() * CLASSES)
            .map(|_| Series::default())
            .collect();
        Metrics {
            labels,
            declared,
            series,
            rejected: Default::default(),
            failures: Default::default(),
        }
    }

    /// The slot of a request: its declared route, else `other` with its
    /// method. A few string compares, no allocation.
    pub(crate) fn slot(&self, method: &Method, path: &str) -> Slot {
        if let Some(i) = self
            .declared
            .iter()
            .position(|r| r.url == path && r.method == method)
        {
            return Slot(i as u16);
        }
        let m = METHODS
            .iter()
            .position(|m| m == method)
            .unwrap_or(METHODS.len());
        Slot((self.declared.len() + m) as u16)
    }

    /// The route label of `slot`.
    pub(crate) fn route(&self, slot: Slot) -> &str {
        &self.labels[slot.0 as usize].0
    }

    /// One answered request: `total` from its head to the answer's head,
    /// `upstream` the app's part, if it got that far.
    pub(crate) fn record(
        &self,
        slot: Slot,
        status: StatusCode,
        total: Duration,
        upstream: Option<Duration>,
    ) {
        let class = usize::from(status.as_u16() / 100).clamp(1, CLASSES) - 1;
        let series = &self.series[slot.0 as usize * CLASSES + class];
        series.total.observe(total);
        if let Some(upstream) = upstream {
            series.upstream.observe(upstream);
        }
    }

    pub(crate) fn reject(&self, reason: Reason) {
        self.rejected[reason as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn failed(&self, failure: UpstreamFailure) {
        self.failures[failure as usize].fetch_add(1, Relaxed);
    }

    /// Every series that saw a request: (route, method, class, total,
    /// upstream).
    fn readings(
        &self,
    ) -> impl Iterator<Item = (&str, &'static str, &'static str, Reading, Reading)> {
        const CLASS: [&str; CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        self.series.iter().enumerate().filter_map(|(i, s)| {
            let total = s.total.read();
            if total.count() == 0 {
                return None;
            }
            let (route, method) = &self.labels[i / CLASSES];
            Some((
                route.as_str(),
                *method,
                CLASS[i % CLASSES],
                total,
                s.upstream.read(),
            ))
        })
    }
}

/// The label of a declared method: the standard ones as hyper spells
/// them, any other as `OTHER` (its text is the user's, and labels are
/// static here).
fn method_label(m: &Method) -> &'static str {
    METHODS
        .iter()
        .find(|k| *k == m)
        .map_or("OTHER", |k| k.as_str())
}

/// A label value in the exposition format: backslash, double quote and
/// newline escaped (prometheus-client writes label values as given).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        vec![
            Route {
                url: "/".into(),
                method: Method::POST,
            },
            Route {
                url: "/predict".into(),
                method: Method::POST,
            },
        ]
    }

    #[test]
    fn requests_go_to_their_declared_route_or_other() {
        let m = Metrics::new(&routes());
        let post_root = m.slot(&Method::POST, "/");
        assert_eq!(m.route(post_root), "/");
        assert_eq!(m.route(m.slot(&Method::POST, "/predict")), "/predict");
        // The declared path with another method, or another path: other.
        let get_root = m.slot(&Method::GET, "/");
        assert_eq!(m.route(get_root), "other");
        assert_eq!(m.slot(&Method::GET, "/anything/else"), get_root);
        let odd = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(m.route(m.slot(&odd, "/x")), "other");

        m.record(
            post_root,
            StatusCode::OK,
            Duration::from_millis(3),
            Some(Duration::from_millis(2)),
        );
        m.record(post_root, StatusCode::OK, Duration::from_millis(30), None);
        m.record(
            get_root,
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::ZERO,
            None,
        );
        m.record(
            m.slot(&odd, "/x"),
            StatusCode::SWITCHING_PROTOCOLS,
            Duration::ZERO,
            None,
        );
        let seen: Vec<_> = m
            .readings()
            .map(|(r, me, c, t, u)| (r, me, c, t.count(), u.count()))
            .collect();
        assert_eq!(
            seen,
            [
                ("/", "POST", "2xx", 2, 1),
                ("other", "GET", "5xx", 1, 0),
                ("other", "OTHER", "1xx", 1, 0),
            ]
        );
    }

    #[test]
    fn route_labels_are_escaped_and_deduplicated() {
        let mut r = routes();
        r.push(r[0].clone());
        r.push(Route {
            url: "/a\"b\\c".into(),
            method: Method::GET,
        });
        let m = Metrics::new(&r);
        assert_eq!(m.declared.len(), 3);
        assert_eq!(m.route(m.slot(&Method::GET, "/a\"b\\c")), "/a\\\"b\\\\c");
    }
}
