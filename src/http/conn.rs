//! The clock of one client connection: the keep-alive and slowloris cut,
//! the R9 warning, `--request-timeout`, and answering an open request when
//! the child has exited.
//!
//! Owns: [`ConnClock`], shared by the connection's task (`server`, which
//! owns the one timer of the connection) and the request being served on it
//! (`Front::handle`); the socket wrapper that tells it when an answer is
//! being written is `io::Io`.
//!
//! Why one timer per connection and none per request: the timers, the
//! lifecycle subscription and hyper's own header-read timer cost a timer
//! registration (and a lock) each per request, which showed in the proxy
//! benchmark. Here a request costs two clock reads and a few relaxed
//! atomics: HTTP/1 serves one request at a time on a connection, so the
//! request's start time lives in the clock, and the connection's timer
//! visits it at least every [`ConnClock::tick`]. The request future reads
//! what the timer decided each time hyper polls it, which the connection's
//! task does right after the timer fires (both live in that one task).
//!
//! A WebSocket tunnel (`proxy::upgrade`) outlives hyper's connection: the
//! connection's task waits for it (see [`Tunnel`]), so that a tunnel keeps
//! its place under `--max-connections`, is never taken for idle, and is
//! waited for by the stop like any open connection.
//!
//! Rules, in the terms of R7 and R9:
//! - a connection with no request in progress and nothing written for
//!   `--keep-alive` (200 s) is closed; a client that has not finished its
//!   request head by then counts as idle (the slowloris cut), and reading
//!   bytes never counts as activity;
//! - a request still running after 60 s is logged once as a warning;
//! - with `--request-timeout`, a request running that long is answered 504.
//!
//! Must not: decide answers (`Front` does) or touch the lifecycle.

use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU64, AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::Duration;

use tokio::time::Instant;

use super::PLATFORM_REQUEST_LIMIT;

/// What the timer decided about the request in progress, for it to act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Running for 60 s (R9): log a warning, go on.
    Warn,
    /// Past `--request-timeout`: answer 504.
    Timeout,
    /// The child has exited: answer 503.
    Exited,
}

const WARN: u8 = 1;
const WARNED: u8 = 2;
const TIMEOUT: u8 = 4;

/// What the timer does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Sleep until then and ask again.
    At(Instant),
    /// Idle for the keep-alive: close the connection.
    Close,
}

/// The shared clock of one connection.
#[derive(Debug)]
pub struct ConnClock {
    opened: Instant,
    keep_alive: Duration,
    request_timeout: Option<Duration>,
    /// Milliseconds since `opened`, plus one, at which the request in
    /// progress started; 0 when none is.
    request_started: AtomicU64,
    /// Milliseconds since `opened` of the last request's start or end.
    last_active: AtomicU64,
    /// Set by [`Io`] on each write; the timer takes it as activity.
    wrote: AtomicBool,
    /// The request's WARN, WARNED and TIMEOUT bits.
    request_flags: AtomicU8,
    /// A response has left `Front` and its head is not written yet.
    head_pending: AtomicBool,
    /// A response body is being sent.
    streaming: AtomicBool,
    exited: AtomicBool,
    /// Closed to make room for a new connection (`--max-connections`).
    evict: tokio::sync::Notify,
    evicted: AtomicBool,
    /// The client's socket, for [`ConnClock::peer_closed`]; -1 if unknown.
    socket: AtomicI32,
    /// A tunnel (WebSocket) is open on the connection.
    tunnel: AtomicBool,
    tunnel_closed: tokio::sync::Notify,
}

impl ConnClock {
    pub fn new(keep_alive: Duration, request_timeout: Option<Duration>) -> ConnClock {
        ConnClock {
            opened: Instant::now(),
            keep_alive,
            request_timeout,
            request_started: AtomicU64::new(0),
            last_active: AtomicU64::new(0),
            wrote: AtomicBool::new(false),
            request_flags: AtomicU8::new(0),
            head_pending: AtomicBool::new(false),
            streaming: AtomicBool::new(false),
            exited: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
            evicted: AtomicBool::new(false),
            socket: AtomicI32::new(-1),
            tunnel: AtomicBool::new(false),
            tunnel_closed: tokio::sync::Notify::new(),
        }
    }

    /// Notes the client's socket, for [`ConnClock::peer_closed`].
    pub fn set_socket(&self, fd: std::os::fd::RawFd) {
        self.socket.store(fd, Relaxed);
    }

    /// Whether the client has closed its side (or reset the connection),
    /// even with request bytes still unread: hyper notices a closed
    /// connection only when it reads, and it does not read while a request
    /// body waits for the app (a request held in the admission queue). One
    /// `poll(2)` with no wait; false when the socket is unknown. (A client
    /// that leaves while its body is still on the way is not seen: TCP
    /// sends its FIN after the data, which waits for us to read.)
    pub fn peer_closed(&self) -> bool {
        let fd = self.socket.load(Relaxed);
        if fd < 0 {
            return false;
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the socket stays open while a request
        // on it is served (hyper owns both, and drops the socket first).
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 1 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// The longest the timer sleeps: a request that starts while it sleeps
    /// is visited in time for its first deadline.
    fn tick(&self) -> Duration {
        let limit = PLATFORM_REQUEST_LIMIT.min(self.keep_alive);
        self.request_timeout.map_or(limit, |t| limit.min(t))
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.opened).as_millis() as u64
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// A request's head has arrived; the returned guard marks its end.
    pub fn begin(&self) -> RequestGuard<'_> {
        self.begin_at(Instant::now())
    }

    fn begin_at(&self, at: Instant) -> RequestGuard<'_> {
        let now = self.millis(at);
        self.request_flags.store(0, Relaxed);
        self.last_active.store(now, Relaxed);
        self.request_started.store(now + 1, Relaxed);
        RequestGuard(self)
    }

    fn end_at(&self, at: Instant) {
        self.request_started.store(0, Relaxed);
        self.last_active.store(self.millis(at), Relaxed);
    }

    /// What the request in progress must act on now, if anything. A
    /// warning is handed out once.
    pub fn event(&self) -> Option<Event> {
        if self.exited.load(Relaxed) {
            return Some(Event::Exited);
        }
        let flags = self.request_flags.load(Relaxed);
        if flags & TIMEOUT != 0 {
            Some(Event::Timeout)
        } else if flags & WARN != 0 {
            self.request_flags.fetch_and(!WARN, Relaxed);
            Some(Event::Warn)
        } else {
            None
        }
    }

    /// A response has been handed to hyper, which writes its head next.
    pub fn response_ready(&self) {
        self.head_pending.store(true, Relaxed);
    }

    /// The child has exited: the request in progress, if any, is answered
    /// 503 the next time it is polled.
    pub fn set_exited(&self) {
        self.exited.store(true, Relaxed);
    }

    /// [`super::io::Io`] writes to the socket: activity for the timer;
    /// whether a response of ours was waiting for its head (else the write
    /// is one of hyper's own answers).
    pub(super) fn wrote(&self) -> bool {
        self.wrote.store(true, Relaxed);
        self.head_pending.swap(false, Relaxed)
    }

    /// A response body starts being sent.
    pub fn stream_started(&self) {
        self.streaming.store(true, Relaxed);
    }

    /// The response body has been sent (or dropped).
    pub fn stream_ended(&self) {
        self.streaming.store(false, Relaxed);
        self.last_active.store(self.millis(Instant::now()), Relaxed);
    }

    /// Since when the connection has been idle: no request in progress, no
    /// answer being sent. `None` when busy.
    pub fn idle_since(&self) -> Option<Instant> {
        let busy = self.request_started.load(Relaxed) != 0
            || self.streaming.load(Relaxed)
            || self.head_pending.load(Relaxed)
            || self.evicted.load(Relaxed)
            || self.tunnel.load(Relaxed);
        (!busy).then(|| self.at(self.last_active.load(Relaxed)))
    }

    /// Asks the connection to close (it is the one idle the longest and a
    /// new client needs its slot).
    pub fn evict(&self) {
        self.evicted.store(true, Relaxed);
        self.evict.notify_one();
    }

    /// Resolves once [`ConnClock::evict`] was called.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Resolves once no tunnel is open on the connection (at once if none
    /// ever was).
    pub async fn tunnel_closed(&self) {
        loop {
            let closed = self.tunnel_closed.notified();
            let mut closed = std::pin::pin!(closed);
            closed.as_mut().enable();
            if !self.tunnel.load(Acquire) {
                return;
            }
            closed.await;
        }
    }

    /// Whether the child has exited (see [`ConnClock::set_exited`]).
    pub fn is_exited(&self) -> bool {
        self.exited.load(Relaxed)
    }

    /// The timer fired at `now`: flags what is due and says when to look
    /// again, or that the connection has been idle for the keep-alive.
    pub fn on_timer(&self, now: Instant) -> Next {
        let now_ms = self.millis(now);
        let mut next = now_ms + self.tick().as_millis() as u64;
        let started = self.request_started.load(Relaxed);
        if started != 0 {
            let started = started - 1;
            let age = now_ms.saturating_sub(started);
            let flags = self.request_flags.load(Relaxed);
            let limit = PLATFORM_REQUEST_LIMIT.as_millis() as u64;
            if flags & WARNED == 0 {
                if age >= limit {
                    self.request_flags.fetch_or(WARN | WARNED, Relaxed);
                } else {
                    next = next.min(started + limit);
                }
            }
            if let Some(timeout) = self.request_timeout.map(|t| t.as_millis() as u64) {
                if age >= timeout {
                    self.request_flags.fetch_or(TIMEOUT, Relaxed);
                } else {
                    next = next.min(started + timeout);
                }
            }
            return Next::At(self.at(next));
        }
        if self.wrote.swap(false, Relaxed) {
            self.last_active.store(now_ms, Relaxed);
        }
        let idle_until = self.last_active.load(Relaxed) + self.keep_alive.as_millis() as u64;
        if now_ms >= idle_until {
            Next::Close
        } else {
            Next::At(self.at(next.min(idle_until)))
        }
    }

    /// When the timer first fires.
    pub fn first_deadline(&self) -> Instant {
        self.opened + self.tick()
    }
}

/// The right to open a tunnel on a connection: put in an upgrade
/// request's extensions by the connection's task, taken by the proxy.
#[derive(Clone, Debug)]
pub(crate) struct Tunnel(pub(crate) std::sync::Arc<ConnClock>);

impl Tunnel {
    /// The tunnel is open until the guard is dropped: the connection's
    /// task (its slot under `--max-connections`, its place in the stop)
    /// waits for that.
    pub(crate) fn open(self) -> TunnelGuard {
        self.0.tunnel.store(true, Release);
        TunnelGuard(self.0)
    }
}

/// Held by a tunnel's task while it runs.
#[derive(Debug)]
pub(crate) struct TunnelGuard(std::sync::Arc<ConnClock>);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.tunnel.store(false, Release);
        self.0.tunnel_closed.notify_waiters();
    }
}

/// Marks the end of the request in progress when dropped.
pub struct RequestGuard<'a>(&'a ConnClock);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.end_at(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn idle_connection_closes_after_the_keep_alive() {
        let c = ConnClock::new(ms(200_000), None);
        let t0 = c.opened;
        // Never more than the 60 s tick between visits.
        assert_eq!(c.first_deadline(), t0 + ms(60_000));
        assert_eq!(c.on_timer(t0 + ms(60_000)), Next::At(t0 + ms(120_000)));
        assert_eq!(c.on_timer(t0 + ms(180_000)), Next::At(t0 + ms(200_000)));
        assert_eq!(c.on_timer(t0 + ms(200_000)), Next::Close);
    }

    #[test]
    fn writes_and_requests_keep_it_open() {
        let c = ConnClock::new(ms(1_000), None);
        let t0 = c.opened;
        c.wrote.store(true, Relaxed);
        assert_eq!(c.on_timer(t0 + ms(900)), Next::At(t0 + ms(1_900)));
        assert_eq!(c.on_timer(t0 + ms(1_900)), Next::Close);
        // A request in progress is never cut, however long it runs; the
        // keep-alive counts from its end.
        let guard = c.begin_at(t0 + ms(2_000));
        assert_eq!(c.on_timer(t0 + ms(10_000)), Next::At(t0 + ms(11_000)));
        std::mem::forget(guard);
        c.end_at(t0 + ms(10_200));
        assert_eq!(c.on_timer(t0 + ms(11_000)), Next::At(t0 + ms(11_200)));
        assert_eq!(c.on_timer(t0 + ms(11_200)), Next::Close);
    }

    #[test]
    fn warns_once_at_60_s_and_times_out() {
        let c = ConnClock::new(ms(200_000), Some(ms(90_000)));
        let t0 = c.opened;
        let _guard = c.begin_at(t0 + ms(5_000));
        assert_eq!(c.on_timer(t0 + ms(30_000)), Next::At(t0 + ms(65_000)));
        assert_eq!(c.event(), None);
        assert_eq!(c.on_timer(t0 + ms(65_000)), Next::At(t0 + ms(95_000)));
        assert_eq!(c.event(), Some(Event::Warn));
        assert_eq!(c.event(), None);
        assert_eq!(c.on_timer(t0 + ms(95_000)), Next::At(t0 + ms(155_000)));
        assert_eq!(c.event(), Some(Event::Timeout));
        assert_eq!(c.on_timer(t0 + ms(155_000)), Next::At(t0 + ms(215_000)));
        assert_eq!(c.event(), Some(Event::Timeout), "the warning comes once");
        c.set_exited();
        assert_eq!(c.event(), Some(Event::Exited));
    }
}
