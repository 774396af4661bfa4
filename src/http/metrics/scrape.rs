//! One scrape of `--metrics-path`: everything read at that moment and
//! encoded in the OpenMetrics text format by prometheus-client (only its
//! encoder is used; the series are ours).
//!
//! Owns: the metric names and help texts, and reading what is not on the
//! request path: the lifecycle, the admission figures, the child tree's
//! memory and CPU (sysinfo, as the status page reads them) and our own
//! (/proc/self). Must not: run unless scraped.

use std::fmt;
use std::sync::Arc;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Metrics, Reason, UpstreamFailure};
use crate::http::admission::{self, Admission};
use crate::http::{error, full, Body, Counters};
use crate::lifecycle::{Lifecycle, State};
use crate::supervisor::tree::Tree;

const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to a scrape.
pub(crate) fn answer(
    metrics: &Arc<Metrics>,
    lifecycle: &Lifecycle,
    counters: &Counters,
    admission: Option<&Admission>,
) -> Response<Body> {
    let figures = Figures::read(metrics.clone(), lifecycle, counters, admission);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(figures));
    let mut text = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics_failed",
            "the metrics could not be encoded",
        );
    }
    let mut resp = Response::new(full(text));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT));
    resp
}

/// Everything one scrape shows.
#[derive(Debug)]
struct Figures {
    metrics: Arc<Metrics>,
    in_flight: u64,
    state: State,
    restarts: u32,
    admission: Option<admission::Figures>,
    tree_processes: u64,
    tree_rss_bytes: u64,
    tree_cpu_seconds: f64,
    own: Option<Own>,
}

/// Our own process, from /proc/self.
#[derive(Debug, Clone, Copy)]
struct Own {
    rss_bytes: u64,
    cpu_seconds: f64,
}

impl Figures {
    fn read(
        metrics: Arc<Metrics>,
        lifecycle: &Lifecycle,
        counters: &Counters,
        admission: Option<&Admission>,
    ) -> Figures {
        let tree = Tree::below(nix::unistd::getpid(), true);
        let now = lifecycle.snapshot();
        Figures {
            metrics,
            in_flight: counters.in_flight(),
            state: now.state,
            restarts: now.restarts,
            admission: admission.map(Admission::figures),
            tree_processes: tree.len() as u64,
            tree_rss_bytes: tree.rss_bytes(),
            tree_cpu_seconds: tree.cpu_time_ms() as f64 / 1e3,
            own: own(),
        }
    }
}

/// Resident memory and CPU time of this process.
fn own() -> Option<Own> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces: state is
    // field 3, utime and stime fields 14 and 15.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks: u64 = rest.next()?.parse::<u64>().ok()? + rest.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads configuration and has no preconditions.
    let (page, hz) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    Some(Own {
        rss_bytes: pages * page.max(1) as u64,
        cpu_seconds: ticks as f64 / hz.max(1) as f64,
    })
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn counter_f64(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: impl EncodeGaugeValue,
) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

impl Collector for Figures {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        self.requests(&mut e)?;
        gauge(
            &mut e,
            "modelarts_init_requests_in_flight",
            "Requests being served by the front now, those waiting for a slot included.",
            self.in_flight as i64,
        )?;
        if let Some(a) = &self.admission {
            self.queue(&mut e, a)?;
        }
        self.rejections(&mut e)?;
        self.lifecycle(&mut e)?;
        self.processes(&mut e)
    }
}

impl Figures {
    fn requests(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let mut m = e.encode_descriptor(
            "modelarts_init_requests",
            "Requests answered, by route (config.json's apis, else other), method and status class; the front's own answers (503s, 4xx) included, health probes and scrapes not.",
            None,
            MetricType::Counter,
        )?;
        for (route, method, class, total, _) in self.metrics.readings() {
            let labels = [("route", route), ("method", method), ("class", class)];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&total.count(), None)?;
        }
        let histograms = [
            (
                "modelarts_init_request_duration_seconds",
                "From the request head to the answer's head, queue time included.",
                true,
            ),
            (
                "modelarts_init_upstream_duration_seconds",
                "The app's part: from sending the request upstream to its answer's head.",
                false,
            ),
        ];
        for (name, help, total) in histograms {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (route, method, class, t, u) in self.metrics.readings() {
                let r = if total { t } else { u };
                if r.count() == 0 {
                    continue;
                }
                let labels = [("route", route), ("method", method), ("class", class)];
                m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    r.sum_seconds(),
                    r.count(),
                    &r.buckets(),
                    None,
                )?;
            }
        }
        Ok(())
    }

    fn queue(&self, e: &mut DescriptorEncoder, a: &admission::Figures) -> fmt::Result {
        gauge(
            e,
            "modelarts_init_max_concurrency",
            "Requests the app may run at once (--max-concurrency).",
            i64::from(a.settings.max_concurrency),
        )?;
        gauge(
            e,
            "modelarts_init_upstream_in_flight",
            "Requests admitted and running in the app now.",
            a.running as i64,
        )?;
        gauge(
            e,
            "modelarts_init_queue_depth",
            "Requests waiting for a slot now (at most --max-queue).",
            a.queued as i64,
        )?;
        e.encode_descriptor(
            "modelarts_init_queue_wait_seconds",
            "How long the requests that had to wait for a slot waited.",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            a.waited.sum_seconds(),
            a.waited.count(),
            &a.waited.buckets(),
            None,
        )?;
        counter(
            e,
            "modelarts_init_client_gone_in_queue",
            "Requests whose client closed the connection while they waited for a slot.",
            a.client_gone,
        )
    }

    fn rejections(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let mut m = e.encode_descriptor(
            "modelarts_init_rejected",
            "Requests answered 503 without reaching the app, by reason.",
            None,
            MetricType::Counter,
        )?;
        let queued = self.admission.as_ref();
        for reason in Reason::ALL {
            let mut n =
                self.metrics.rejected[reason as usize].load(std::sync::atomic::Ordering::Relaxed);
            n += queued.map_or(0, |a| match reason {
                Reason::QueueFull => a.queue_full,
                Reason::QueueTimeout => a.queue_timeout,
                Reason::Stopping => a.stopping,
                Reason::NotReady => 0,
            });
            m.encode_family(&[("reason", reason.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        let mut m = e.encode_descriptor(
            "modelarts_init_upstream_errors",
            "Requests the app gave no answer to, by kind: connect (refused), connection (broken or not HTTP), timeout (--request-timeout), exited (the child exited first).",
            None,
            MetricType::Counter,
        )?;
        for kind in UpstreamFailure::ALL {
            let n = self.metrics.failures[kind as usize].load(std::sync::atomic::Ordering::Relaxed);
            m.encode_family(&[("kind", kind.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        Ok(())
    }

    fn lifecycle(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let mut m = e.encode_descriptor(
            "modelarts_init_state",
            "The lifecycle state: 1 for the current one.",
            None,
            MetricType::Gauge,
        )?;
        for s in State::ALL {
            m.encode_family(&[("state", s.as_str())])?
                .encode_gauge(&i64::from(s == self.state))?;
        }
        counter(
            e,
            "modelarts_init_child_restarts",
            "Times the child was started again (--restart).",
            u64::from(self.restarts),
        )
    }

    fn processes(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            e,
            "modelarts_init_child_tree_processes",
            "Processes below modelarts-init: the child and its workers.",
            self.tree_processes as i64,
        )?;
        gauge(
            e,
            "modelarts_init_child_tree_resident_memory_bytes",
            "Resident memory of the processes below modelarts-init.",
            self.tree_rss_bytes as i64,
        )?;
        counter_f64(
            e,
            "modelarts_init_child_tree_cpu_seconds",
            "CPU time used by the processes below modelarts-init that are alive now.",
            self.tree_cpu_seconds,
        )?;
        if let Some(own) = self.own {
            gauge(
                e,
                "modelarts_init_resident_memory_bytes",
                "Resident memory of modelarts-init itself.",
                own.rss_bytes as i64,
            )?;
            counter_f64(
                e,
                "modelarts_init_cpu_seconds",
                "CPU time used by modelarts-init itself.",
                own.cpu_seconds,
            )?;
        }
        Ok(())
    }
}
