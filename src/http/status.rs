//! The opt-in status page (`--status-path`): lifecycle state, child pid,
//! uptime, requests, admission (`--max-concurrency`), and the child tree's
//! memory and CPU (sysinfo).
//!
//! Owns: the page and the figures logged at each lifecycle change. Must
//! not: be served unless asked for; it is off by default so that nothing new
//! is exposed on the API port.

use hyper::StatusCode;
use serde_json::json;

use super::admission::Admission;
use super::{json, Body, Counters};
use crate::lifecycle::Lifecycle;
use crate::supervisor::tree::Tree;

/// The status page.
#[derive(Debug, Default)]
pub struct StatusPage;

impl StatusPage {
    /// The page as JSON.
    pub fn answer(
        &self,
        lifecycle: &Lifecycle,
        counters: &Counters,
        admission: Option<&Admission>,
    ) -> hyper::Response<Body> {
        json(
            StatusCode::OK,
            &self.figures(lifecycle, counters, admission),
        )
    }

    /// The figures: state, pids, uptime, requests and the process tree
    /// below us (the child and its workers).
    pub fn figures(
        &self,
        lifecycle: &Lifecycle,
        counters: &Counters,
        admission: Option<&Admission>,
    ) -> serde_json::Value {
        let tree = Tree::below(nix::unistd::getpid(), true);
        let now = lifecycle.snapshot();
        let admission = admission.map(|a| {
            let f = a.figures();
            json!({
                "max_concurrency": f.settings.max_concurrency,
                "max_queue": f.settings.max_queue,
                "queue_timeout_ms": f.settings.queue_timeout.as_millis() as u64,
                "running": f.running,
                "queued": f.queued,
                "rejected": {
                    "queue_full": f.queue_full,
                    "queue_timeout": f.queue_timeout,
                    "stopping": f.stopping,
                },
                "client_gone": f.client_gone,
            })
        });
        json!({
            "state": now.state.as_str(),
            "pid": std::process::id(),
            "child_pid": now.child_pid,
            "restarts": now.restarts,
            "last_exit": now.last_exit.map(|s| s.to_string()),
            "uptime_ms": lifecycle.started().elapsed().as_millis() as u64,
            "requests_in_flight": counters.in_flight(),
            "requests_served": counters.served(),
            "admission": admission,
            "tls_failures": counters.tls_failures(),
            "tree": {
                "processes": tree.len(),
                "rss_bytes": tree.rss_bytes(),
                "cpu_time_ms": tree.cpu_time_ms(),
            },
        })
    }
}

/// Logs the figures at every lifecycle change, until the process exits.
pub async fn log_changes(page: std::sync::Arc<super::Front<impl super::App>>) {
    let mut rx = page.lifecycle.subscribe();
    while rx.changed().await.is_ok() {
        if let Some(status) = &page.status {
            let f = status.figures(&page.lifecycle, &page.counters, page.admission.as_deref());
            tracing::info!(
                state = %f["state"].as_str().unwrap_or(""),
                child_pid = f["child_pid"].as_i64(),
                requests_in_flight = f["requests_in_flight"].as_u64(),
                requests_served = f["requests_served"].as_u64(),
                tree_processes = f["tree"]["processes"].as_u64(),
                tree_rss_bytes = f["tree"]["rss_bytes"].as_u64(),
                tree_cpu_time_ms = f["tree"]["cpu_time_ms"].as_u64(),
                "status"
            );
        }
    }
}
