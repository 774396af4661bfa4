//! Admission control (`--max-concurrency`, `--max-queue`,
//! `--queue-timeout`) against real gunicorn with 2 sync workers and an app
//! that counts its own requests in flight (`tests/py/inflight_app.py`): at
//! most N at the upstream, M waiting, the rest refused at once; the queue
//! timeout and the request timeout; the stop; clients that leave; and
//! WebSockets, which hold no slot.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::front_metrics::Scrape;
use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// modelarts-init `flags` in front of the in-flight app under gunicorn
/// with 2 sync workers, ready; and the app's stats file.
fn start_counting(tag: &str, flags: &[&str]) -> (Front, PathBuf) {
    let (init, dir, listen, upstream) = init_on_free_ports(tag, flags);
    let stats = dir.join("inflight");
    let argv = gunicorn_app_argv(
        &dir,
        upstream,
        &test_apps_dir(),
        "inflight_app:app",
        &["-k", "sync", "-w", "2"],
    );
    let mut f = Front::spawn(init.env("INFLIGHT_FILE", &stats), dir, listen, &argv);
    f.wait_ready("/health");
    let pid = f.gunicorn_pid();
    f.run.track_pid(pid);
    (f, stats)
}

/// [`start_counting`] with one slot (`--max-concurrency 1`), the status
/// page at `/_status`, and `flags`.
fn start_one_slot(tag: &str, flags: &[&str]) -> (Front, PathBuf) {
    let mut all = vec!["--max-concurrency", "1", "--status-path", "/_status"];
    all.extend_from_slice(flags);
    start_counting(tag, &all)
}

/// The app's own figures: (in flight now, most at once, answered).
fn app_stats(stats: &PathBuf) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(stats).unwrap_or_default();
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    match v[..] {
        [now, most, answered, _] => (now, most, answered),
        _ => (0, 0, 0),
    }
}

/// The status page's admission figures.
fn admission(f: &Front) -> Value {
    f.get("/_status").unwrap().json()["admission"].clone()
}

/// Starts `GET path` on a connection of its own; the thread returns the
/// answer and how long it took.
fn request_in_background(
    f: &Front,
    path: &str,
) -> thread::JoinHandle<(std::io::Result<Resp>, Duration)> {
    let (addr, path) = (f.listen, path.to_owned());
    thread::spawn(move || {
        let t0 = Instant::now();
        let r = get(addr, &path);
        (r, t0.elapsed())
    })
}

/// Waits until the status page shows `running` requests in the app and
/// `queued` waiting.
fn wait_admission(f: &Front, running: u64, queued: u64) {
    let mut last = Value::Null;
    let ok = wait_until(secs(10), || {
        last = admission(f);
        last["running"] == running && last["queued"] == queued
    });
    assert!(
        ok,
        "wanted {running} running, {queued} queued: {last}\n{}",
        f.run.dump()
    );
}

/// The case: 20 clients at once, N=2, M=4, on two serving
/// threads, a 200 ms endpoint: the app never sees more than 2 at a time,
/// the excess gets 503 overloaded with Retry-After: 1 at once, and every
/// admitted request is answered by the app (none lost).
#[test]
fn at_most_n_reach_the_upstream_m_wait_and_the_rest_get_503() {
    let (f, stats) = start_counting(
        "admission",
        &[
            "--max-concurrency",
            "2",
            "--max-queue",
            "4",
            "--proxy-threads",
            "2",
            "--metrics-path",
            "/metrics",
            "--status-path",
            "/_status",
        ],
    );
    let barrier = Arc::new(Barrier::new(20));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (addr, barrier) = (f.listen, barrier.clone());
            thread::spawn(move || {
                let mut c = Conn::open(addr).unwrap();
                barrier.wait();
                let t0 = Instant::now();
                let r = c.get("/work?ms=200");
                (r, t0.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let (mut served, mut refused) = (0, 0);
    for (r, took) in &results {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("a client got no answer: {e}\n{}", f.run.dump()));
        match r.status {
            200 => {
                assert_eq!(r.json()["ok"], true, "{}", r.text());
                served += 1;
            }
            503 => {
                r.assert_json_error(503, "overloaded");
                assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
                assert!(*took < ms(150), "refused at once, not after {took:?}");
                refused += 1;
            }
            other => panic!("status {other}: {}", r.text()),
        }
    }
    let (now, most, answered) = app_stats(&stats);
    eprintln!("admission: {served} served, {refused} refused; the app saw at most {most} at once");
    assert!(
        most <= 2,
        "the app saw {most} requests at once\n{}",
        f.run.dump()
    );
    assert_eq!(most, 2, "both workers were used");
    assert!(served >= 6, "N + M = 6 fit at once, {served} were served");
    assert!(refused >= 1, "20 at once cannot all fit in 2 + 4");
    assert_eq!(served + refused, 20);
    assert_eq!(
        (now, answered),
        (0, served),
        "every admitted request reached the app once"
    );
    // The metrics and the status page count the same refusals.
    let s = Scrape::of(&f.url("/metrics"));
    let full = s.get(
        "modelarts_init_rejected_total",
        json!({"reason": "queue_full"}),
    );
    assert_eq!(full, Some(refused as f64));
    assert_eq!(
        s.get(
            "modelarts_init_requests_total",
            json!({"route": "other", "method": "GET", "class": "5xx"})
        ),
        Some(refused as f64)
    );
    assert_eq!(
        s.get("modelarts_init_max_concurrency", json!({})),
        Some(2.0)
    );
    assert_eq!(s.get("modelarts_init_queue_depth", json!({})), Some(0.0));
    let waited = s
        .get("modelarts_init_queue_wait_seconds_count", json!({}))
        .unwrap();
    assert!(waited >= 4.0, "at least M waited: {waited}");
    let page = admission(&f);
    assert_eq!(page["rejected"]["queue_full"], refused, "{page}");
    assert_eq!(
        (page["running"].as_u64(), page["max_queue"].as_u64()),
        (Some(0), Some(4)),
        "{page}"
    );
}

/// With `--max-concurrency 1` and `flags`: a request of `busy_ms` holds the
/// slot, and one of `queued_ms` queued behind it is answered; (the front,
/// that answer, how long it took). The busy one is asserted to succeed.
fn queued_behind_busy(
    tag: &str,
    flags: &[&str],
    busy_ms: u64,
    queued_ms: u64,
) -> (Front, Resp, Duration) {
    let (f, _stats) = start_one_slot(tag, flags);
    let busy = request_in_background(&f, &format!("/work?ms={busy_ms}"));
    wait_admission(&f, 1, 0);
    let (r, took) = request_in_background(&f, &format!("/work?ms={queued_ms}"))
        .join()
        .unwrap();
    assert_eq!(busy.join().unwrap().0.unwrap().status, 200);
    (f, r.unwrap(), took)
}

/// `--queue-timeout`: a request that cannot get a slot in time gets 503
/// overloaded after that long; and queue time counts toward
/// `--request-timeout`: a queued request is answered 504 once its whole
/// time is up, without waiting for the slot.
#[test]
fn queue_timeout_and_request_timeout_count_the_wait() {
    let (f, r, took) = queued_behind_busy("queue-timeout", &["--queue-timeout", "500ms"], 2500, 10);
    r.assert_json_error(503, "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        (ms(450)..ms(2000)).contains(&took),
        "503 after the 500 ms queue timeout, not {took:?}"
    );
    assert_eq!(admission(&f)["rejected"]["queue_timeout"], 1);

    // Queued behind the busy one at ~0 s, admitted at ~0.8 s, and 504 at
    // 1 s from its own start (the app would take 2 s).
    let (_f, r, took) = queued_behind_busy(
        "queue-request-timeout",
        &["--request-timeout", "1s"],
        800,
        2000,
    );
    r.assert_json_error(504, "timeout");
    assert!(
        (ms(900)..ms(1900)).contains(&took),
        "504 at about 1 s, not {took:?}"
    );
}

/// When the stop begins (the child's stop signal, after the drain),
/// queued requests get 503 at once; the request in the app finishes.
#[test]
fn queued_requests_get_503_at_once_at_the_stop() {
    let (f, _stats) = start_one_slot("queue-stop", &["--drain-delay", "1s"]);
    let busy = request_in_background(&f, "/work?ms=3500");
    wait_admission(&f, 1, 0);
    let queued = request_in_background(&f, "/work?ms=10");
    wait_admission(&f, 1, 1);
    let term_at = Instant::now();
    f.sigterm();
    let (r, _) = queued.join().unwrap();
    let answered_after = term_at.elapsed();
    let r = r.unwrap();
    r.assert_json_error(503, "stopping");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        (ms(900)..ms(2500)).contains(&answered_after),
        "503 when the 1 s drain ended, not {answered_after:?}"
    );
    let (r, _) = busy.join().unwrap();
    assert_eq!(
        r.unwrap().status,
        200,
        "the admitted request finished\n{}",
        f.run.dump()
    );
}

/// A queued request whose client goes away leaves the queue at once (a
/// GET or a small POST: hyper sees the closed connection; a 100 kB POST,
/// most of whose body waits unread in the socket, where hyper reads no
/// further: the queue looks at the socket), so the next one takes its
/// place instead of being refused, and none of them reaches the app.
#[test]
fn a_queued_request_whose_client_left_frees_its_place() {
    let (f, stats) = start_one_slot("queue-gone", &["--max-queue", "1"]);
    let busy = request_in_background(&f, "/work?ms=6000");
    wait_admission(&f, 1, 0);
    let big = vec![b'x'; 100_000];
    for (method, body) in [
        ("GET", &b""[..]),
        ("POST", &b"0123456789"[..]),
        ("POST", &big[..]),
    ] {
        let mut c = Conn::open(f.listen).unwrap();
        let head = request_head(method, "/work?ms=10", &[], Some(body.len()));
        c.send(head.as_bytes()).unwrap();
        c.send(body).unwrap();
        wait_admission(&f, 1, 1);
        drop(c);
        wait_admission(&f, 1, 0);
    }
    // The big POST can only be seen leaving by the queue; the other two by
    // hyper or by the queue, whichever looks first (a busy machine decides).
    let gone = admission(&f)["client_gone"].as_u64().unwrap_or(0);
    assert!(
        (1..=3).contains(&gone),
        "the big POST was seen leaving: client_gone = {gone}"
    );
    // The freed place takes a new request, which is served after the busy one.
    let next = request_in_background(&f, "/work?ms=10");
    wait_admission(&f, 1, 1);
    assert_eq!(busy.join().unwrap().0.unwrap().status, 200);
    assert_eq!(next.join().unwrap().0.unwrap().status, 200);
    let (_, _, answered) = app_stats(&stats);
    assert_eq!(answered, 2, "the requests that left never reached the app");
}

/// An open WebSocket holds no slot: with `--max-concurrency 1
/// --max-queue 0`, two WebSockets are open at once and a plain request
/// still reaches the app.
#[test]
fn an_open_websocket_holds_no_slot() {
    let (py, server) = (python(), py_script("ws_echo_server.py"));
    let mut f = spawn_child(
        "ws-slot",
        &["--max-concurrency", "1", "--max-queue", "0"],
        &[py.as_str(), server.as_str()],
    );
    f.wait_ready("/health");
    let go = f.dir.join("go");
    let ws = |n: usize| ws_client(&format!("ws://{}/ws{n}", f.listen), Some(&go));
    let mut first = ws(1);
    assert!(
        wait_until(secs(30), || first.stdout.contains("CONNECTED")),
        "{}",
        first.dump()
    );
    let mut second = ws(2);
    assert!(
        wait_until(secs(30), || second.stdout.contains("CONNECTED")),
        "the second WebSocket was not let in\n{}\n{}",
        second.dump(),
        f.run.dump()
    );
    // The echo server answers a plain GET itself (not 503 overloaded).
    let r = f.get("/plain").unwrap();
    assert_ne!(r.status, 503, "{}", r.text());
    std::fs::write(&go, "").unwrap();
    for c in [&mut first, &mut second] {
        assert_eq!(c.expect_code(secs(30)), 0, "{}", c.dump());
    }
}

/// `/health`, the metrics, the live path and the status page never queue:
/// with the one slot taken and no room to wait (`--max-queue 0`), they
/// answer at once while a request for the app is refused.
#[test]
fn own_paths_bypass_a_full_queue() {
    let (f, _stats) = start_one_slot(
        "queue-bypass",
        &[
            "--max-queue",
            "0",
            "--metrics-path",
            "/metrics",
            "--live-path",
            "/live",
        ],
    );
    let busy = request_in_background(&f, "/work?ms=3000");
    wait_admission(&f, 1, 0);
    for path in ["/health", "/metrics", "/live", "/_status"] {
        let t0 = Instant::now();
        let r = f.get(path).unwrap();
        let took = t0.elapsed();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(took < ms(1000), "{path} at once, not after {took:?}");
    }
    let r = f.get("/work?ms=10").unwrap();
    r.assert_json_error(503, "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(busy.join().unwrap().0.unwrap().status, 200);
}
