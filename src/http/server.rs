//! The accept loop on port 8080: connections, keep-alive and the graceful
//! stop.
//!
//! Owns: the listener and every client connection, each in a task of its
//! own with one timer, driven by its `conn::ConnClock`: the 200 s
//! keep-alive of rule R7 and the slowloris cut (a client that has not sent
//! a whole request head for that long is dropped), the R9 warning and the
//! request timeout. hyper's own per-request header timer is not used.
//! `--max-connections` bounds the connections we hold (see `limit`): at the
//! limit the one idle the longest is closed to make room; when all are
//! busy, more wait in the kernel's backlog.
//!
//! The stop follows the lifecycle: nothing changes while Draining (R8 wants
//! service to go on, and closing idle keep-alive connections now would break
//! the balancer's reused ones); at Stopping the listener closes, idle
//! connections close, in-flight requests finish and are answered with
//! `Connection: close`. A WebSocket tunnel keeps its connection's task,
//! and with it the connection's place under the limit and in the stop,
//! until the tunnel closes (the child's stop closes its end). Must not:
//! answer requests itself (`Front` does).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use super::conn::{ConnClock, Next, Tunnel};
use super::io::Io;
use super::limit::{Episode, Registry};
use super::{App, Front, Guarded, MAX_HEADER_BYTES};
use crate::error::Error;
use crate::lifecycle::State;

/// Binds the listener. Done before the child is spawned, so that the port
/// answers (with 503 from `/health`) from the first moment.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    bind_socket(addr, false)
}

/// `n` listeners on the same address, one per serving thread: with
/// SO_REUSEPORT the kernel spreads new connections over them. The extra
/// ones come back as std listeners, for the threads' own runtimes.
pub(crate) fn bind_shared(
    addr: SocketAddr,
    n: usize,
) -> Result<(TcpListener, Vec<std::net::TcpListener>), Error> {
    if n <= 1 {
        return Ok((bind(addr)?, Vec::new()));
    }
    let first = bind_socket(addr, true)?;
    let bound = first.local_addr().map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let extra = (1..n)
        .map(|_| {
            bind_socket(bound, true)?
                .into_std()
                .map_err(|source| Error::Bind {
                    addr: bound.to_string(),
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    Ok((first, extra))
}

fn bind_socket(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener, Error> {
    let bind_err = |source| Error::Bind {
        addr: addr.to_string(),
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    socket.set_reuseaddr(true).map_err(bind_err)?;
    if reuse_port {
        socket.set_reuseport(true).map_err(bind_err)?;
    }
    socket.bind(addr).map_err(bind_err)?;
    socket.listen(1024).map_err(bind_err)
}

/// Serves `front` on `listener` until the lifecycle reaches Stopping, then
/// stops accepting and returns once every open connection has finished.
/// At most `max_connections` connections are open at once: at the limit,
/// the one idle the longest is closed to make room for a new client; when
/// none is idle, new clients wait in the kernel's backlog.
pub(crate) async fn serve<A: App>(
    listener: TcpListener,
    front: Arc<Front<A>>,
    max_connections: usize,
) {
    let mut builder = http1::Builder::new();
    // No hyper timer: without one hyper arms no header-read timer of its
    // own per request; the connection's clock does that job.
    builder.keep_alive(true).max_buf_size(4 * MAX_HEADER_BYTES);
    // Each connection's task holds a receiver: `closed()` below waits for
    // the last one to end.
    let open = tokio::sync::watch::Sender::new(());
    let slots = Arc::new(Semaphore::new(max_connections));
    let registry = Arc::new(Registry::default());
    let (mut at_limit, mut failing) = (Episode::default(), Episode::default());
    let mut state = front.lifecycle.subscribe();

    loop {
        let stopping = state.wait_for(|s| s.state >= State::Stopping);
        let accepted = tokio::select! {
            biased;
            _ = stopping => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                if let Some((ms, failed, _)) = failing.end() {
                    tracing::info!(failed, over_ms = ms, "accepting connections again");
                }
                a
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the
                // connection stays in the backlog.
                failing.first += 1;
                if failing.begin() {
                    tracing::warn!(error = %e, "cannot accept connections (logged once until it works again)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                if let Some((ms, closed, waited)) = at_limit.end() {
                    tracing::info!(
                        max_connections,
                        idle_closed = closed,
                        waited,
                        over_ms = ms,
                        "below the connection limit again"
                    );
                }
                slot
            }
            Err(_) => {
                if registry.evict_idlest() {
                    at_limit.first += 1;
                } else {
                    at_limit.second += 1;
                }
                if at_limit.begin() {
                    tracing::warn!(max_connections,
                        "connection limit reached: closing the connections idle the longest to make room (--max-connections)");
                }
                // Wait for a slot: the evicted connection's, one that
                // closes, or one that goes idle meanwhile (asked to close).
                let stopping = state.wait_for(|s| s.state >= State::Stopping);
                let wait = async {
                    loop {
                        let freed = tokio::time::timeout(
                            Duration::from_millis(50),
                            slots.clone().acquire_owned(),
                        );
                        match freed.await {
                            Ok(slot) => break slot.ok(),
                            Err(_) => {
                                if registry.evict_idlest() {
                                    at_limit.first += 1;
                                }
                            }
                        }
                    }
                };
                tokio::select! {
                    biased;
                    _ = stopping => break,
                    slot = wait => match slot {
                        Some(slot) => slot,
                        None => break,
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(ConnClock::new(
            front.config.keep_alive,
            front.config.request_timeout,
        ));
        clock.set_socket(std::os::fd::AsRawFd::as_raw_fd(&stream));
        let id = registry.add(clock.clone());
        let done = (open.subscribe(), slot, registry.clone());
        let (builder, front) = (builder.clone(), front.clone());
        tokio::spawn(async move {
            match front
                .config
                .tls
                .as_ref()
                .and_then(|t| t.layer.as_ref().map(|l| (t, l)))
            {
                None => serve_connection(&builder, stream, peer, front.clone(), clock).await,
                Some((tls, (layer, _))) => {
                    // The handshake runs here, in the connection's task, so
                    // that a slow one holds up nobody else; past its timeout
                    // (or for a plain-HTTP client, or no common cipher) the
                    // connection is closed and counted, and logged only at
                    // debug: any client can cause it at will.
                    let handshake = layer.handshake(stream);
                    match tokio::time::timeout(tls.handshake_timeout, handshake).await {
                        Ok(Ok(tls)) => {
                            serve_connection(&builder, tls, peer, front.clone(), clock).await
                        }
                        failed => {
                            front.shard.tls_failures.fetch_add(1, Ordering::Relaxed);
                            match failed {
                                Ok(Err(e)) => {
                                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed")
                                }
                                _ => tracing::debug!(client = %peer, "TLS handshake timed out"),
                            }
                        }
                    }
                }
            }
            let (_open, _slot, registry) = done;
            registry.remove(id);
        });
    }
    drop(listener);
    tracing::info!(
        connections = open.receiver_count(),
        "stopped accepting; finishing open connections"
    );
    open.closed().await;
    tracing::info!("all client connections closed");
}

/// Serves one client connection (plain TCP or TLS) to its end: polls
/// hyper's connection, fires the clock's timer, and follows the lifecycle
/// (at Stopping, no more requests on it: hyper closes it once idle; at
/// Exited, the open request is answered 503). hyper-util's
/// GracefulShutdown does not take upgradeable connections, so each
/// connection follows the lifecycle itself. Errors from hyper are the
/// client's (reset, bad request); hyper has answered what it could.
async fn serve_connection<A, S>(
    builder: &http1::Builder,
    stream: S,
    peer: SocketAddr,
    front: Arc<Front<A>>,
    clock: Arc<ConnClock>,
) where
    A: App,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut lifecycle = front.lifecycle.subscribe();
    // Seen first thing, in case the stop came between the accept and this
    // subscription.
    lifecycle.mark_changed();
    let service = {
        let clock = clock.clone();
        service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let (front, clock) = (front.clone(), clock.clone());
            // An upgrade request (hyper left its OnUpgrade there) may
            // become a tunnel that outlives hyper's connection.
            if req
                .extensions()
                .get::<hyper::upgrade::OnUpgrade>()
                .is_some()
            {
                req.extensions_mut().insert(Tunnel(clock.clone()));
            }
            async move {
                let resp = front.handle(req, peer, &clock).await;
                clock.response_ready();
                Ok::<_, std::convert::Infallible>(
                    resp.map(|body| Guarded::new(body, Streaming::new(clock))),
                )
            }
        })
    };
    let conn = builder
        .serve_connection(Io::new(TokioIo::new(stream), clock.clone()), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(clock.first_deadline()));
    // Made once: a new one per turn of the loop would register with the
    // Notify (under its lock) at every wake-up.
    let mut evicted = std::pin::pin!(clock.evicted());
    loop {
        // After the timer or the lifecycle, the loop polls the connection
        // again, and with it the request, which acts on the clock's events.
        tokio::select! {
            biased;
            _ = conn.as_mut() => break,
            _ = timer.as_mut() => match clock.on_timer(tokio::time::Instant::now()) {
                Next::At(deadline) => timer.as_mut().reset(deadline),
                Next::Close => break,
            },
            _ = evicted.as_mut() => break,
            changed = lifecycle.changed(), if !clock.is_exited() => {
                // A closed channel means the timeline is over.
                let state = match changed {
                    Ok(()) => lifecycle.borrow_and_update().state,
                    Err(_) => State::Exited,
                };
                if state >= State::Stopping {
                    // Idempotent: no more requests on this connection;
                    // hyper closes it once idle.
                    conn.as_mut().graceful_shutdown();
                }
                if state == State::Exited {
                    clock.set_exited();
                }
            }
        }
    }
    // hyper is done with the socket; a tunnel may still run on it.
    clock.tunnel_closed().await;
}

/// Tells its connection's clock while an answer is being sent (kept by
/// the answer's body until it is sent or dropped), so that a connection
/// streaming an answer (server-sent events) is never taken for idle.
struct Streaming(Arc<ConnClock>);

impl Streaming {
    fn new(clock: Arc<ConnClock>) -> Streaming {
        clock.stream_started();
        Streaming(clock)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.stream_ended();
    }
}

/// Raises the soft open-files limit to the hard one, so that
/// `--max-connections` is not cut short by the default of 1024. Called
/// after the child is spawned: the child keeps the limits it was given.
pub(crate) fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit");
            }
        }
    }
}
