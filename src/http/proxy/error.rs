//! Why a proxied request got no answer, and the JSON answer the client gets
//! for it: blaming the right party.
//!
//! Owns: [`UpstreamError`], [`ClientBodyError`] and their mapping to 502
//! (the upstream's fault, marked with its [`UpstreamFailure`] kind for the
//! metrics), 400 and 413 (the client's). Must not: retry.

use std::net::SocketAddr;

use hyper::{Response, StatusCode};

use crate::error::Chain;
use crate::http::client::ClientError;
use crate::http::metrics::UpstreamFailure;
use crate::http::{error, too_large, Body};
use crate::logging::throttled;

/// The client's own request body failed: a bad chunk size, or a body
/// shorter than its Content-Length (the client went away).
#[derive(Debug, thiserror::Error)]
#[error("the client's request body is malformed or cut short")]
pub(crate) struct ClientBodyError(#[source] pub(crate) hyper::Error);

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

/// Whose fault a failed call was, found in the error's causes.
enum Blame<'a> {
    /// The body was over --max-body.
    TooLarge,
    /// The client's body was broken, as this error says.
    Client(&'a ClientBodyError),
    Upstream,
}

fn blame(e: &UpstreamError) -> Blame<'_> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return Blame::TooLarge;
        }
        if let Some(client) = s.downcast_ref::<ClientBodyError>() {
            return Blame::Client(client);
        }
        source = s.source();
    }
    Blame::Upstream
}

/// The JSON answer for a failed upstream call from `peer`.
pub(super) fn upstream_error(
    e: &UpstreamError,
    peer: SocketAddr,
    max_body: Option<u64>,
) -> Response<Body> {
    match blame(e) {
        Blame::TooLarge => {
            let max = max_body.unwrap_or(0);
            throttled!(info, client = %peer, limit = max,
                "request refused with 413: its chunked body went over --max-body");
            too_large(max)
        }
        Blame::Client(body) => {
            throttled!(info, client = %peer, error = %Chain(body),
                "request refused with 400: the client's body is malformed or cut short");
            error(
                StatusCode::BAD_REQUEST,
                "bad_request_body",
                "the request body is malformed (a bad chunk) or shorter than its Content-Length",
            )
        }
        Blame::Upstream => {
            let (failure, mut resp) = match e {
                UpstreamError::Connect(_) => {
                    throttled!(warn, error = %Chain(e), "upstream refused the connection: answering 502");
                    (UpstreamFailure::Connect, error(
                        StatusCode::BAD_GATEWAY,
                        "upstream_unavailable",
                        "the upstream server refused the connection; is it listening on --upstream?",
                    ))
                }
                UpstreamError::Http(_) => {
                    throttled!(warn, error = %Chain(e), "upstream request failed: answering 502");
                    (
                        UpstreamFailure::Connection,
                        error(
                            StatusCode::BAD_GATEWAY,
                            "upstream_error",
                            "the upstream server closed the connection or sent an invalid response",
                        ),
                    )
                }
            };
            resp.extensions_mut().insert(failure);
            resp
        }
    }
}
