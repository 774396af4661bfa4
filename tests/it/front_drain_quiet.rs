//! The adaptive drain (`--drain-quiet-period`, `--drain-min`) with real
//! gunicorn: a client that stops sending lets the drain end early, one
//! that keeps sending gets the full delay, health probes are not
//! requests, and the default minimum comes from config.json.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crate::front_drain::{client_loop, Sample};
use crate::front_util::*;
use crate::util::*;

/// When the child got its stop signal, in ms after our SIGTERM (its log).
fn child_stop_ms(f: &Front) -> u64 {
    let line = f
        .wait_log("stop signal to child", secs(40))
        .unwrap_or_else(|| panic!("no 'stop signal to child' log\n{}", f.run.dump()));
    log_field_u64(&line, "elapsed_ms").unwrap_or_else(|| panic!("{line}"))
}

/// Asserts every request that started before the child's stop signal
/// (with 300 ms for the delivery of ours) succeeded.
fn assert_none_failed_before(samples: &[Sample], child_stop: Instant) {
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| s.start + ms(300) < child_stop && s.outcome != Ok(200))
        .collect();
    assert!(
        failed.is_empty(),
        "failures before the child's stop signal: {failed:?}"
    );
}

/// A client that stops sending 2.5 s after SIGTERM: the drain ends 1 s
/// (the quiet period) after its last request, well before the 20 s delay
/// and after the 2 s minimum; the log says why; nothing failed.
#[test]
fn the_drain_ends_a_quiet_period_after_the_last_request() {
    let mut f = start_gunicorn(
        "quiet-drain",
        &[
            "--drain-delay",
            "20s",
            "--drain-quiet-period",
            "1s",
            "--drain-min",
            "2s",
            "--stop-timeout",
            "5s",
        ],
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let client = client_loop(f.listen, true, stop.clone());
    thread::sleep(ms(500)); // scenario: traffic before the SIGTERM
    let (term_at, _) = f.sigterm_until_draining();
    thread::sleep(ms(2500).saturating_sub(term_at.elapsed()));
    stop.store(true, Ordering::SeqCst);
    let samples = client.join().unwrap();
    let stopped = samples
        .last()
        .map(|s| s.start.duration_since(term_at))
        .unwrap();

    let elapsed = child_stop_ms(&f);
    let code = f.run.expect_code(secs(20));
    let exit_after = term_at.elapsed();
    f.run.stdout.wait_eof(secs(5));
    eprintln!("quiet drain: last request {stopped:?} after SIGTERM, child stopped at {elapsed} ms, exit {exit_after:?}");
    let expect = stopped.as_millis() as u64 + 1000;
    assert!(
        (expect..expect + 1500).contains(&elapsed),
        "child's stop signal at {elapsed} ms, expected 1 s after the last request ({expect} ms)\n{}",
        f.run.dump()
    );
    let line = f
        .wait_log("drain delay ended early", secs(1))
        .unwrap_or_else(|| panic!("{}", f.run.dump()));
    assert!(line.contains("drain_quiet_period_ms=1000"), "{line}");
    assert!(line.contains("since_last_request_ms="), "{line}");
    assert_eq!(code, 0, "{}", f.run.dump());
    assert!(
        exit_after < secs(10),
        "exit {exit_after:?}, the delay was 20 s"
    );
    assert_none_failed_before(&samples, term_at + ms(elapsed));
}

/// A client that keeps sending: the full `--drain-delay` (3 s), nothing
/// ends early.
#[test]
fn a_client_that_keeps_sending_gets_the_full_delay() {
    let mut f = start_gunicorn(
        "quiet-busy",
        &[
            "--drain-delay",
            "3s",
            "--drain-quiet-period",
            "1s",
            "--drain-min",
            "1s",
        ],
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let client = client_loop(f.listen, false, stop.clone());
    thread::sleep(ms(300));
    let (term_at, _) = f.sigterm_until_draining();
    let elapsed = child_stop_ms(&f);
    stop.store(true, Ordering::SeqCst);
    let samples = client.join().unwrap();
    f.run.expect_exit(secs(20));
    assert!(
        (2900..5000).contains(&elapsed),
        "child's stop signal at {elapsed} ms, expected the full 3 s\n{}",
        f.run.dump()
    );
    assert!(
        !f.run.stdout.contains("drain delay ended early"),
        "{}",
        f.run.dump()
    );
    assert_none_failed_before(&samples, term_at + ms(elapsed));
}

/// No request, only health probes and metrics scrapes every 50 ms (which
/// are not requests): the drain ends at the minimum, which config.json's health section sets
/// to 1 failure x 1 s + 1 s timeout = 2 s.
#[test]
fn health_probes_are_not_requests_and_config_json_sets_the_minimum() {
    let (init, dir, listen, upstream) = init_on_free_ports(
        "quiet-config",
        &[
            "--drain-delay",
            "20s",
            "--drain-quiet-period",
            "500ms",
            "--metrics-path",
            "/metrics",
        ],
    );
    let cfg = dir.join("config.json");
    fs::write(
        &cfg,
        r#"{"health": {"url": "/health", "protocol": "http", "failure_threshold": 1,
            "period_seconds": 1, "timeout_seconds": 1}}"#,
    )
    .unwrap();
    let argv = gunicorn_argv(&dir, upstream, &[]);
    let mut f = Front::spawn(init.arg("--config").arg(&cfg), dir, listen, &argv);
    f.wait_ready("/health");
    let done = Arc::new(AtomicBool::new(false));
    let probes = {
        let (addr, done) = (f.listen, done.clone());
        thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                let path = ["/health", "/metrics"][n % 2];
                if crate::http::get(addr, path).is_ok() {
                    n += 1;
                }
                thread::sleep(ms(50));
            }
            n
        })
    };
    let (_term_at, _) = f.sigterm_until_draining();
    let elapsed = child_stop_ms(&f);
    done.store(true, Ordering::SeqCst);
    let probed = probes.join().unwrap();
    f.run.expect_exit(secs(20));
    let draining = f.wait_log("draining:", secs(1)).unwrap();
    assert!(draining.contains("drain_min_ms=2000"), "{draining}");
    assert!(probed >= 20, "only {probed} probes and scrapes");
    assert!(
        (1900..4000).contains(&elapsed),
        "child's stop signal at {elapsed} ms, expected the 2 s minimum\n{}",
        f.run.dump()
    );
}
