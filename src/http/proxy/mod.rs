//! The streaming reverse proxy to the child's HTTP server.
//!
//! Owns: turning a client request into an upstream request and back, with
//! bodies streamed both ways (a 100 MB upload is never held in memory),
//! `Expect` removed (hyper's server has already answered `100 Continue`;
//! its client does not implement it), and the order of a send: a pooled
//! connection, else a new one, and once more on a new one when the pooled
//! one was stale. Submodules: `pool` (keep-alive connections and the body
//! that returns them), `headers` (hop-by-hop, forwarding, origin form),
//! `upgrade` (WebSocket tunnels), `replay` (the second try), `error` (why
//! the upstream gave no answer, and the JSON answer for it).
//!
//! The request goes upstream in origin form (path and query) with the
//! client's `Host` (the upstream's address when the client sent none).
//!
//! Stale pooled connections: gunicorn's gevent and gthread workers close
//! idle connections after 2 s. A request sent on a connection the upstream
//! is closing fails before a byte is answered. Two defences: the pool never
//! hands out a connection idle for longer than `--upstream-idle-timeout`,
//! and a request that fails on a reused connection is sent once more on a
//! fresh one: any request hyper hands back unwritten (the connection closed
//! before it was sent), and bodiless GET/HEAD/OPTIONS (`replay`) when the
//! connection was closed or reset after it was written.
//!
//! Must not: decide readiness or timeouts (`Front` and `health` do).

mod error;
mod headers;
mod pool;
mod replay;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::conn::Tunnel;
use super::{empty, error as json_error, App, Body, BoxError};
use error::{upstream_error, ClientBodyError, UpstreamError};
use headers::{origin_form, strip_hop_by_hop, wants_websocket, Forwarded};
use pool::{Pool, PoolBody};
use replay::{is_stale_connection, Replay, REPLAY_AFTER_IDLE};

/// The proxy's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub upstream: SocketAddr,
    /// Pooled connections idle longer are not reused.
    pub idle_timeout: Duration,
    /// Larger request bodies get 413.
    pub max_body: Option<u64>,
    /// A response body with no data for this long is cut.
    pub stream_idle_timeout: Option<Duration>,
    /// `X-Forwarded-Proto`: `https` behind our TLS, else `http`.
    pub forwarded_proto: &'static str,
}

/// The proxy app.
pub struct Proxy {
    pool: Arc<Pool>,
    /// `Host` for requests that came without one (HTTP/1.0): the upstream.
    host: HeaderValue,
    forwarded: Forwarded,
    max_body: Option<u64>,
    stream_idle_timeout: Option<Duration>,
    forwarded_proto: &'static str,
}

impl Proxy {
    pub fn new(settings: Settings) -> Proxy {
        Proxy {
            pool: Arc::new(Pool::new(settings.upstream, settings.idle_timeout)),
            host: HeaderValue::try_from(settings.upstream.to_string())
                .expect("a socket address is a valid header value"),
            forwarded: Forwarded::default(),
            max_body: settings.max_body,
            stream_idle_timeout: settings.stream_idle_timeout,
            forwarded_proto: settings.forwarded_proto,
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
}

impl App for Proxy {
    async fn call(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let upgrade = wants_websocket(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        if !origin_form(&mut parts.uri, &mut parts.headers) {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_uri",
                "the request target is not a valid path",
            );
        }
        let keep_upgrade = if upgrade {
            parts.headers.get(header::UPGRADE).cloned()
        } else {
            None
        };
        strip_hop_by_hop(&mut parts.headers, true, keep_upgrade);
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, self.host.clone());
        }
        self.forwarded
            .add(&mut parts.headers, peer.ip(), self.forwarded_proto);
        let body: Body = if hyper::body::Body::is_end_stream(&body) {
            // No body (a GET): nothing to stream, no allocation.
            empty()
        } else {
            // The client's own body errors are told apart from the upstream's.
            let body = body.map_err(ClientBodyError);
            match self.max_body {
                Some(max) => Limited::new(body, max as usize).boxed(),
                None => body.map_err(|e| Box::new(e) as BoxError).boxed(),
            }
        };
        if upgrade {
            let tunnel = parts.extensions.remove::<Tunnel>();
            return self
                .upgrade(parts, body, client_upgrade.zip(tunnel), peer)
                .await;
        }
        let (resp, sender) = match self.send(parts, body).await {
            Ok(sent) => sent,
            Err(e) => return upstream_error(&e, peer, self.max_body),
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false, None);
        let pool = Some(self.pool.clone());
        let body = PoolBody::new(body, sender, pool, self.stream_idle_timeout);
        Response::from_parts(parts, Body::new(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local HTTP/1.1 server that answers every request with its
    /// connection's number, keeping connections open.
    async fn numbered_server() -> SocketAddr {
        use hyper_util::rt::TokioIo;
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
                        Ok::<_, std::convert::Infallible>(Response::new(crate::http::full(
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

    fn proxy(upstream: SocketAddr, idle_timeout: Duration) -> Proxy {
        Proxy::new(Settings {
            upstream,
            idle_timeout,
            max_body: None,
            stream_idle_timeout: None,
            forwarded_proto: "http",
        })
    }

    async fn start(p: &Proxy) -> PoolBody {
        let (parts, _) = Request::get("/").body(()).unwrap().into_parts();
        let (resp, sender) = p.send(parts, crate::http::full("")).await.unwrap();
        PoolBody::new(resp.into_body(), sender, Some(p.pool.clone()), None)
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
        let p = proxy(addr, Duration::from_millis(300));
        assert_eq!(get(&p).await, "0");
        assert_eq!(get(&p).await, "0", "an idle connection is reused");
        // Two at once: the second needs a new connection; both go back.
        let (a, b) = (start(&p).await, start(&p).await);
        assert_eq!(p.pool.idle_len(), 0);
        assert_eq!(finish(b).await, "1");
        assert_eq!(finish(a).await, "0");
        assert_eq!(p.pool.idle_len(), 2);
        // LIFO: the last returned is taken first.
        assert_eq!(get(&p).await, "0");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(&p).await, "2", "expired connections are not reused");
        assert_eq!(p.pool.idle_len(), 1);
    }

    #[tokio::test]
    async fn an_unfinished_body_drops_its_connection() {
        let addr = numbered_server().await;
        let p = proxy(addr, Duration::from_secs(5));
        let (parts, _) = Request::get("/").body(()).unwrap().into_parts();
        let (resp, sender) = p.send(parts, crate::http::full("")).await.unwrap();
        drop(PoolBody::new(
            resp.into_body(),
            sender,
            Some(p.pool.clone()),
            None,
        ));
        assert_eq!(p.pool.idle_len(), 0);
        assert_eq!(get(&p).await, "1");
    }

    #[tokio::test]
    async fn refused_connect_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let p = proxy(addr, Duration::from_secs(1));
        let (parts, _) = Request::get("/").body(()).unwrap().into_parts();
        let e = p.send(parts, crate::http::full("")).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Connect(_)), "{e}");
        let peer = "127.0.0.1:1".parse().unwrap();
        let resp = upstream_error(&e, peer, None);
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            resp.extensions().get(),
            Some(&crate::http::metrics::UpstreamFailure::Connect),
            "marked for the metrics"
        );
    }
}
