//! The gate every request goes through before an app sees it.
//!
//! Owns: routing (our own paths: `/health`, the live path, the metrics and
//! the status page, answered here and never passed on or queued), the stop
//! gate, the request checks that blame the client (CONNECT, `Host` under
//! RFC 9112 §3.2, head and body limits), the readiness gate, admission
//! (`admission`: the slot is taken after the checks, and the wait counts
//! toward the request timeout), the request timeout and the R9 warning,
//! what is observed of each request (`observe`: metrics, access log; the
//! arrival for the quiet drain goes to the lifecycle), and
//! `Connection: close` on every answer during the drain (so that a
//! balancer's pooled connections move to other instances before the child
//! stops, as Envoy's drain does). Must not: know what the app behind it
//! does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, HOST};
use hyper::{Method, Request, Response, StatusCode, Version};

use super::admission::{self, Admission};
use super::conn::{ConnClock, Event};
use super::metrics::{self, Metrics, Reason, UpstreamFailure};
use super::observe::{Observer, Outcome};
use super::probe::Answered;
use super::{
    content_length, error, health, json, status, stopping, too_large, App, Body, Counters,
    FrontConfig, Shard, MAX_HEADER_BYTES, PLATFORM_REQUEST_LIMIT,
};
use crate::lifecycle::{Lifecycle, State};
use crate::logging::throttled;

/// The shared gate in front of an app.
pub struct Front<A> {
    pub config: FrontConfig,
    pub(crate) lifecycle: Lifecycle,
    /// Shared with the other threads' fronts (`sibling`).
    pub(crate) counters: Arc<Counters>,
    /// This thread's share of `counters`.
    pub(crate) shard: Arc<Shard>,
    /// When a request last got a non-5xx answer from the app (the probe
    /// reads it); shared with the other threads' fronts.
    pub(crate) answered: Arc<Answered>,
    pub(crate) status: Option<Arc<status::StatusPage>>,
    /// Metrics and access log, if either is on; shared series.
    pub(crate) observer: Option<Observer>,
    /// `--max-concurrency`: slots shared with the other threads' fronts.
    pub(crate) admission: Option<Arc<Admission>>,
    pub app: A,
}

impl<A: App> Front<A> {
    /// A front for `app`, with a status page if the config asks for one.
    pub fn new(config: FrontConfig, lifecycle: Lifecycle, app: A) -> Front<A> {
        let status = config
            .status_path
            .is_some()
            .then(|| Arc::new(status::StatusPage));
        let observer = (config.metrics_path.is_some() || config.access_log).then(|| Observer {
            metrics: Arc::new(Metrics::new(&config.routes)),
            record: config.metrics_path.is_some(),
            access_log: config.access_log,
        });
        let admission = config.admission.map(|a| Arc::new(Admission::new(a)));
        let counters = Arc::<Counters>::default();
        Front {
            config,
            lifecycle,
            shard: counters.shard(),
            counters,
            answered: Arc::default(),
            status,
            observer,
            admission,
            app,
        }
    }

    /// A front for another thread: the same settings, lifecycle, counters
    /// and status page, its own `app`.
    pub(crate) fn sibling(&self, app: A) -> Front<A> {
        Front {
            config: self.config.clone(),
            lifecycle: self.lifecycle.clone(),
            counters: self.counters.clone(),
            shard: self.counters.shard(),
            answered: self.answered.clone(),
            status: self.status.clone(),
            observer: self.observer.clone(),
            admission: self.admission.clone(),
            app,
        }
    }

    /// Answers one request: our own paths first, then the stop gate and
    /// the checks, then the app.
    pub(crate) async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        clock: &ConnClock,
    ) -> Response<Body> {
        let state = self.lifecycle.get();
        let mut outcome = Outcome::default();
        let mut resp = match &self.observer {
            None => self.route(state, req, peer, clock, &mut outcome).await,
            Some(observer) => {
                let exchange = observer.begin(&mut req);
                let resp = self.route(state, req, peer, clock, &mut outcome).await;
                observer.end(exchange, &resp, &outcome, peer);
                resp
            }
        };
        if state == State::Draining && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn route(
        &self,
        state: State,
        req: Request<Incoming>,
        peer: SocketAddr,
        clock: &ConnClock,
        outcome: &mut Outcome,
    ) -> Response<Body> {
        let path = req.uri().path();
        let is_read = req.method() == Method::GET || req.method() == Method::HEAD;
        if is_read {
            if let Some(own) = self.own_path(state, path) {
                outcome.own_path = true;
                return own;
            }
        }
        // A request, not a probe or a scrape: the quiet drain counts it.
        self.lifecycle.request_arrived();
        if state >= State::Stopping {
            self.reject(Reason::Stopping);
            return stopping();
        }
        if let Some(refused) = self.refuse(&req, peer) {
            return refused;
        }
        if matches!(state, State::Starting | State::Restarting) {
            self.reject(Reason::NotReady);
        }
        match state {
            State::Starting => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "the service is starting; retry shortly",
                )
            }
            State::Restarting => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "restarting",
                    "the server exited and is being restarted; retry shortly",
                )
            }
            _ => {}
        }
        let resp = self.call(req, peer, clock, outcome).await;
        if resp.status().as_u16() < 500 {
            self.answered.mark();
        }
        resp
    }

    /// Our own paths' answers: `/health`, the live path, the metrics and
    /// the status page (GET and HEAD only).
    fn own_path(&self, state: State, path: &str) -> Option<Response<Body>> {
        let config = &self.config;
        if path == config.health_path {
            return Some(health::answer(state));
        }
        if Some(path) == config.live_path.as_deref() {
            return Some(json(StatusCode::OK, &serde_json::json!({"live": "true"})));
        }
        if Some(path) == config.metrics_path.as_deref() {
            let metrics = &self.observer.as_ref()?.metrics;
            let admission = self.admission.as_deref();
            return Some(metrics::answer(
                metrics,
                &self.lifecycle,
                &self.counters,
                admission,
            ));
        }
        if Some(path) == config.status_path.as_deref() {
            let page = self.status.as_ref()?;
            let admission = self.admission.as_deref();
            return Some(page.answer(&self.lifecycle, &self.counters, admission));
        }
        None
    }

    /// Counts a request refused before the app, for the metrics.
    fn reject(&self, reason: Reason) {
        if let Some(observer) = self.observer.as_ref().filter(|o| o.record) {
            observer.metrics.reject(reason);
        }
    }

    /// The client's mistakes and our limits: the answer, if the request
    /// goes no further.
    fn refuse(&self, req: &Request<Incoming>, peer: SocketAddr) -> Option<Response<Body>> {
        if req.method() == Method::CONNECT {
            return Some(error(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                "CONNECT is not supported: this is a reverse proxy in front of one server, not a forward proxy",
            ));
        }
        if let Some(problem) = host_problem(req) {
            return Some(error(StatusCode::BAD_REQUEST, "bad_host", problem));
        }
        let head = head_size(req);
        if head > MAX_HEADER_BYTES {
            throttled!(info, client = %peer, head_bytes = head, limit = MAX_HEADER_BYTES,
                "request refused with 431: its head is over the limit");
            return Some(error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                &format!("request line and headers exceed {MAX_HEADER_BYTES} bytes"),
            ));
        }
        if let (Some(max), Some(len)) = (self.config.max_body, content_length(req)) {
            if len > max {
                throttled!(info, client = %peer, content_length = len, limit = max,
                    "request refused with 413: its body is over --max-body");
                return Some(too_large(max));
            }
        }
        None
    }

    /// The app's answer, under the connection's clock: a slot first (with
    /// `--max-concurrency`), the R9 warning, the request timeout (the wait
    /// for the slot included), and a 503 if the child exits first.
    async fn call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        clock: &ConnClock,
        outcome: &mut Outcome,
    ) -> Response<Body> {
        self.shard.in_flight.fetch_add(1, Ordering::Relaxed);
        let _done = InFlight(&self.shard);
        let method = req.method().clone();
        // A `Uri` clone shares its bytes: no allocation on the hot path.
        let uri = req.uri().clone();
        let _request = clock.begin();
        // When the app got the request, if it did (and the metrics or the
        // access log want its time).
        let sent: OnceLock<Instant> = OnceLock::new();
        let timed = self.observer.is_some();
        let call = async {
            let slot = match &self.admission {
                Some(admission) => match admission.admit(&self.lifecycle, clock).await {
                    Ok(slot) => Some(slot),
                    Err(refused) => return admission.refused(refused),
                },
                None => None,
            };
            if timed {
                let _ = sent.set(Instant::now());
            }
            let resp = self.app.call(req, peer).await;
            admission::hold(resp, slot)
        };
        let mut call = std::pin::pin!(call);
        let failed = |failure: UpstreamFailure, mut resp: Response<Body>| {
            if sent.get().is_some() {
                resp.extensions_mut().insert(failure);
            }
            resp
        };
        // The connection's timer decides; the request acts on it each time
        // it is polled (see `conn`).
        let resp = std::future::poll_fn(|cx| loop {
            return match clock.event() {
                None => call.as_mut().poll(cx),
                Some(Event::Warn) => {
                    tracing::warn!(method = %method, path = %uri.path(), request_ms = PLATFORM_REQUEST_LIMIT.as_millis() as u64,
                        "request still running after 60 s: ModelArts fails synchronous requests this long (R9); use asynchronous mode or --request-timeout");
                    continue;
                }
                Some(Event::Timeout) => {
                    let timeout = self.config.request_timeout.unwrap_or_default();
                    throttled!(warn, method = %method, path = %uri.path(), timeout_ms = timeout.as_millis() as u64,
                        "request timeout: answering 504");
                    Poll::Ready(failed(UpstreamFailure::Timeout, error(StatusCode::GATEWAY_TIMEOUT, "timeout",
                        &format!("no response within the request timeout of {} ms", timeout.as_millis()))))
                }
                Some(Event::Exited) => Poll::Ready(failed(UpstreamFailure::Exited, error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stopped",
                    "the service stopped before answering",
                ))),
            };
        })
        .await;
        outcome.upstream = sent.get().map(Instant::elapsed);
        resp
    }
}

/// RFC 9112 §3.2: a server answers 400 to an HTTP/1.1 request without
/// `Host`, and to any request with more than one or an invalid one. What is
/// wrong, if anything.
fn host_problem(req: &Request<Incoming>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if req.version() == Version::HTTP_11 => {
            Some("an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)")
        }
        (None, _) => None,
        (Some(_), Some(_)) => Some("the request has more than one Host header"),
        (Some(host), None) => {
            (!valid_host(host.as_bytes())).then_some("the Host header is not a valid host[:port]")
        }
    }
}

/// The bytes of a registered name or IPv4 address (RFC 3986 `reg-name`:
/// unreserved, sub-delims and percent-encoding).
const HOST_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')'
            )
            || matches!(c, b'*' | b'+' | b',' | b';' | b'=' | b'%');
        b += 1;
    }
    table
};

/// Whether `host` is a `host[:port]` (RFC 9110 §7.2: a registered name, an
/// IPv4 address or a bracketed IPv6 one, and an optional port), checked on
/// the bytes, without an allocation on the hot path.
fn valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.first() {
        Some(b'[') => match host.iter().position(|&b| b == b']') {
            Some(end) => {
                let inside = &host[1..end];
                if inside.is_empty()
                    || !inside
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || b".:".contains(b))
                {
                    return false;
                }
                (&host[..=end], &host[end + 1..])
            }
            None => return false,
        },
        _ => match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, &host[host.len()..]),
        },
    };
    let name_ok =
        !name.is_empty() && (name[0] == b'[' || name.iter().all(|&b| HOST_NAME[b as usize]));
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name_ok && port_ok
}

/// Decrements the in-flight counter when a request ends, however it ends.
struct InFlight<'a>(&'a Shard);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.served.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bytes of the request line and headers, about as they came on the wire.
fn head_size(req: &Request<Incoming>) -> usize {
    let uri = req.uri();
    let target = uri.authority().map_or(0, |a| a.as_str().len() + 7)
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts() {
        for ok in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[fe80::1]",
            "a-b.c_d",
            "h:",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "user@host",
            "[::1",
            "[]",
            "host:80x",
            "host:123456",
            ":80",
            "a?b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }
}
