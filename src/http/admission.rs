//! Admission control in front of the app (`--max-concurrency`,
//! `--max-queue`, `--queue-timeout`), as Knative's queue-proxy does it: an
//! inference server that can run N requests at a time gets at most N, the
//! next M wait their turn in order, the rest are refused at once, so that
//! a burst does not pile up in the server's own backlog where every
//! request waits and nothing is refused.
//!
//! Owns: the slots (one FIFO-fair semaphore shared by every serving
//! thread), the bounded queue and its figures, the 503 answers of a
//! refusal, and holding a slot until the answer's body is sent (a
//! WebSocket gives its slot back with the 101: a tunnel is not a
//! request). A queued request leaves the queue when it is admitted, when
//! its time is up, when the stop begins (Stopping: the answer is 503 at
//! once), when its client goes away, or when its future is dropped (the
//! connection closed): the semaphore's waiter and the queue count are
//! released on drop. Must not: decide the request timeout (the
//! connection's clock does; queue time counts toward it).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::ConnClock;
use super::metrics::{Histogram, Reading};
use super::{error, stopping, Body, Guarded};
use crate::lifecycle::{Lifecycle, State};
use crate::logging::Throttle;

/// How often a queued request looks whether its client is still there.
const CLIENT_CHECK: Duration = Duration::from_millis(100);

/// `--max-concurrency`, `--max-queue`, `--queue-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_concurrency: u32,
    pub max_queue: u32,
    pub queue_timeout: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// N run and M wait already.
    QueueFull,
    /// It waited `--queue-timeout`.
    Timeout,
    /// The stop began while it waited.
    Stopping,
    /// Its client closed the connection while it waited.
    ClientGone,
}

/// The slots and the queue, shared by every serving thread.
#[derive(Debug)]
pub struct Admission {
    settings: Settings,
    slots: Arc<Semaphore>,
    queued: AtomicU64,
    /// How long the requests that had to wait waited.
    waited: Histogram,
    /// By [`Refusal`], in its order.
    refused: [AtomicU64; 4],
}

/// What the status page and the metrics show.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) settings: Settings,
    pub(crate) running: u64,
    pub(crate) queued: u64,
    pub(crate) waited: Reading,
    pub(crate) queue_full: u64,
    pub(crate) queue_timeout: u64,
    pub(crate) stopping: u64,
    pub(crate) client_gone: u64,
}

impl Admission {
    pub fn new(settings: Settings) -> Admission {
        Admission {
            settings,
            slots: Arc::new(Semaphore::new(settings.max_concurrency as usize)),
            queued: AtomicU64::new(0),
            waited: Histogram::default(),
            refused: Default::default(),
        }
    }

    /// A slot for one request: at once if one is free, else after the
    /// requests queued before it, within `--queue-timeout`.
    pub(crate) async fn admit(
        &self,
        lifecycle: &Lifecycle,
        clock: &ConnClock,
    ) -> Result<OwnedSemaphorePermit, Refusal> {
        // A permit released while others wait goes to the first of them,
        // so this never jumps the queue.
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let result = self.wait(lifecycle, clock).await;
        if let Err(refusal) = result {
            self.refused[refusal as usize].fetch_add(1, Relaxed);
        }
        result
    }

    async fn wait(
        &self,
        lifecycle: &Lifecycle,
        clock: &ConnClock,
    ) -> Result<OwnedSemaphorePermit, Refusal> {
        let _in_queue = Queued::join(&self.queued);
        if _in_queue.depth > u64::from(self.settings.max_queue) {
            return Err(Refusal::QueueFull);
        }
        let since = Instant::now();
        let mut stop = lifecycle.subscribe();
        let stopping = stop.wait_for(|s| s.state >= State::Stopping);
        let client_gone = async {
            let mut every = tokio::time::interval(CLIENT_CHECK);
            loop {
                every.tick().await;
                if clock.peer_closed() {
                    return;
                }
            }
        };
        let result = tokio::select! {
            biased;
            slot = self.slots.clone().acquire_owned() => slot.map_err(|_| Refusal::Stopping),
            _ = stopping => Err(Refusal::Stopping),
            _ = tokio::time::sleep(self.settings.queue_timeout) => Err(Refusal::Timeout),
            _ = client_gone => Err(Refusal::ClientGone),
        };
        self.waited.observe(since.elapsed());
        result
    }

    pub(crate) fn figures(&self) -> Figures {
        let free = self.slots.available_permits() as u64;
        let n = |r: Refusal| self.refused[r as usize].load(Relaxed);
        Figures {
            settings: self.settings,
            running: u64::from(self.settings.max_concurrency).saturating_sub(free),
            queued: self.queued.load(Relaxed),
            waited: self.waited.read(),
            queue_full: n(Refusal::QueueFull),
            queue_timeout: n(Refusal::Timeout),
            stopping: n(Refusal::Stopping),
            client_gone: n(Refusal::ClientGone),
        }
    }

    /// The answer to a refused request.
    pub(crate) fn refused(&self, refusal: Refusal) -> Response<Body> {
        static LOG: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(crate::logging::LOG_EVERY));
        let Settings {
            max_concurrency: n,
            max_queue: m,
            queue_timeout,
        } = self.settings;
        let message = match refusal {
            Refusal::QueueFull => format!(
                "{n} requests are running and {m} are waiting (--max-concurrency, --max-queue); retry shortly or on another instance"
            ),
            Refusal::Timeout => format!(
                "no slot came free within the queue timeout of {} ms; retry shortly or on another instance",
                queue_timeout.as_millis()
            ),
            Refusal::Stopping => return stopping(),
            // Nobody reads this answer; 499 is nginx's "client closed
            // request", for the access log and the metrics.
            Refusal::ClientGone => {
                let mut resp = error(
                    StatusCode::BAD_REQUEST,
                    "client_closed",
                    "the client closed the connection while its request waited",
                );
                *resp.status_mut() = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
                return resp;
            }
        };
        if let Some(suppressed) = LOG.allow() {
            let f = self.figures();
            tracing::warn!(
                reason = ?refusal,
                running = f.running,
                queued = f.queued,
                max_concurrency = n,
                max_queue = m,
                suppressed,
                "overloaded: request refused with 503 (--max-concurrency, --max-queue, --queue-timeout)"
            );
        }
        let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", &message);
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    }
}

/// One place in the queue, given back when dropped, however the wait
/// ends (a dropped future included).
struct Queued<'a> {
    count: &'a AtomicU64,
    /// The queue's length with this one.
    depth: u64,
}

impl<'a> Queued<'a> {
    fn join(count: &'a AtomicU64) -> Queued<'a> {
        let depth = count.fetch_add(1, Relaxed) + 1;
        Queued { count, depth }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
    }
}

/// `resp` holding `slot` until its body has been sent (or dropped); a 101
/// (WebSocket) gives it back at once: the tunnel is not a request.
pub(crate) fn hold(resp: Response<Body>, slot: Option<OwnedSemaphorePermit>) -> Response<Body> {
    match slot {
        Some(slot) if resp.status() != StatusCode::SWITCHING_PROTOCOLS => {
            resp.map(|inner| Body::new(Guarded::new(inner, slot)))
        }
        _ => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle;
    use futures_util::FutureExt;

    fn admission(n: u32, m: u32, timeout_ms: u64) -> Arc<Admission> {
        Arc::new(Admission::new(Settings {
            max_concurrency: n,
            max_queue: m,
            queue_timeout: Duration::from_millis(timeout_ms),
        }))
    }

    fn clock() -> ConnClock {
        ConnClock::new(Duration::from_secs(200), None)
    }

    #[tokio::test]
    async fn n_run_m_wait_in_order_and_the_rest_are_refused() {
        let a = admission(1, 2, 10_000);
        let (life, _feed) = lifecycle::channel();
        let c = clock();
        let first = a.admit(&life, &c).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..2 {
            let (mine, life, order) = (a.clone(), life.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let slot = mine.admit(&life, &clock()).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(slot);
            }));
            // Each is queued before the next one comes.
            while a.figures().queued < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(a.admit(&life, &c).await.unwrap_err(), Refusal::QueueFull);
        let f = a.figures();
        assert_eq!((f.running, f.queued, f.queue_full), (1, 2, 1));
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1], "first come, first served");
        let f = a.figures();
        assert_eq!((f.running, f.queued, f.waited.count()), (0, 0, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_no_longer_than_the_queue_timeout() {
        let a = admission(1, 1, 500);
        let (life, _feed) = lifecycle::channel();
        let c = clock();
        let _busy = a.admit(&life, &c).await.unwrap();
        let t0 = tokio::time::Instant::now();
        assert_eq!(a.admit(&life, &c).await.unwrap_err(), Refusal::Timeout);
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        let f = a.figures();
        assert_eq!((f.queued, f.queue_timeout), (0, 1));
        let resp = a.refused(Refusal::Timeout);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_queue() {
        let a = admission(1, 1, 10_000);
        let (life, _feed) = lifecycle::channel();
        let c = clock();
        let busy = a.admit(&life, &c).await.unwrap();
        {
            let wait = a.admit(&life, &c);
            tokio::pin!(wait);
            assert!(wait.as_mut().now_or_never().is_none());
            assert_eq!(a.figures().queued, 1);
        }
        assert_eq!(a.figures().queued, 0, "the dropped request left the queue");
        drop(busy);
        // Its place in the semaphore's queue is gone too: the slot is free.
        let again = a.admit(&life, &c);
        tokio::pin!(again);
        assert!(again.as_mut().now_or_never().is_some());
    }

    #[test]
    fn a_101_gives_its_slot_back_and_other_answers_keep_it() {
        let a = admission(1, 0, 10_000);
        let take = || a.slots.clone().try_acquire_owned().ok();
        let mut ws = Response::new(crate::http::full(""));
        *ws.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let ws = hold(ws, take());
        assert_eq!(a.slots.available_permits(), 1);
        let ok = hold(Response::new(crate::http::full("x")), take());
        assert_eq!(
            a.slots.available_permits(),
            0,
            "held while the body is sent"
        );
        drop(ok);
        assert_eq!(a.slots.available_permits(), 1);
        drop(ws);
    }
}
