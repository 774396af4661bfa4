//! The streaming reverse proxy to the child's HTTP server.
//!
//! Owns: turning a client request into an upstream request and back, with
//! bodies streamed both ways (a 100 MB upload is never held in memory),
//! hop-by-hop headers dropped, `Expect` removed (hyper's server has already
//! answered `100 Continue`; its client does not implement it),
//! `X-Forwarded-For`/`-Proto` added, WebSocket upgrades passed through, and
//! the pool of keep-alive connections to the upstream.
//!
//! The request goes upstream in origin form (path and query) with the
//! client's `Host` (the upstream's address when the client sent none).
//!
//! The pool: one fixed upstream, so no keys, and no task of its own. Idle
//! connections are a LIFO stack (the most recently used is the one most
//! surely still open, and the others can age out). A connection goes back
//! on the stack only when its response body has ended cleanly and hyper
//! has not closed it; a response the client gave up on, an error or an
//! upgrade (the connection becomes the tunnel) drops it, which closes it
//! and ends its driver task. A connection is taken only if hyper says it
//! is ready for the next request; a busy one is left where it is.
//!
//! Stale pooled connections: gunicorn's gevent and gthread workers close
//! idle connections after 2 s. A request sent on a connection the upstream
//! is closing fails before a byte is answered. Two defences: a connection
//! idle for longer than `--upstream-idle-timeout` (1 s, below gunicorn's
//! 2 s) is never reused (its age is checked when it is taken), and a
//! request that fails on a reused connection is sent once more on a fresh
//! one: any request hyper hands back unwritten (the connection closed
//! before it was sent), and bodiless GET/HEAD/OPTIONS (`Replay`) when the
//! connection was closed or reset after it was written.
//!
//! Must not: decide readiness or timeouts (`Front` and `health` do).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{error, too_large, App, Body, BoxError};

/// A request on a pooled connection idle for at least this long is kept
/// for a replay (`Replay`).
const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(100);

/// How long we wait for the upstream to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// plus the non-standard ones proxies also drop.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// The proxy app.
pub struct Proxy {
    pool: Arc<Pool>,
    /// `Host` for requests that came without one (HTTP/1.0): the upstream.
    host: HeaderValue,
    /// The last client address and its `X-Forwarded-For` value: clients
    /// behind a balancer come from a few addresses, so this saves building
    /// the value for nearly every request.
    forwarded: Mutex<Option<(IpAddr, HeaderValue)>>,
    max_body: Option<u64>,
}

impl Proxy {
    pub fn new(upstream: SocketAddr, idle_timeout: Duration, max_body: Option<u64>) -> Proxy {
        Proxy {
            pool: Arc::new(Pool {
                addr: upstream,
                idle_timeout,
                idle: Mutex::new(VecDeque::new()),
            }),
            host: HeaderValue::try_from(upstream.to_string())
                .expect("a socket address is a valid header value"),
            forwarded: Mutex::new(None),
            max_body,
        }
    }

    /// Sends `req` on a pooled connection, or on a new one if none is
    /// idle, and once more on a new one if the pooled one turns out to be
    /// stale. Returns the response and the connection it came on.
    async fn send(
        &self,
        parts: hyper::http::request::Parts,
        body: Body,
    ) -> Result<(Response<Incoming>, SendRequest<Body>), UpstreamError> {
        let Some((mut sender, idle_for)) = self.pool.checkout() else {
            let mut sender = self.pool.connect().await?;
            let resp = sender
                .send_request(Request::from_parts(parts, body))
                .await?;
            return Ok((resp, sender));
        };
        // No server closes a connection idle for less than this on its own
        // (gunicorn's keep-alive is 2 s); under load, connections are idle
        // for microseconds and the request is not copied.
        let replay = (idle_for >= REPLAY_AFTER_IDLE)
            .then(|| Replay::of(&parts))
            .flatten();
        let mut e = match sender
            .try_send_request(Request::from_parts(parts, body))
            .await
        {
            Ok(resp) => return Ok((resp, sender)),
            Err(e) => e,
        };
        drop(sender);
        // hyper hands the request back when not a byte of it was written:
        // it can go again whatever its body. Otherwise only a bodiless
        // idempotent request can, and only if the connection was closed
        // under it.
        let again = match e.take_message() {
            Some(req) => req,
            None => match replay {
                Some(replay) if is_stale_connection(e.error()) => replay.request(),
                _ => return Err(UpstreamError::Http(e.into_error())),
            },
        };
        tracing::debug!(error = %e.error(), "pooled upstream connection was stale; sending again on a new one");
        let mut sender = self.pool.connect().await?;
        let resp = sender.send_request(again).await?;
        Ok((resp, sender))
    }

    /// The `X-Forwarded-For` value for a client at `ip` with no earlier
    /// proxy.
    fn forwarded_for(&self, ip: IpAddr) -> HeaderValue {
        let mut last = lock(&self.forwarded);
        match &*last {
            Some((cached, value)) if *cached == ip => value.clone(),
            _ => {
                let value = HeaderValue::try_from(ip.to_string())
                    .expect("an IP address is a valid header value");
                *last = Some((ip, value.clone()));
                value
            }
        }
    }
}

impl App for Proxy {
    async fn call(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let upgrade = wants_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        if !origin_form(&mut parts.uri) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_uri",
                "the request target is not a valid path",
            );
        }
        let keep_upgrade = if upgrade {
            parts_upgrade(&parts.headers)
        } else {
            None
        };
        strip_hop_by_hop(&mut parts.headers, keep_upgrade);
        parts.headers.remove(header::EXPECT);
        parts.headers.remove(header::PROXY_AUTHORIZATION);
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, self.host.clone());
        }
        self.add_forwarded(&mut parts.headers, peer);
        let body: Body = match self.max_body {
            Some(max) => Limited::new(body, max as usize).boxed(),
            None => body.map_err(|e| Box::new(e) as BoxError).boxed(),
        };
        if upgrade {
            return self.upgrade(parts, body, client_upgrade).await;
        }
        let (resp, sender) = match self.send(parts, body).await {
            Ok(sent) => sent,
            Err(e) => return upstream_error(&e, self.max_body),
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, None);
        let body = PoolBody::new(body, sender, Some(self.pool.clone()));
        Response::from_parts(parts, Body::new(body))
    }
}

impl Proxy {
    /// An upgrade (WebSocket) request: on a connection of its own, which
    /// becomes the tunnel if the upstream agrees, and is never pooled.
    async fn upgrade(
        &self,
        parts: hyper::http::request::Parts,
        body: Body,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<Body> {
        let sent = async {
            let mut sender = self.pool.connect().await?;
            let resp = sender
                .send_request(Request::from_parts(parts, body))
                .await?;
            Ok::<_, UpstreamError>((resp, sender))
        };
        let (mut resp, sender) = match sent.await {
            Ok(sent) => sent,
            Err(e) => return upstream_error(&e, self.max_body),
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((c, u)) => {
                            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "websocket upgrade failed"),
                    }
                });
                let (parts, _) = resp.into_parts();
                return Response::from_parts(parts, super::full(""));
            }
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, None);
        Response::from_parts(parts, Body::new(PoolBody::new(body, sender, None)))
    }

    /// Appends the client to `X-Forwarded-For` and sets `X-Forwarded-Proto`
    /// unless a proxy in front of us already did.
    fn add_forwarded(&self, headers: &mut HeaderMap, peer: SocketAddr) {
        let name = HeaderName::from_static("x-forwarded-for");
        let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
            Some(before) => HeaderValue::try_from(format!("{before}, {}", peer.ip())).ok(),
            None => Some(self.forwarded_for(peer.ip())),
        };
        if let Some(v) = value {
            headers.insert(name, v);
        }
        headers
            .entry(HeaderName::from_static("x-forwarded-proto"))
            .or_insert(HeaderValue::from_static("http"));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keep-alive connections to the one upstream.
struct Pool {
    addr: SocketAddr,
    idle_timeout: Duration,
    /// Idle connections, the most recently returned at the back.
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// The most recently used idle connection that is ready for a request,
    /// and how long it was idle
    /// and has not been idle too long, if any. Closed and expired ones are
    /// dropped on the way; busy ones (hyper not ready yet) stay.
    fn checkout(&self) -> Option<(SendRequest<Body>, Duration)> {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let mut busy = Vec::new();
        let mut expired = VecDeque::new();
        let mut found = None;
        while let Some(c) = idle.pop_back() {
            if now.saturating_duration_since(c.since) > self.idle_timeout {
                // Everything below it has been idle longer still.
                expired = std::mem::take(&mut *idle);
                break;
            }
            if c.sender.is_ready() {
                found = Some((c.sender, now.saturating_duration_since(c.since)));
                break;
            }
            if !c.sender.is_closed() {
                busy.push(c);
            }
        }
        idle.extend(busy.into_iter().rev());
        drop(idle);
        drop(expired);
        found
    }

    /// Puts a connection whose response has ended back on the stack, and
    /// drops those idle too long at the bottom of it.
    fn checkin(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let mut expired = Vec::new();
        while let Some(c) = idle.front() {
            if now.saturating_duration_since(c.since) <= self.idle_timeout {
                break;
            }
            expired.extend(idle.pop_front());
        }
        idle.push_back(Idle { sender, since: now });
        drop(idle);
        drop(expired);
    }

    /// A new connection, its driver spawned. The driver ends when the
    /// connection closes: when the upstream closes it, or when we drop its
    /// `SendRequest` while it is idle or after an unfinished response.
    async fn connect(&self) -> Result<SendRequest<Body>, UpstreamError> {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
                Err(_) => {
                    return Err(UpstreamError::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                    )))
                }
            };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A response body from the upstream that returns its connection to the
/// pool when it has ended cleanly. Dropped before the end (the client went
/// away) or after an error, it drops the connection instead.
struct PoolBody {
    inner: Incoming,
    sender: Option<SendRequest<Body>>,
    /// `None`: the connection is never reused (upgrade requests).
    pool: Option<Arc<Pool>>,
}

impl PoolBody {
    fn new(inner: Incoming, sender: SendRequest<Body>, pool: Option<Arc<Pool>>) -> PoolBody {
        let mut body = PoolBody {
            inner,
            sender: Some(sender),
            pool,
        };
        // HEAD, 204, 304, empty bodies: hyper may never poll them.
        if hyper::body::Body::is_end_stream(&body.inner) {
            body.ended();
        }
        body
    }

    fn ended(&mut self) {
        if let (Some(sender), Some(pool)) = (self.sender.take(), &self.pool) {
            pool.checkin(sender);
        }
    }
}

impl hyper::body::Body for PoolBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.ended();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if hyper::body::Body::is_end_stream(&this.inner) {
                    this.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.sender = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

/// Why the upstream gave no response.
#[derive(Debug)]
enum UpstreamError {
    /// No TCP connection (refused, unreachable, timed out).
    Connect(std::io::Error),
    /// The request or response failed on the connection.
    Http(hyper::Error),
}

impl From<hyper::Error> for UpstreamError {
    fn from(e: hyper::Error) -> Self {
        UpstreamError::Http(e)
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "cannot connect to the upstream: {e}"),
            UpstreamError::Http(e) => write!(f, "upstream request failed: {e}"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Connect(e) => Some(e),
            UpstreamError::Http(e) => Some(e),
        }
    }
}

/// Puts the request target in origin form (path and query), as sent to a
/// server that is not a proxy. Already the case for nearly every request;
/// absolute-form targets lose their scheme and authority. False if that
/// leaves no valid target.
fn origin_form(uri: &mut Uri) -> bool {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return true;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match Uri::try_from(path) {
        Ok(origin) => {
            *uri = origin;
            true
        }
        Err(_) => false,
    }
}

/// A copy of a bodiless idempotent request (GET, HEAD, OPTIONS), to send
/// again if the reused connection it went out on turns out to be closed.
/// hyper hands back a request it did not start to write; this covers the
/// other half of the race, an upstream closing its idle connection just as
/// our request is written to it (gunicorn's 2 s keep-alive against a
/// longer --upstream-idle-timeout). Made only for reused connections that
/// were idle for `REPLAY_AFTER_IDLE` or more.
struct Replay {
    method: hyper::Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    fn of(parts: &hyper::http::request::Parts) -> Option<Replay> {
        let idempotent = matches!(
            parts.method,
            hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
        );
        let bodiless = !parts.headers.contains_key(header::TRANSFER_ENCODING)
            && parts
                .headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        (idempotent && bodiless).then(|| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }

    fn request(self) -> Request<Body> {
        let mut req = Request::new(super::full(""));
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

/// Whether the upstream closed or reset the connection without answering.
fn is_stale_connection(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade`
/// and an `Upgrade` header), as WebSocket clients do.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

fn parts_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    headers.get(header::UPGRADE).cloned()
}

/// Removes hop-by-hop headers and those that `Connection` names. For an
/// upgrade, `upgrade` is the `Upgrade` value to keep, and `Connection:
/// upgrade` is put back.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    // `close` and `keep-alive`, the usual tokens, name nothing to remove
    // beyond HOP_BY_HOP: no list to build for them.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
        .filter_map(|t| HeaderName::try_from(t).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The JSON answer for a failed upstream call.
fn upstream_error(e: &UpstreamError, max_body: Option<u64>) -> Response<Body> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return too_large(max_body.unwrap_or(0));
        }
        source = s.source();
    }
    if let UpstreamError::Connect(_) = e {
        tracing::warn!(error = %e, "upstream refused the connection");
        return error(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "the upstream server refused the connection; is it listening on --upstream?",
        );
    }
    tracing::warn!(error = ?e, "upstream request failed");
    error(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        "the upstream server closed the connection or sent an invalid response",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, None);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrade_is_kept_for_websockets() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(wants_upgrade(&h));
        let proto = parts_upgrade(&h);
        strip_hop_by_hop(&mut h, proto);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    fn proxy() -> Proxy {
        Proxy::new("127.0.0.1:9".parse().unwrap(), Duration::from_secs(1), None)
    }

    #[test]
    fn forwarded_for_appends() {
        let p = proxy();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        p.add_forwarded(&mut h, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        // The cached value follows the client's address.
        for ip in ["10.1.1.1", "10.1.1.1", "10.2.2.2"] {
            let mut h = HeaderMap::new();
            p.add_forwarded(&mut h, SocketAddr::new(ip.parse().unwrap(), 1));
            assert_eq!(h["x-forwarded-for"], ip);
        }
    }

    #[test]
    fn targets_go_upstream_in_origin_form() {
        for (from, to) in [
            ("/a/b?c=d", "/a/b?c=d"),
            ("http://example.com/a?b", "/a?b"),
            ("http://example.com", "/"),
            ("*", "*"),
        ] {
            let mut uri: Uri = from.parse().unwrap();
            assert!(origin_form(&mut uri), "{from}");
            assert_eq!(uri.to_string(), to, "{from}");
        }
    }

    /// A local HTTP/1.1 server that answers every request with its
    /// connection's number, keeping connections open.
    async fn numbered_server() -> SocketAddr {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let n = count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| async move {
                        Ok::<_, std::convert::Infallible>(Response::new(super::super::full(
                            n.to_string(),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    async fn start(p: &Proxy) -> PoolBody {
        let (parts, _) = Request::get("/").body(()).unwrap().into_parts();
        let (resp, sender) = p.send(parts, super::super::full("")).await.unwrap();
        PoolBody::new(resp.into_body(), sender, Some(p.pool.clone()))
    }

    async fn finish(body: PoolBody) -> String {
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    async fn get(p: &Proxy) -> String {
        finish(start(p).await).await
    }

    #[tokio::test]
    async fn connections_are_reused_lifo_and_expire() {
        let addr = numbered_server().await;
        let p = Proxy::new(addr, Duration::from_millis(300), None);
        assert_eq!(get(&p).await, "0");
        assert_eq!(get(&p).await, "0", "an idle connection is reused");
        // Two at once: the second needs a new connection; both go back.
        let (a, b) = (start(&p).await, start(&p).await);
        assert_eq!(lock(&p.pool.idle).len(), 0);
        assert_eq!(finish(b).await, "1");
        assert_eq!(finish(a).await, "0");
        assert_eq!(lock(&p.pool.idle).len(), 2);
        // LIFO: the last returned is taken first.
        assert_eq!(get(&p).await, "0");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(&p).await, "2", "expired connections are not reused");
        assert_eq!(lock(&p.pool.idle).len(), 1);
    }

    #[tokio::test]
    async fn an_unfinished_body_drops_its_connection() {
        let addr = numbered_server().await;
        let p = Proxy::new(addr, Duration::from_secs(5), None);
        let (parts, _) = Request::get("/").body(()).unwrap().into_parts();
        let (resp, sender) = p.send(parts, super::super::full("")).await.unwrap();
        drop(PoolBody::new(
            resp.into_body(),
            sender,
            Some(p.pool.clone()),
        ));
        assert_eq!(lock(&p.pool.idle).len(), 0);
        assert_eq!(get(&p).await, "1");
    }

    #[tokio::test]
    async fn refused_connect_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let p = Proxy::new(addr, Duration::from_secs(1), None);
        let (parts, _) = Request::get("/").body(()).unwrap().into_parts();
        let e = p.send(parts, super::super::full("")).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Connect(_)), "{e}");
        assert_eq!(upstream_error(&e, None).status(), StatusCode::BAD_GATEWAY);
    }
}
