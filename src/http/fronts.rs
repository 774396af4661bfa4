//! Starting fronts: the accept loop on this runtime, and more serving
//! threads, each on a single-threaded runtime of its own.
//!
//! Owns: the threads and the future that says when every front has
//! stopped. Must not: answer requests (`Front`) or accept (`server`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};

use super::{limit, server, status, App, Front};
use crate::error::Error;

/// How long, after the timeline ends, open connections get to send the
/// answers they still owe (503s) before the process exits.
pub const FRONT_GRACE: Duration = Duration::from_millis(500);

/// Starts serving `front` (and, with a status page, logging its figures at
/// each lifecycle change). The returned future resolves once the front has
/// stopped and every connection is closed; it can be awaited more than once.
pub fn start_front<A: App>(
    listener: tokio::net::TcpListener,
    front: Arc<Front<A>>,
) -> Shared<BoxFuture<'static, ()>> {
    let max = connection_limit(&front, 1);
    serve_here(listener, front, max)
}

/// Raises the open-files limit and logs the connection limit it allows;
/// returns each of `threads` fronts' share.
fn connection_limit<A>(front: &Front<A>, threads: usize) -> usize {
    if let Some((_, served)) = front.config.tls.as_ref().and_then(|t| t.layer.as_ref()) {
        tracing::info!(listen = %front.config.listen, "TLS on the listener (HTTPS, WSS): serving {served}");
    }
    server::raise_nofile_limit();
    let (max, nofile) = limit::connection_limit(front.config.max_connections);
    match nofile {
        Some(nofile) => tracing::info!(max_connections = max, open_files_limit = nofile,
            "connection limit: (open-files limit - {}) / 2; past it, idle connections are closed to make room", limit::RESERVED_FDS),
        None => tracing::info!(max_connections = max, "connection limit (--max-connections)"),
    }
    max.div_ceil(threads).max(1)
}

fn serve_here<A: App>(
    listener: tokio::net::TcpListener,
    front: Arc<Front<A>>,
    max_connections: usize,
) -> Shared<BoxFuture<'static, ()>> {
    if front.status.is_some() {
        tokio::spawn(status::log_changes(front.clone()));
    }
    tokio::spawn(server::serve(listener, front, max_connections))
        .map(|done| {
            if let Err(e) = done {
                front_died(&e.to_string());
            }
        })
        .boxed()
        .shared()
}

/// `start_front`, plus one thread per `extra` listener serving its front
/// on a single-threaded runtime of its own (nginx's worker model: no work
/// moves between threads). Resolves once every thread's front has stopped.
pub(crate) fn start_fronts<A: App>(
    listener: tokio::net::TcpListener,
    front: Arc<Front<A>>,
    extra: Vec<(std::net::TcpListener, Arc<Front<A>>)>,
) -> Result<Shared<BoxFuture<'static, ()>>, Error> {
    let max = connection_limit(&front, 1 + extra.len());
    let mut done = vec![serve_here(listener, front, max).boxed()];
    for (n, (listener, front)) in extra.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let os = |source| Error::Os {
            what: "cannot start a proxy thread",
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(os)?;
        std::thread::Builder::new()
            .name(format!("proxy-{}", n + 1))
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => server::serve(listener, front, max).await,
                        Err(e) => tracing::error!(error = %e, "proxy thread cannot listen"),
                    }
                });
                let _ = tx.send(());
            })
            .map_err(os)?;
        done.push(
            rx.map(|sent| {
                if sent.is_err() {
                    front_died("its thread ended early");
                }
            })
            .boxed(),
        );
    }
    Ok(futures_util::future::join_all(done)
        .map(|_| ())
        .boxed()
        .shared())
}

/// A front that ends on its own (not at a stop) is a bug: say so where the
/// logs are read, since the panic's text goes to stderr only.
fn front_died(why: &str) {
    tracing::error!(
        why,
        "a serving thread of the HTTP front died (a bug): its connections are gone"
    );
}
