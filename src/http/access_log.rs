//! The access log (`--access-log`): one line per request, through the same
//! non-blocking writer as every other line of ours, on its own tracing
//! target ([`TARGET`]) so that `--log-level` can pick it
//! (`warn,modelarts_init::access=info`).
//!
//! Owns: `X-Request-Id` (the client's, else one made here and passed to
//! the upstream) and the line. Must not: run when the flag is off (the
//! front then never calls it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::LazyLock;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};

/// The tracing target of the access lines.
pub const TARGET: &str = "modelarts_init::access";

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the line needs from the request, taken when it arrives.
#[derive(Debug)]
pub(crate) struct Noted {
    method: Method,
    uri: Uri,
    id: HeaderValue,
}

/// Notes `req` and gives it an `X-Request-Id` if it has none, which the
/// upstream then sees too.
pub(crate) fn note<B>(req: &mut Request<B>) -> Noted {
    let id = match req.headers().get(&X_REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let id = new_id();
            req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    Noted {
        method: req.method().clone(),
        uri: req.uri().clone(),
        id,
    }
}

/// Writes the line of one answered request.
pub(crate) fn write(
    noted: Noted,
    peer: SocketAddr,
    route: &str,
    status: StatusCode,
    total: Duration,
    upstream: Option<Duration>,
) {
    let ms = |d: Duration| d.as_micros() as f64 / 1e3;
    tracing::info!(
        target: TARGET,
        client = %peer,
        method = %noted.method,
        path = noted.uri.path(),
        route,
        status = status.as_u16(),
        duration_ms = ms(total),
        upstream_ms = upstream.map(ms),
        request_id = noted.id.to_str().unwrap_or("(not text)"),
        "request"
    );
}

/// A new request id: 16 hex digits, unique in this process and unlikely
/// to repeat across processes (a counter scrambled with a per-process
/// seed).
fn new_id() -> HeaderValue {
    static SEED: LazyLock<u64> = LazyLock::new(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Relaxed);
    let id = format!("{:016x}", splitmix64(SEED.wrapping_add(n)));
    HeaderValue::try_from(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// SplitMix64's finaliser: a bijection, so distinct inputs give distinct
/// ids.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_kept_or_made_and_passed_on() {
        let mut kept = Request::get("/")
            .header("x-request-id", "abc")
            .body(())
            .unwrap();
        assert_eq!(note(&mut kept).id, "abc");
        let mut a = Request::get("/").body(()).unwrap();
        let mut b = Request::get("/").body(()).unwrap();
        let (na, nb) = (note(&mut a), note(&mut b));
        assert_eq!(na.id.len(), 16);
        assert_ne!(na.id, nb.id);
        assert_eq!(a.headers()["x-request-id"], na.id, "the upstream sees it");
    }
}
