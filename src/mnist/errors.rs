//! Every answer that is not a digit: its status, its JSON code and
//! message, and its log line.
//!
//! Owns: `Refusal` (each kind of failure, and who is to blame: 4xx for the
//! client's upload, 5xx for us), its JSON answer, and logging it at info
//! (4xx) or warn (5xx) with the reason and the client's address, at most
//! `LINES_PER_SECOND` lines a second (the others are counted and the count
//! is logged with the next line), so that a flood of bad uploads cannot
//! flood the log. Must not: log on the success path, or put internals
//! (tract's error, a panic) in an answer: they go to the log.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::header::{HeaderValue, ALLOW};
use hyper::{Response, StatusCode};
use modelarts_init::http::{error, Body};
use modelarts_init::imaging::decode::DecodeError;

use crate::pipeline::Failure;

/// Why a request got no digit.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("POST an image to / (the only API path)")]
    NotFound,
    #[error("use POST / with a multipart field \"images\"")]
    MethodNotAllowed,
    #[error("expected a multipart/form-data body with a field named \"images\" (curl -F images=@digit.jpg)")]
    NotMultipart,
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    #[error("no field named \"images\" in the form (curl -F images=@digit.jpg)")]
    NoImage,
    #[error("the \"images\" field is empty")]
    Empty,
    #[error("the upload exceeds {0} bytes (--max-image-bytes)")]
    TooLarge(u64),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("no digit found in the image")]
    NoDigit,
    #[error("the model is still loading")]
    NotReady,
    /// Our fault; `cause` goes to the log only.
    #[error("internal error while classifying the image (logged); please report it")]
    Internal { cause: String },
}

impl From<Failure> for Refusal {
    fn from(f: Failure) -> Refusal {
        match f {
            Failure::Decode(e) => Refusal::Decode(e),
            Failure::NoDigit => Refusal::NoDigit,
            other => Refusal::Internal {
                cause: other.to_string(),
            },
        }
    }
}

impl Refusal {
    /// The status and the JSON `error` code.
    pub fn status(&self) -> (StatusCode, &'static str) {
        use DecodeError as D;
        match self {
            Refusal::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Refusal::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Refusal::NotMultipart => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_multipart"),
            Refusal::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_multipart"),
            Refusal::NoImage => (StatusCode::BAD_REQUEST, "no_image"),
            Refusal::Empty => (StatusCode::BAD_REQUEST, "empty_image"),
            Refusal::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large"),
            Refusal::Decode(D::Unsupported) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format")
            }
            Refusal::Decode(D::Corrupt(_)) => (StatusCode::BAD_REQUEST, "corrupt_image"),
            Refusal::Decode(D::TooManyPixels { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_many_pixels")
            }
            Refusal::Decode(D::TooMuchMemory { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_much_memory")
            }
            Refusal::Decode(D::TooManyScans { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_many_scans")
            }
            Refusal::NoDigit => (StatusCode::UNPROCESSABLE_ENTITY, "no_digit"),
            Refusal::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Refusal::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The JSON answer, logged (rate-limited by `log`).
    pub fn answer(&self, peer: SocketAddr, log: &LogLimit) -> Response<Body> {
        let (status, code) = self.status();
        if let Some(suppressed) = log.admit() {
            match self {
                Refusal::Internal { cause } => tracing::warn!(
                    status = status.as_u16(), error = code, peer = %peer, cause = %cause,
                    suppressed, "answered 500: {self}"
                ),
                _ if status.is_server_error() => tracing::warn!(
                    status = status.as_u16(), error = code, peer = %peer, suppressed,
                    "refused: {self}"
                ),
                _ => tracing::info!(
                    status = status.as_u16(), error = code, peer = %peer, suppressed,
                    "refused: {self}"
                ),
            }
        }
        let mut resp = error(status, code, &self.to_string());
        if let Refusal::MethodNotAllowed = self {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
        }
        resp
    }
}

/// Most refusal lines logged per second.
pub const LINES_PER_SECOND: u32 = 20;

/// A one-second window of log lines.
#[derive(Debug)]
pub struct LogLimit {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    lines: u32,
    /// Lines dropped since the last one logged.
    suppressed: u64,
}

impl Default for LogLimit {
    fn default() -> LogLimit {
        LogLimit {
            window: Mutex::new(Window {
                start: Instant::now(),
                lines: 0,
                suppressed: 0,
            }),
        }
    }
}

impl LogLimit {
    /// Whether a line may be logged now: `Some(lines dropped before it)`,
    /// or `None` (then it is counted as dropped).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            w.start = now;
            w.lines = 0;
        }
        if w.lines < LINES_PER_SECOND {
            w.lines += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_rate_and_the_rest_counted() {
        let log = LogLimit::default();
        let t0 = Instant::now();
        let logged = (0..1000).filter(|_| log.admit_at(t0).is_some()).count();
        assert_eq!(logged, LINES_PER_SECOND as usize);
        // the next second's first line carries the count of the dropped
        let next = t0 + Duration::from_secs(1);
        assert_eq!(log.admit_at(next), Some(1000 - LINES_PER_SECOND as u64));
        assert_eq!(log.admit_at(next), Some(0));
    }

    #[test]
    fn each_kind_blames_the_right_party() {
        let pixels = Refusal::Decode(DecodeError::TooManyPixels {
            width: 16384,
            height: 16384,
            limit: 40_000_000,
        });
        assert_eq!(pixels.status().0, StatusCode::PAYLOAD_TOO_LARGE);
        let model = Refusal::from(Failure::Model(crate::model::RunError("boom".into())));
        assert_eq!(model.status().0, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !model.to_string().contains("boom"),
            "internals stay in the log"
        );
        assert_eq!(Refusal::from(Failure::Panic).status().1, "internal");
        assert_eq!(
            Refusal::from(Failure::NoDigit).status().0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
