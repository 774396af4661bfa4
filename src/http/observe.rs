//! What the front notes of each request it lets through its own paths:
//! the figures for `--metrics-path` and the line for `--access-log`.
//!
//! Owns: one [`Observer`] per front (shared series, the routes), and per
//! request its start, route and the app's part of the time. Must not:
//! exist when both flags are off (the front then reads no clock for it),
//! or allocate per request for the metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Request, Response};

use super::access_log::{self, Noted};
use super::metrics::{Metrics, Slot, UpstreamFailure};
use super::Body;

/// The metrics and the access log of a front and its siblings.
#[derive(Debug, Clone)]
pub(crate) struct Observer {
    /// The routes (and, with `--metrics-path`, the series).
    pub(crate) metrics: Arc<Metrics>,
    /// Whether the series are kept (`--metrics-path`).
    pub(crate) record: bool,
    pub(crate) access_log: bool,
}

/// What the front tells of a request once it is answered.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The app's part of the time, if the request reached it.
    pub(crate) upstream: Option<Duration>,
    /// Answered on one of our own paths (`/health`, the metrics...): in
    /// the access log (route `front`), not in the request metrics.
    pub(crate) own_path: bool,
}

/// One request on its way.
#[derive(Debug)]
pub(crate) struct Exchange {
    started: Instant,
    slot: Slot,
    noted: Option<Noted>,
}

impl Observer {
    /// A request arrived: its start, its route, and for the access log its
    /// id (given to the request if it had none).
    pub(crate) fn begin<B>(&self, req: &mut Request<B>) -> Exchange {
        Exchange {
            started: Instant::now(),
            slot: self.metrics.slot(req.method(), req.uri().path()),
            noted: self.access_log.then(|| access_log::note(req)),
        }
    }

    /// Its answer is ready: the figures, the line.
    pub(crate) fn end(
        &self,
        ex: Exchange,
        resp: &Response<Body>,
        outcome: &Outcome,
        peer: SocketAddr,
    ) {
        let total = ex.started.elapsed();
        let upstream = outcome.upstream;
        if self.record && !outcome.own_path {
            self.metrics.record(ex.slot, resp.status(), total, upstream);
            if let Some(failure) = resp.extensions().get::<UpstreamFailure>() {
                self.metrics.failed(*failure);
            }
        }
        if let Some(noted) = ex.noted {
            let route = match outcome.own_path {
                true => "front",
                false => self.metrics.route(ex.slot),
            };
            access_log::write(noted, peer, route, resp.status(), total, upstream);
        }
    }
}
