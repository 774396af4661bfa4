//! Wrap mode: the child behind the front (or alone, with `--no-proxy`),
//! driven by the stop timeline.
//!
//! Owns: the order of start-up (signals before the child, the port before
//! the child, the child before the probe) and the exit code. Must not:
//! decide when to stop; the timeline does.

use std::sync::Arc;

use futures_util::future::FutureExt;

use crate::config::WrapConfig;
use crate::error::Error;
use crate::http::{fronts, proxy::Proxy, server, Front};
use crate::lifecycle::Lifecycle;
use crate::shutdown;
use crate::supervisor::{reaper, signals, Child, ExitStatus};

pub(super) async fn run(config: WrapConfig) -> Result<u8, Error> {
    let lifecycle = Lifecycle::new();
    // Signals first: a SIGCHLD or SIGTERM between spawn and here would
    // otherwise be lost.
    let signals = signals::listen()?;
    match reaper::become_subreaper_unless_pid1() {
        Ok(true) => tracing::info!(
            pid = std::process::id(),
            "not PID 1: registered as child subreaper"
        ),
        Ok(false) => tracing::info!("running as PID 1"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot become a child subreaper; orphans will go to the real init")
        }
    }
    // The port is bound before the child starts, so that /health answers
    // 503 from the first moment.
    let front = match &config.proxy {
        Some(p) => {
            let (listener, extra) = server::bind_shared(p.front.listen, p.threads)?;
            let proxy = || Proxy::new(p.upstream, p.idle_timeout, p.front.max_body);
            let front = Arc::new(Front::new(p.front.clone(), lifecycle.clone(), proxy()));
            // More serving threads: each its own listener, front and pool.
            let extra: Vec<_> = extra
                .into_iter()
                .map(|l| (l, Arc::new(front.sibling(proxy()))))
                .collect();
            tracing::info!(listen = %p.front.listen, upstream = %p.upstream, health_path = %p.front.health_path, threads = p.threads, "listening");
            Some((listener, front, extra, p.probe.clone()))
        }
        None => None,
    };
    let child = Child::spawn(&config.child, config.signal_group)?;
    let served = match front {
        Some((listener, front, extra, probe)) => {
            if let Some(page) = &front.status {
                page.set_child(child.pid);
            }
            tokio::spawn(probe.run(lifecycle.clone()));
            fronts::start_fronts(listener, front, extra)?
        }
        None => {
            // Without a front there is no readiness to probe: a running
            // child is as ready as we can tell.
            lifecycle.set_ready(true);
            std::future::ready(()).boxed().shared()
        }
    };
    let status = shutdown::run(
        Some(child),
        signals,
        &lifecycle,
        config.timeline,
        served.clone(),
    )
    .await;
    let _ = tokio::time::timeout(fronts::FRONT_GRACE, served).await;
    Ok(exit_code(status))
}

/// The child's status as our exit code. A child we could not even collect
/// after SIGKILL is reported as killed by SIGKILL.
fn exit_code(status: Option<ExitStatus>) -> u8 {
    status
        .unwrap_or(ExitStatus::Signal(libc::SIGKILL))
        .exit_code()
}
