//! The streaming reverse proxy to the child's HTTP server.
//!
//! Owns: turning a client request into an upstream request and back, with
//! bodies streamed both ways (a 100 MB upload is never held in memory),
//! hop-by-hop headers dropped, `Expect` removed (hyper's server has already
//! answered `100 Continue`; its client does not implement it),
//! `X-Forwarded-For`/`-Proto` added, and WebSocket upgrades passed through.
//!
//! Stale pooled connections: gunicorn's gevent and gthread workers close
//! idle connections after 2 s. A request sent on a connection the upstream
//! is closing fails before a byte is answered. Two defences: the pool drops
//! idle connections after `--upstream-idle-timeout` (1 s, below gunicorn's
//! 2 s), and a request is sent once more on a fresh connection when the
//! pooled one turns out to be closed: by hyper-util when nothing was
//! written yet, by us (`Replay`) for bodiless GET/HEAD/OPTIONS otherwise.
//!
//! Must not: decide readiness or timeouts (`Front` and `health` do).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{error, too_large, App, Body, BoxError};

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
    client: Client<HttpConnector, Body>,
    authority: String,
    max_body: Option<u64>,
}

impl Proxy {
    pub fn new(upstream: SocketAddr, idle_timeout: Duration, max_body: Option<u64>) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .retry_canceled_requests(true)
            .set_host(false)
            .build(connector);
        Proxy {
            client,
            authority: upstream.to_string(),
            max_body,
        }
    }
}

impl App for Proxy {
    async fn call(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let upgrade = wants_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = match Uri::try_from(format!("http://{}{}", self.authority, path)) {
            Ok(uri) => uri,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_uri",
                    "the request target is not a valid path",
                )
            }
        };
        let keep_upgrade = if upgrade {
            parts_upgrade(&parts.headers)
        } else {
            None
        };
        strip_hop_by_hop(&mut parts.headers, keep_upgrade);
        parts.headers.remove(header::EXPECT);
        parts.headers.remove(header::PROXY_AUTHORIZATION);
        add_forwarded(&mut parts.headers, peer);
        let body: Body = match self.max_body {
            Some(max) => Limited::new(body, max as usize).boxed(),
            None => body.map_err(|e| Box::new(e) as BoxError).boxed(),
        };
        let replay = (!upgrade).then(|| Replay::of(&parts)).flatten();
        let mut resp = match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => resp,
            Err(e) => match replay {
                // The pooled connection died under the request: once more,
                // on a fresh connection.
                Some(replay) if is_stale_connection(&e) => {
                    match self.client.request(replay.request()).await {
                        Ok(resp) => resp,
                        Err(e) => return upstream_error(&e, self.max_body),
                    }
                }
                _ => return upstream_error(&e, self.max_body),
            },
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
        Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed())
    }
}

/// A copy of a bodiless idempotent request (GET, HEAD, OPTIONS), to send
/// again if the pooled connection it went out on turns out to be closed.
/// hyper-util already retries a request that never started to be written;
/// this covers the other half of the race, an upstream closing its idle
/// connection just as our request is written to it (gunicorn's 2 s
/// keep-alive against a longer --upstream-idle-timeout).
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
fn is_stale_connection(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return true;
            }
        }
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
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::try_from(t.trim()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Appends the client to `X-Forwarded-For` and sets `X-Forwarded-Proto`
/// unless a proxy in front of us already did.
fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let ip = peer.ip().to_string();
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(before) => format!("{before}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(name, v);
    }
    headers
        .entry(HeaderName::from_static("x-forwarded-proto"))
        .or_insert(HeaderValue::from_static("http"));
}

/// The JSON answer for a failed upstream call.
fn upstream_error(e: &hyper_util::client::legacy::Error, max_body: Option<u64>) -> Response<Body> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return too_large(max_body.unwrap_or(0));
        }
        source = s.source();
    }
    if e.is_connect() {
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

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarded(&mut h, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }
}
