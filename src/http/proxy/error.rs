//! Why the upstream gave no answer, and the JSON answer the client gets
//! for it.
//!
//! Owns: [`UpstreamError`] and its mapping to 502/413. Must not: retry.

use hyper::{Response, StatusCode};

use crate::http::client::ClientError;
use crate::http::{error, too_large, Body};

/// Why the upstream gave no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// No connection (refused, unreachable, timed out).
    #[error("cannot connect to the upstream: {0}")]
    Connect(#[from] ClientError),
    /// The request or response failed on the connection.
    #[error("upstream request failed: {0}")]
    Http(#[from] hyper::Error),
}

/// The JSON answer for a failed upstream call.
pub(super) fn upstream_error(e: &UpstreamError, max_body: Option<u64>) -> Response<Body> {
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
