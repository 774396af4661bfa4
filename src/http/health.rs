//! The `/health` answer (R3).
//!
//! Owns: what `/health` says in each lifecycle state. Must not: decide
//! readiness; `probe` does, and the timeline publishes the state.

use hyper::StatusCode;

use super::{json, Body};
use crate::lifecycle::State;

/// `/health`: 200 `{"health": "true"}` only while ready.
pub fn answer(state: State) -> hyper::Response<Body> {
    match state {
        State::Ready => json(StatusCode::OK, &serde_json::json!({"health": "true"})),
        other => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"health": "false", "reason": other.as_str()}),
        ),
    }
}
