//! Keep-alive connections to the one upstream, and the response body that
//! gives its connection back.
//!
//! Owns: the pool. One fixed upstream, so no keys, and no task of its own.
//! Idle connections are a LIFO stack (the most recently used is the one
//! most surely still open, and the others can age out). A connection goes
//! back on the stack only when its response body has ended cleanly and
//! hyper has not closed it; a response the client gave up on, an error or
//! an upgrade (the connection becomes the tunnel) drops it, which closes it
//! and ends its driver task. A connection is taken only if hyper says it is
//! ready for the next request; a busy one is left where it is. A connection
//! idle for longer than `--upstream-idle-timeout` (1 s, below gunicorn's
//! 2 s) is never reused: its age is checked when it is taken. Must not:
//! send requests (`super` does) or retry.
//!
//! Why our own pool and not hyper-util's: see bench/README.md (a LIFO stack
//! without a task or a timer per connection cost less CPU per request).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::future::Future;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use super::UpstreamError;
use crate::http::{client, lock, Body, BoxError};

/// How long we wait for the upstream to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keep-alive connections to the one upstream.
pub(super) struct Pool {
    pub(super) addr: SocketAddr,
    idle_timeout: Duration,
    /// Idle connections, the most recently returned at the back.
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    pub(super) fn new(addr: SocketAddr, idle_timeout: Duration) -> Pool {
        Pool {
            addr,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// How many connections are idle now.
    #[cfg(test)]
    pub(super) fn idle_len(&self) -> usize {
        lock(&self.idle).len()
    }

    /// The most recently used idle connection that is ready for a request
    /// and has not been idle too long, if any, and how long it was idle.
    /// Closed and expired ones are dropped on the way; busy ones (hyper not
    /// ready yet) stay.
    pub(super) fn checkout(&self) -> Option<(SendRequest<Body>, Duration)> {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let mut busy = Vec::new();
        let mut expired = VecDeque::new();
        let mut found = None;
        while let Some(c) = idle.pop_back() {
            if now.saturating_duration_since(c.since) > self.idle_timeout {
                // Everything below it has been idle longer still.
                expired = std::mem::take(&mut *idle);
                break;
            }
            if c.sender.is_ready() {
                found = Some((c.sender, now.saturating_duration_since(c.since)));
                break;
            }
            if !c.sender.is_closed() {
                busy.push(c);
            }
        }
        idle.extend(busy.into_iter().rev());
        drop(idle);
        drop(expired);
        found
    }

    /// Puts a connection whose response has ended back on the stack, and
    /// drops those idle too long at the bottom of it.
    fn checkin(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let mut expired = Vec::new();
        while let Some(c) = idle.front() {
            if now.saturating_duration_since(c.since) <= self.idle_timeout {
                break;
            }
            expired.extend(idle.pop_front());
        }
        idle.push_back(Idle { sender, since: now });
        drop(idle);
        drop(expired);
    }

    /// A new connection, its driver spawned.
    pub(super) async fn connect(&self) -> Result<SendRequest<Body>, UpstreamError> {
        Ok(client::connect(self.addr, CONNECT_TIMEOUT).await?)
    }
}

/// A response body from the upstream that returns its connection to the
/// pool when it has ended cleanly. Dropped before the end (the client went
/// away) or after an error, it drops the connection instead. With a stream
/// idle timeout, a body that sends no data for that long is cut (the head
/// is out, so the client sees its connection close).
pub(super) struct PoolBody {
    inner: Incoming,
    sender: Option<SendRequest<Body>>,
    /// `None`: the connection is never reused (upgrade requests).
    pool: Option<Arc<Pool>>,
    idle: Option<IdleCut>,
}

/// `--stream-idle-timeout`: a timer that runs only while we wait for the
/// upstream (not while a slow client keeps hyper from asking for more),
/// made the first time we do (a body that is there at once, as most are,
/// costs no timer).
struct IdleCut {
    after: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

/// Why a response body was cut.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent no data for {} ms (--stream-idle-timeout)", .0.as_millis())]
struct StreamIdle(Duration);

impl PoolBody {
    pub(super) fn new(
        inner: Incoming,
        sender: SendRequest<Body>,
        pool: Option<Arc<Pool>>,
        idle_timeout: Option<Duration>,
    ) -> PoolBody {
        let idle = idle_timeout.map(|after| IdleCut {
            after,
            timer: None,
            waiting: false,
        });
        let mut body = PoolBody {
            inner,
            sender: Some(sender),
            pool,
            idle,
        };
        // HEAD, 204, 304, empty bodies: hyper may never poll them.
        if hyper::body::Body::is_end_stream(&body.inner) {
            body.ended();
        }
        body
    }

    fn ended(&mut self) {
        if let (Some(sender), Some(pool)) = (self.sender.take(), &self.pool) {
            pool.checkin(sender);
        }
    }
}

impl hyper::body::Body for PoolBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let Some(idle) = &mut this.idle else {
                    return Poll::Pending;
                };
                let deadline = || tokio::time::Instant::now() + idle.after;
                let timer = match &mut idle.timer {
                    Some(timer) => {
                        if !idle.waiting {
                            timer.as_mut().reset(deadline());
                        }
                        timer
                    }
                    None => idle
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline()))),
                };
                idle.waiting = true;
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sender = None;
                let e = StreamIdle(idle.after);
                crate::logging::throttled!(warn, error = %e, "response stream cut: the client's connection is closed");
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.ended();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = &mut this.idle {
                    idle.waiting = false;
                }
                if hyper::body::Body::is_end_stream(&this.inner) {
                    this.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.sender = None;
                crate::logging::throttled!(warn, error = %crate::error::Chain(&e),
                    "upstream response body ended early: the client's connection is closed");
                Poll::Ready(Some(Err(Box::new(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}
