//! Protocol upgrades (WebSocket) through the proxy.
//!
//! Owns: an upgrade request's own upstream connection, which becomes the
//! tunnel if the upstream agrees (101), and copying bytes both ways until
//! either side closes, holding the client connection's [`Tunnel`] open
//! meanwhile (so that it counts as an open, busy connection). Must not:
//! pool that connection.

use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::error::{upstream_error, UpstreamError};
use super::headers::strip_hop_by_hop;
use super::pool::PoolBody;
use super::Proxy;
use crate::http::conn::Tunnel;
use crate::http::Body;

impl Proxy {
    /// Sends an upgrade request on a connection of its own; on 101, joins
    /// the client's and the upstream's upgraded connections.
    pub(super) async fn upgrade(
        &self,
        parts: hyper::http::request::Parts,
        body: Body,
        client_upgrade: Option<(hyper::upgrade::OnUpgrade, Tunnel)>,
        peer: std::net::SocketAddr,
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
            Err(e) => return upstream_error(&e, peer, self.max_body),
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some((client_upgrade, tunnel)) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                // Open before the 101 goes out, so that the connection's
                // task sees it when hyper hands the socket over.
                let open = tunnel.open();
                tokio::spawn(async move {
                    let _open = open;
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((c, u)) => {
                            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %crate::error::Chain(&e), "websocket upgrade failed")
                        }
                    }
                });
                let (parts, _) = resp.into_parts();
                return Response::from_parts(parts, crate::http::full(""));
            }
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false, None);
        let body = PoolBody::new(body, sender, None, self.stream_idle_timeout);
        Response::from_parts(parts, Body::new(body))
    }
}
