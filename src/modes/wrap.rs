//! Wrap mode: the child behind the front (or alone, with `--no-proxy`),
//! driven by the stop timeline.
//!
//! Owns: the order of start-up (signals before the child, the port before
//! the child, the child before the probe) and the exit code. Must not:
//! decide when to stop; the timeline does.

use std::sync::Arc;

use crate::config::WrapConfig;
use crate::error::Error;
use crate::http::{fronts, proxy::Proxy, server, Front};
use crate::lifecycle;
use crate::supervisor::{reaper, signals, Supervised};
use crate::timeline::{self, Processes};

pub(super) async fn run(config: WrapConfig) -> Result<u8, Error> {
    let (lifecycle, feed) = lifecycle::channel();
    // Signals first: a SIGCHLD or SIGTERM between spawn and here would
    // otherwise be lost.
    let mut signals = signals::listen()?;
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
            let proxy = || Proxy::new(p.proxy);
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
    let (mut procs, pid) = Supervised::start(config.child.clone(), config.signal_group)?;
    let served = match front {
        Some((listener, front, extra, probe)) => {
            tokio::spawn(probe.run(lifecycle.clone(), front.answered.clone()));
            match fronts::start_fronts(listener, front, extra) {
                Ok(served) => Some(served),
                Err(e) => {
                    // No front (no thread could start): the child must not
                    // outlive us unsupervised, holding its port.
                    procs.signal_leftovers(Some(pid), libc::SIGKILL);
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                    return Err(e);
                }
            }
        }
        None => {
            // Without a front there is no readiness to probe: a running
            // child is as ready as we can tell.
            lifecycle.report_ready(true);
            None
        }
    };
    let code = timeline::run(
        config.timeline,
        Some(pid),
        procs,
        &mut signals,
        feed,
        served.clone(),
    )
    .await;
    if let Some(served) = served {
        let _ = tokio::time::timeout(fronts::FRONT_GRACE, served).await;
    }
    // The handlers stay until we exit: unregistering ~60 of them one by
    // one (signal-hook copies its table at each step) cost a third of the
    // whole start-up-and-exit time of `--no-proxy -- true` (bench/init.sh).
    std::mem::forget(signals);
    Ok(code)
}
