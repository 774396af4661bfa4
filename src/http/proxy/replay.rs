//! Sending a request again when the pooled connection it went out on was
//! already closed by the upstream.
//!
//! Owns: the copy of a bodiless idempotent request kept for that, and
//! telling a stale connection's error from a real one. Must not: send; the
//! proxy decides when a second try is allowed.
//!
//! hyper hands back a request it did not start to write; this covers the
//! other half of the race, an upstream closing its idle connection just as
//! our request is written to it (gunicorn's 2 s keep-alive against a longer
//! --upstream-idle-timeout).

use std::time::Duration;

use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Uri};

use crate::http::Body;

/// A request on a pooled connection idle for at least this long is kept
/// for a replay: no server closes a connection idle for less on its own
/// (gunicorn's keep-alive is 2 s), and under load connections are idle for
/// microseconds, so the request is hardly ever copied.
pub(super) const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(100);

/// A copy of a bodiless idempotent request (GET, HEAD, OPTIONS).
pub(super) struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    pub(super) fn of(parts: &hyper::http::request::Parts) -> Option<Replay> {
        let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
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

    pub(super) fn request(self) -> Request<Body> {
        let mut req = Request::new(crate::http::empty());
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

/// Whether the upstream closed or reset the connection without answering.
pub(super) fn is_stale_connection(e: &hyper::Error) -> bool {
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
