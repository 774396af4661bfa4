//! The HTTP front on port 8080 (R1), shared by wrap mode and mnist mode.
//!
//! Owns: what every request goes through before an app sees it (the
//! health and status paths, the stop gate, header and body limits, the
//! request timeout and the R9 warning), and the JSON error answers.
//! Submodules: `server` (accept loop, keep-alive, graceful stop), `proxy`
//! (the streaming reverse proxy), `health` (readiness probe and the
//! `/health` answer), `status` (the opt-in status page), `client` (the
//! `health` verb), `conn` (a connection's clock: keep-alive, R9 warning,
//! request timeout). Must not: know what the app behind it does.

pub mod client;
pub mod conn;
pub mod fronts;
pub mod health;
pub mod proxy;
pub mod server;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::lifecycle::{Lifecycle, State};
use conn::{ConnClock, Event};

/// Errors inside response and request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response we send and request we forward.
pub type Body = BoxBody<Bytes, BoxError>;

/// R9: ModelArts fails synchronous requests that take longer than this.
pub const PLATFORM_REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// Whatever serves the requests the front does not answer itself.
pub trait App: Send + Sync + 'static {
    /// Answers one request. `peer` is the client's address.
    fn call(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// Settings of the front that every app shares.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    pub listen: SocketAddr,
    pub health_path: String,
    pub status_path: Option<String>,
    pub keep_alive: Duration,
    pub max_connections: usize,
    pub request_timeout: Option<Duration>,
    pub max_body: Option<u64>,
}

/// Largest request head (request line and headers) we accept; past it the
/// client gets 431. hyper's own read buffer is set above this so that our
/// JSON answer, not hyper's bare one, is what clients normally see.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Counters for the status page.
#[derive(Debug, Default)]
pub struct Counters {
    pub in_flight: AtomicU64,
    pub served: AtomicU64,
}

/// The shared gate in front of an app.
pub struct Front<A> {
    pub config: FrontConfig,
    pub lifecycle: Lifecycle,
    /// Shared with the other threads' fronts (`sibling`).
    pub counters: Arc<Counters>,
    pub status: Option<Arc<status::StatusPage>>,
    pub app: A,
}

impl<A: App> Front<A> {
    /// A front for `app`, with a status page if the config asks for one.
    pub fn new(config: FrontConfig, lifecycle: Lifecycle, app: A) -> Front<A> {
        let status = config
            .status_path
            .is_some()
            .then(|| Arc::new(status::StatusPage));
        Front {
            config,
            lifecycle,
            counters: Arc::default(),
            status,
            app,
        }
    }

    /// A front for another thread: the same settings, lifecycle, counters
    /// and status page, its own `app`.
    pub fn sibling(&self, app: A) -> Front<A> {
        Front {
            config: self.config.clone(),
            lifecycle: self.lifecycle.clone(),
            counters: self.counters.clone(),
            status: self.status.clone(),
            app,
        }
    }

    /// Answers one request: our own paths first, then the stop gate and
    /// limits, then the app.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        clock: &ConnClock,
    ) -> Response<Body> {
        let state = self.lifecycle.get();
        let path = req.uri().path();
        let is_read = req.method() == Method::GET || req.method() == Method::HEAD;
        if path == self.config.health_path && is_read {
            return health::answer(state);
        }
        if let Some(page) = &self.status {
            if Some(path) == self.config.status_path.as_deref() && is_read {
                return page.answer(&self.lifecycle, &self.counters);
            }
        }
        if state >= State::Stopping {
            let mut resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                "the service is shutting down; retry on another instance",
            );
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        if head_size(&req) > MAX_HEADER_BYTES {
            return error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                &format!("request line and headers exceed {MAX_HEADER_BYTES} bytes"),
            );
        }
        if let (Some(max), Some(len)) = (self.config.max_body, content_length(&req)) {
            if len > max {
                return too_large(max);
            }
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
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let _done = InFlight(&self.counters);
        let method = req.method().clone();
        // A `Uri` clone shares its bytes: no allocation on the hot path.
        let uri = req.uri().clone();
        let _request = clock.begin();
        let mut call = std::pin::pin!(self.app.call(req, peer));
        // The connection's timer decides; the request acts on it each time
        // it is polled (see `conn`).
        std::future::poll_fn(|cx| loop {
            return match clock.event() {
                None => call.as_mut().poll(cx),
                Some(Event::Warn) => {
                    tracing::warn!(method = %method, path = %uri.path(), elapsed_ms = PLATFORM_REQUEST_LIMIT.as_millis() as u64,
                        "request still running after 60 s: ModelArts fails synchronous requests this long (R9); use asynchronous mode or --request-timeout");
                    continue;
                }
                Some(Event::Timeout) => {
                    let timeout = self.config.request_timeout.unwrap_or_default();
                    tracing::warn!(method = %method, path = %uri.path(), elapsed_ms = timeout.as_millis() as u64, "request timeout: answering 504");
                    Poll::Ready(error(StatusCode::GATEWAY_TIMEOUT, "timeout",
                        &format!("no response within the request timeout of {} ms", timeout.as_millis())))
                }
                Some(Event::Exited) => Poll::Ready(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stopped",
                    "the service stopped before answering",
                )),
            };
        })
        .await
    }
}

/// Decrements the in-flight counter when a request ends, however it ends.
struct InFlight<'a>(&'a Counters);

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

/// The declared body length, if any.
pub fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON error: `{"error": code, "message": what happened and what to do}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}

/// 413 for a body over `max` bytes.
pub fn too_large(max: u64) -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the request body exceeds {max} bytes"),
    )
}
