//! The drain on SIGTERM (R8) with a real gunicorn: traffic served during
//! `--drain-delay`, in-flight requests finished, the stop timeout, and no
//! delay when the upstream was never ready.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

// ===========================================================================
// A client loop for the drain tests
// ===========================================================================

#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) start: Instant,
    /// Status, or the I/O error.
    pub(crate) outcome: Result<u16, String>,
    /// Whether the request went on a reused connection.
    reused: bool,
}

/// Sends `GET /` until `stop` is set (at most 60 s, 5000 requests), every
/// ~20 ms, on fresh connections (`keep_alive` false) or one kept-alive
/// connection (reopened after an error or a close).
pub(crate) fn client_loop(
    addr: SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Sample>> {
    thread::spawn(move || {
        let mut samples = Vec::new();
        let mut conn: Option<Conn> = None;
        let began = Instant::now();
        while !stop.load(Ordering::SeqCst) && began.elapsed() < secs(60) && samples.len() < 5000 {
            let start = Instant::now();
            let (outcome, reused) = if keep_alive {
                let reused = conn.is_some();
                let c = match conn.take() {
                    Some(c) => Ok(c),
                    None => Conn::open(addr),
                };
                match c {
                    Ok(mut c) => match c.get("/") {
                        Ok(r) => {
                            let closing = r
                                .header("connection")
                                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                            if !closing {
                                conn = Some(c);
                            }
                            (Ok(r.status), reused)
                        }
                        Err(e) => (Err(e.to_string()), reused),
                    },
                    Err(e) => (Err(e.to_string()), false),
                }
            } else {
                (
                    get(addr, "/").map(|r| r.status).map_err(|e| e.to_string()),
                    false,
                )
            };
            samples.push(Sample {
                start,
                outcome,
                reused,
            });
            thread::sleep(ms(20));
        }
        samples
    })
}

// ===========================================================================
// Drain (R8)
// ===========================================================================

/// `--drain-delay 2s --stop-timeout 2s` while two client loops (fresh and
/// kept-alive connections) send requests: /health is 503 "draining" at
/// once, no request started before the child's SIGTERM fails, gunicorn gets
/// its SIGTERM at about 2 s, and modelarts-init exits inside the bound with
/// gunicorn's status.
#[test]
fn drain_serves_traffic_until_the_child_stops() {
    let mut f = start_gunicorn(
        "drain",
        // gunicorn needs about 1.5 s to stop (its gevent workers look at
        // their flag once a second); 5 s leave room on a loaded machine.
        &["--drain-delay", "2s", "--stop-timeout", "5s"],
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let fresh = client_loop(f.listen, false, stop.clone());
    let kept = client_loop(f.listen, true, stop.clone());
    thread::sleep(ms(700)); // some traffic before the SIGTERM

    let (term_at, health_failed_after) = f.sigterm_until_draining();
    assert!(
        health_failed_after < ms(1900),
        "took {health_failed_after:?}"
    );

    let elapsed = f.wait_child_stop_signal();
    let code = f.run.expect_code(secs(15));
    let exit_after = term_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut samples = fresh.join().unwrap();
    samples.extend(kept.join().unwrap());
    f.run.stdout.wait_eof(secs(5));

    // 2 s delay + 5 s stop timeout + kill grace and the front's 0.5 s.
    assert!(
        exit_after < secs(12),
        "exit {exit_after:?} after SIGTERM\n{}",
        f.run.dump()
    );
    assert_eq!(
        code,
        0,
        "gunicorn stops cleanly on SIGTERM\n{}",
        f.run.dump()
    );
    assert!(
        f.run.stdout.contains("Handling signal: term"),
        "gunicorn never got SIGTERM\n{}",
        f.run.dump()
    );

    // Requests started before the child's SIGTERM (with a 300 ms margin for
    // the delivery of ours) all succeeded, during the drain too.
    let child_term = term_at + ms(elapsed);
    let before: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start + ms(300) < child_term)
        .collect();
    let in_drain = before.iter().filter(|s| s.start > term_at).count();
    assert!(in_drain >= 10, "only {in_drain} requests during the drain");
    let failed: Vec<_> = before.iter().filter(|s| s.outcome != Ok(200)).collect();
    assert!(
        failed.is_empty(),
        "failures before the child's SIGTERM: {failed:?}"
    );
    // After it: 200s that were in flight, 503 "stopping", or closed.
    for s in &samples {
        if let Ok(st) = s.outcome {
            assert!(st == 200 || st == 503, "{s:?}");
        }
    }
    eprintln!(
        "drain: {} requests, {} during the drain, {} reused connections, exit after {:?}",
        samples.len(),
        in_drain,
        samples.iter().filter(|s| s.reused).count(),
        exit_after
    );
}

/// A slow request (3 s) started ~1 s after SIGTERM is in flight when the
/// child gets its SIGTERM at ~2 s; gunicorn (`--graceful-timeout 10`)
/// finishes it, the client gets 200, and modelarts-init exits 0 right
/// after, long before `--stop-timeout 8s`.
#[test]
fn drain_lets_an_in_flight_request_finish() {
    let mut f = start_gunicorn(
        "drain-slow",
        &["--drain-delay", "2s", "--stop-timeout", "8s"],
        &["--graceful-timeout", "10"],
    );
    // A kept-alive connection, idle when the stop comes.
    let mut idle = Conn::open(f.listen).unwrap();
    assert_eq!(idle.get("/").unwrap().status, 200);
    // A connection in the middle of its request head when the stop comes.
    let mut partial = Conn::open(f.listen).unwrap();
    partial.send(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();

    let (term_at, _) = f.sigterm_until_draining();
    // Scenario timing, not synchronisation: start the slow request ~1 s in.
    thread::sleep(ms(1000).saturating_sub(term_at.elapsed()));
    let addr = f.listen;
    let slow = thread::spawn(move || {
        let started = Instant::now();
        let r = get(addr, "/slow?s=3");
        (started, Instant::now(), r)
    });

    let elapsed = f.wait_child_stop_signal();

    // The request finished on the still-open connection: 503 JSON with
    // Connection: close, and the connection is closed.
    partial.send(b"\r\n").unwrap();
    let r = partial.read_response(false).unwrap();
    r.assert_json_error(503, "stopping");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(partial.wait_closed(secs(5), &mut Vec::new()).is_some());

    // The idle kept-alive connection is closed at the stop.
    let mut got = Vec::new();
    let closed = idle.wait_closed(secs(5), &mut got);
    assert!(
        closed.is_some(),
        "idle keep-alive connection not closed at the stop"
    );
    // New connections are refused once the listener is closed.
    assert!(
        wait_until(secs(5), || TcpStream::connect_timeout(&f.listen, secs(1))
            .is_err()),
        "listener still accepting after the child's SIGTERM"
    );

    let (started, ended, r) = slow.join().unwrap();
    let r = r.unwrap_or_else(|e| panic!("slow request failed: {e}\n{}", f.run.dump()));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.run.dump());
    assert_eq!(r.json()["slept"], 3.0);
    assert!(
        started < term_at + ms(elapsed),
        "slow request was not in flight at the child's SIGTERM"
    );
    assert!(
        ended > term_at + ms(elapsed),
        "slow request ended before the child's SIGTERM"
    );

    let code = f.run.expect_code(secs(15));
    let exit_after = term_at.elapsed();
    assert_eq!(code, 0, "{}", f.run.dump());
    assert!(exit_after < secs(10), "exit {exit_after:?} after SIGTERM");
    assert!(
        f.run.stdout.contains("Handling signal: term"),
        "{}",
        f.run.dump()
    );
    assert!(!f.run.stdout.contains("stop timeout"), "{}", f.run.dump());
}

/// When the stop timeout runs out with a request still open (gunicorn
/// waits for it: its graceful timeout is 30 s), the client gets 503 JSON,
/// gunicorn is SIGKILLed and modelarts-init exits 137.
#[test]
fn stop_timeout_answers_open_requests_503() {
    let mut f = start_gunicorn(
        "stop-timeout",
        &["--drain-delay", "1s", "--stop-timeout", "2s"],
        &["--graceful-timeout", "30"],
    );
    let addr = f.listen;
    let slow = thread::spawn(move || get(addr, "/slow?s=30"));
    // Let the request reach gunicorn (the status page is off; gunicorn's
    // access log is off too): a short scenario pause, then SIGTERM.
    thread::sleep(ms(500));
    let term_at = Instant::now();
    f.sigterm();
    let code = f.run.expect_code(secs(20));
    let exit_after = term_at.elapsed();
    let r = slow
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("no answer: {e}\n{}", f.run.dump()));
    r.assert_json_error(503, "stopped");
    assert_eq!(
        code,
        137,
        "gunicorn SIGKILLed at the stop timeout\n{}",
        f.run.dump()
    );
    assert!(
        exit_after >= ms(2900) && exit_after < secs(12),
        "exit {exit_after:?} after SIGTERM (1 s delay + 2 s timeout)"
    );
    assert!(f.run.stdout.contains("stop timeout"), "{}", f.run.dump());
}

/// SIGTERM before the upstream was ever ready skips the drain delay.
#[test]
fn sigterm_before_ready_skips_the_drain_delay() {
    let mut f = spawn_child("never-ready", &["--drain-delay", "30s"], &["sleep", "1000"]);
    let h = f.first_health();
    assert_health_false(&h, "starting");
    let term_at = Instant::now();
    f.sigterm();
    let code = f.run.expect_code(secs(25));
    assert!(term_at.elapsed() < secs(10), "took {:?}", term_at.elapsed());
    assert_eq!(code, 143, "sleep killed by SIGTERM\n{}", f.run.dump());
    f.run.stdout.wait_eof(secs(5));
    assert!(
        f.run.stdout.contains("skipping the drain delay"),
        "{}",
        f.run.dump()
    );
}

/// During the drain delay every answer on a keep-alive connection says
/// `Connection: close` (and the connection is closed after it), so that a
/// balancer's pooled connections move to other instances before the child
/// stops; idle connections are closed when the delay ends.
#[test]
fn draining_answers_say_connection_close() {
    let f = start_gunicorn("drain-close", &["--drain-delay", "3s"], &[]);
    let mut busy = Conn::open(f.listen).unwrap();
    let mut idle = Conn::open(f.listen).unwrap();
    for c in [&mut busy, &mut idle] {
        let r = c.get("/").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None, "before the drain: {r:?}");
    }
    f.sigterm_until_draining();
    let r = busy.get("/").unwrap();
    assert_eq!(r.status, 200, "still served during the drain");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    let mut got = Vec::new();
    assert!(
        busy.wait_closed(secs(5), &mut got).is_some(),
        "the connection stayed open after Connection: close"
    );
    let h = get(f.listen, "/health").unwrap();
    assert_eq!(h.header("connection"), Some("close"), "{h:?}");
    // The idle one is closed when the delay ends.
    let closed = idle.wait_closed(secs(10), &mut got);
    assert!(
        closed.is_some(),
        "idle connection open after the delay\n{}",
        f.run.dump()
    );
}
