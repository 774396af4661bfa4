//! The one HTTP/1 client of the crate: the proxy's upstream connections,
//! the readiness probe and the `health` verb all open connections here.
//!
//! Owns: connecting (bounded, no Nagle), hyper's client handshake and its
//! connection driver, a one-shot GET, and errors that say what happened in
//! words a person can act on. Must not: pool, retry or follow redirects;
//! callers decide that.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Body as HttpBody;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Who we are, in the requests we make ourselves (the readiness probe, the
/// `health` verb), so that they can be told apart in an access log.
pub const USER_AGENT: &str = concat!("modelarts-init/", env!("CARGO_PKG_VERSION"));

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No TCP connection: refused, unreachable.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection or the answer took longer than allowed.
    #[error("no answer from {addr} within {} ms", .after.as_millis())]
    TimedOut { addr: String, after: Duration },
    /// The HTTP exchange failed (closed early, invalid answer).
    #[error("HTTP request to {addr} failed: {source}")]
    Http {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    /// The TLS handshake failed (an untrusted certificate, no common
    /// protocol).
    #[error("TLS with {addr} failed: {source}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The URL is not one we can fetch.
    #[error("{0}")]
    Url(String),
}

/// A TCP connection to `addr`, within `timeout`.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(ClientError::Connect {
            addr: addr.to_string(),
            source,
        }),
        Err(_) => Err(ClientError::TimedOut {
            addr: addr.to_string(),
            after: timeout,
        }),
    }
}

/// Opens an HTTP/1 connection to `addr` (TCP within `connect_timeout`) and
/// spawns its driver, with upgrades allowed. The driver ends when the
/// connection closes: when the server closes it, or when the returned
/// sender is dropped while idle or after an unfinished response.
pub async fn connect<B>(
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<SendRequest<B>, ClientError>
where
    B: HttpBody + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tcp(addr, connect_timeout).await?;
    let _ = stream.set_nodelay(true);
    handshake(stream, addr).await
}

/// hyper's client handshake on `stream` (to `addr`), its driver spawned.
async fn handshake<S, B>(stream: S, addr: SocketAddr) -> Result<SendRequest<B>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: HttpBody + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ClientError::Http {
            addr: addr.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// GETs `path` from `addr` on a new connection, with `host` as `Host`, all
/// within `timeout`; returns the status.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<StatusCode, ClientError> {
    within(addr, timeout, async {
        let sender = connect::<Empty<Bytes>>(addr, timeout).await?;
        get_on(sender, addr, host, path).await
    })
    .await
}

/// `fetch` within `timeout`, else a [`ClientError::TimedOut`].
async fn within<T>(
    addr: SocketAddr,
    timeout: Duration,
    fetch: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ClientError::TimedOut {
            addr: addr.to_string(),
            after: timeout,
        })?
}

async fn get_on(
    mut sender: SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<StatusCode, ClientError> {
    let req = Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .body(Empty::new())
        .map_err(|e| ClientError::Url(format!("{path:?}: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|source| ClientError::Http {
            addr: addr.to_string(),
            source,
        })?;
    Ok(resp.status())
}

/// The `health` verb: GETs `url` and returns its status; an https:// URL
/// needs `tls` (see `tls::attach`).
pub async fn get_url(
    url: &str,
    timeout: Duration,
    tls: Option<&dyn crate::http::tls::Connect>,
) -> Result<StatusCode, ClientError> {
    let bad = |what: String| ClientError::Url(format!("{url:?} {what}"));
    let uri: Uri = url.parse().map_err(|e| bad(format!("is not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(bad(
                "is not supported: use an http:// or https:// URL".into()
            ))
        }
    };
    let host = uri.host().ok_or_else(|| bad("has no host".into()))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = format!("{host}:{port}");
    let addr = tokio::net::lookup_host(authority.as_str())
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| bad(format!("names a host that does not resolve: {host}")))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if !https {
        return get(addr, &authority, path, timeout).await;
    }
    let connector = tls.ok_or_else(|| bad("needs TLS, which this binary does not have".into()))?;
    within(addr, timeout, async {
        let stream = tcp(addr, timeout).await?;
        let tls = connector
            .connect(host, stream)
            .await
            .map_err(|e| ClientError::Tls {
                addr: addr.to_string(),
                source: e,
            })?;
        let sender = handshake::<_, Empty<Bytes>>(tls, addr).await?;
        get_on(sender, addr, &authority, path).await
    })
    .await
}
