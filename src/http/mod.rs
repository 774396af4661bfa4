//! The HTTP front on port 8080 (R1), shared by wrap mode and mnist mode.
//!
//! Owns: the types every part of the front shares (the [`App`] trait, the
//! settings, the body type) and the JSON answers. Submodules: `front` (the
//! gate every request goes through: own paths, stop gate, checks, limits,
//! request timeout), `server` (accept loop, keep-alive, connection limit,
//! graceful stop), `fronts` (serving threads), `conn` (a connection's
//! clock), `io` (its socket as hyper sees it), `proxy` (the streaming reverse proxy), `probe` (readiness of the
//! upstream), `health` (the `/health` answer), `status` (the opt-in status
//! page), `client` (the one HTTP/1 client), `metrics` (the opt-in
//! Prometheus metrics), `admission` (`--max-concurrency` and its queue),
//! `observe` (what is noted of each request), `access_log`. Must not: know
//! what the app behind it does.

pub(crate) mod access_log;
pub(crate) mod admission;
pub(crate) mod client;
pub(crate) mod conn;
mod front;
pub mod fronts;
pub(crate) mod health;
mod io;
pub(crate) mod limit;
pub(crate) mod metrics;
mod observe;
pub(crate) mod probe;
pub(crate) mod proxy;
pub mod server;
pub(crate) mod status;
pub mod tls;

pub use front::Front;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

/// Errors inside response and request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response we send and request we forward.
pub type Body = BoxBody<Bytes, BoxError>;

/// R9: ModelArts fails synchronous requests that take longer than this.
pub(crate) const PLATFORM_REQUEST_LIMIT: Duration = Duration::from_secs(60);

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
    /// `--metrics-path`.
    pub metrics_path: Option<String>,
    /// config.json's `apis`: the route labels of the metrics and the
    /// access log.
    pub routes: Vec<metrics::Route>,
    /// `--live-path`.
    pub live_path: Option<String>,
    /// `--access-log`.
    pub access_log: bool,
    /// `--max-concurrency` and its queue.
    pub admission: Option<admission::Settings>,
    pub keep_alive: Duration,
    /// In all, across serving threads; `None`: what the open-files
    /// limit allows (see `limit`).
    pub max_connections: Option<usize>,
    pub request_timeout: Option<Duration>,
    pub max_body: Option<u64>,
    /// HTTPS and WSS: TLS terminated here.
    pub tls: Option<tls::Settings>,
}

/// Largest request head (request line and headers) we accept; past it the
/// client gets 431. hyper's own read buffer is set above this so that our
/// JSON answer, not hyper's bare one, is what clients normally see.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Counters for the status page and the metrics: one [`Shard`] per
/// serving thread, summed when read, so that a request writes only its own
/// thread's cache line (one shared counter bounced between the cores at
/// every request).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    shards: std::sync::Mutex<Vec<std::sync::Arc<Shard>>>,
}

/// One serving thread's counters, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Shard {
    pub in_flight: AtomicU64,
    pub served: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
}

impl Counters {
    /// A new shard, counted from now on.
    pub(crate) fn shard(&self) -> std::sync::Arc<Shard> {
        let shard = std::sync::Arc::<Shard>::default();
        lock(&self.shards).push(shard.clone());
        shard
    }

    fn sum(&self, counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        lock(&self.shards)
            .iter()
            .map(|s| counter(s).load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.sum(|s| &s.in_flight)
    }

    pub(crate) fn served(&self) -> u64 {
        self.sum(|s| &s.served)
    }

    pub(crate) fn tls_failures(&self) -> u64 {
        self.sum(|s| &s.tls_failures)
    }
}

/// A body that keeps `G` (a guard: the connection's streaming mark, an
/// admission slot) until it has been sent or dropped.
pub(crate) struct Guarded<G> {
    inner: Body,
    _guard: G,
}

impl<G> Guarded<G> {
    pub(crate) fn new(inner: Body, guard: G) -> Guarded<G> {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<G: Unpin> hyper::body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The declared body length, if any.
pub fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A mutex's guard, also after a panic while it was held: what these
/// mutexes guard (a pool, a registry) stays usable, and a poisoned lock on
/// the serving path would otherwise take every later request down with it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// No body, without an allocation (the boxed body is zero-sized).
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
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

/// 503 for a request that comes (or still waits) once the stop has begun,
/// with `Connection: close`.
pub(crate) fn stopping() -> Response<Body> {
    let mut resp = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "stopping",
        "the service is shutting down; retry on another instance",
    );
    resp.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// 413 for a body over `max` bytes.
pub(crate) fn too_large(max: u64) -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("the request body exceeds {max} bytes"),
    )
}
