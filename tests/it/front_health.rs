//! The synthesized `/health` through the child's life (503 "starting"
//! until gunicorn listens, 200, 503 "unhealthy" while it hangs, gone when
//! it dies), our exit status as the child's, and the `health` verb.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// /health is 503 "starting" until gunicorn listens (its start is delayed
/// 1.5 s so that the starting phase is long enough to see), proxied
/// requests get 503 JSON meanwhile, then /health is exactly
/// `{"health":"true"}`. When the gunicorn master is SIGKILLed, a request
/// in flight is answered 503 JSON, /health stops answering 200 for good
/// (the listener closes at once: no 503 is seen in practice), and
/// modelarts-init exits 137, gunicorn's status.
#[test]
fn health_follows_gunicorn_start_and_death() {
    let (init, dir, listen, upstream) = init_on_free_ports("health", &[]);
    let mut argv = vec![
        "sh".to_string(),
        "-c".into(),
        "sleep 1.5; exec \"$@\"".into(),
        "sh".into(),
    ];
    argv.extend(gunicorn_argv(&dir, upstream, &[]));
    let mut f = Front::spawn(init, dir, listen, &argv);

    let first = f.first_health();
    assert_health_false(&first, "starting");
    let r = f.get("/").unwrap();
    r.assert_json_error(503, "not_ready");
    let r = http(f.listen, "POST", "/echo", &[], b"abc").unwrap();
    r.assert_json_error(503, "not_ready");

    // 503 "starting" until the first 200; whenever /health says 200,
    // gunicorn really answers.
    let deadline = Instant::now() + secs(60);
    loop {
        assert!(Instant::now() < deadline, "never ready\n{}", f.run.dump());
        assert!(f.run.try_status().is_none(), "exited\n{}", f.run.dump());
        let r = f.get("/health").unwrap();
        if r.status == 200 {
            assert_health_true(&r);
            break;
        }
        assert_health_false(&r, "starting");
        thread::sleep(ms(30));
    }
    let r = f.get("/").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["app"], "gunicorn-app");
    let master = f.gunicorn_pid();
    f.run.track_pid(master);

    // Watch /health on fresh connections while gunicorn is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let addr = f.listen;
        thread::spawn(move || {
            // When, and the status and reason (or the error).
            type Seen = (Instant, Result<(u16, String), String>);
            let mut seen: Vec<Seen> = Vec::new();
            while !stop.load(Ordering::SeqCst) && seen.len() < 20_000 {
                let r = get(addr, "/health")
                    .map(|r| (r.status, r.text()))
                    .map_err(|e| e.to_string());
                seen.push((Instant::now(), r));
                thread::sleep(ms(5));
            }
            seen
        })
    };
    // A request in flight when gunicorn dies.
    let addr = f.listen;
    let slow = thread::spawn(move || get(addr, "/slow?s=20"));
    thread::sleep(ms(500)); // scenario: let it reach a worker
    let killed_at = Instant::now();
    kill(Pid::from_raw(master), Signal::SIGKILL).unwrap();
    let status = f.run.expect_code(secs(20));
    let exited_at = Instant::now();
    thread::sleep(ms(200));
    stop.store(true, Ordering::SeqCst);
    let seen = watcher.join().unwrap();

    // Answered 503 JSON when the child is gone (before its orphaned
    // workers are killed), not cut.
    let r = slow
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("in-flight request cut: {e}\n{}", f.run.dump()));
    r.assert_json_error(503, "stopped");
    assert_eq!(
        status,
        137,
        "exit status should be gunicorn's (SIGKILL)\n{}",
        f.run.dump()
    );
    assert!(
        exited_at - killed_at < secs(10),
        "took {:?} to exit after the child died",
        exited_at - killed_at
    );
    assert!(
        seen.iter()
            .any(|(t, r)| *t < killed_at && matches!(r, Ok((200, _)))),
        "no 200 before the kill: {seen:?}"
    );
    // After the kill: 200s (before the death is noticed), then never again.
    let after: Vec<_> = seen.iter().filter(|(t, _)| *t > killed_at).collect();
    eprintln!(
        "after the kill: {} x 200, {} x 503, {} x no answer",
        after
            .iter()
            .filter(|(_, r)| matches!(r, Ok((200, _))))
            .count(),
        after
            .iter()
            .filter(|(_, r)| matches!(r, Ok((503, _))))
            .count(),
        after.iter().filter(|(_, r)| r.is_err()).count()
    );
    let first_bad = after
        .iter()
        .position(|(_, r)| !matches!(r, Ok((200, _))))
        .unwrap_or_else(|| panic!("/health never stopped answering 200: {after:?}"));
    for (_, r) in &after[first_bad..] {
        match r {
            Ok((200, _)) => panic!("/health answered 200 again after failing: {after:?}"),
            Ok((503, body)) => {
                let v: Value = serde_json::from_str(body).unwrap();
                assert_eq!(v["health"], "false", "{body}");
                assert!(
                    v["reason"] == "exited" || v["reason"] == "stopping",
                    "{body}"
                );
            }
            Ok(other) => panic!("unexpected /health answer {other:?}"),
            Err(_) => {} // the listener is closed: refused
        }
    }
    f.run.stdout.wait_eof(secs(5));
    assert!(f.run.stdout.contains("child exited"), "{}", f.run.dump());
}

/// A gunicorn that hangs (SIGSTOPped master and workers) fails the HTTP
/// readiness probe (`--upstream-health /`): after `--unhealthy-after`
/// failures /health is 503 "unhealthy"; once it runs again, 200.
#[test]
fn health_turns_unhealthy_while_gunicorn_hangs() {
    let mut f = start_gunicorn(
        "unhealthy",
        &[
            "--upstream-health",
            "/",
            "--probe-interval",
            "300ms",
            "--unhealthy-after",
            "2",
        ],
        &[],
    );
    let master = f.gunicorn_pid();
    let mut pids = vec![master];
    assert!(
        wait_until(secs(30), || children_of(master).len() >= 2),
        "gunicorn workers did not start\n{}",
        f.run.dump()
    );
    pids.extend(children_of(master).iter().map(|s| s.pid));
    for &p in &pids {
        f.run.track_pid(p);
        kill(Pid::from_raw(p), Signal::SIGSTOP).unwrap();
    }
    let r = f.wait_health(secs(20), |r| r.status != 200);
    for &p in &pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
    }
    let r = r.unwrap_or_else(|| panic!("/health stayed 200 while gunicorn hung\n{}", f.run.dump()));
    assert_health_false(&r, "unhealthy");
    let r = f
        .wait_health(secs(20), |r| r.status == 200)
        .unwrap_or_else(|| panic!("/health not 200 again after SIGCONT\n{}", f.run.dump()));
    assert_health_true(&r);
    assert_eq!(f.get("/").unwrap().status, 200);
}

/// gunicorn that cannot load its app exits non-zero (4, "App failed to
/// load"; gunicorn 27 sometimes exits 1 instead, when a second worker's
/// failure raises while it halts): modelarts-init exits with that status.
#[test]
fn gunicorn_exit_status_is_ours() {
    let (init, dir, _listen, upstream) = init_on_free_ports("bootfail", &[]);
    let mut argv = gunicorn_argv(&dir, upstream, &[]);
    *argv.last_mut().unwrap() = "app:no_such_app".into();
    let mut r = init.command(&argv).spawn();
    let code = r.expect_code(secs(60));
    r.stdout.wait_eof(secs(5));
    let out = r.stdout.text();
    assert!(out.contains("App failed to load"), "{}", r.dump());
    let line = out
        .lines()
        .find(|l| l.contains("child exited"))
        .unwrap_or_else(|| panic!("no 'child exited' log\n{}", r.dump()));
    let child = log_field_u64(&line.replace("status=exit code ", "status="), "status")
        .unwrap_or_else(|| panic!("no exit code in {line}"));
    assert_ne!(child, 0, "{line}");
    assert_eq!(
        code as u64,
        child,
        "our status differs from gunicorn's\n{}",
        r.dump()
    );
}

/// While the upstream is starting: 503 JSON for proxied requests, /health
/// 503 "starting", and the `health` verb exits 1.
#[test]
fn starting_upstream_gives_503_and_health_verb_1() {
    let mut f = spawn_child("503", &[], &["sleep", "1000"]);
    assert_health_false(&f.first_health(), "starting");
    f.get("/").unwrap().assert_json_error(503, "not_ready");
    http(f.listen, "POST", "/echo", &[], b"x")
        .unwrap()
        .assert_json_error(503, "not_ready");
    http(f.listen, "HEAD", "/", &[], b"")
        .map(|r| assert_eq!(r.status, 503))
        .unwrap();
    let (h, code) = health_verb(&["--url", &f.url("/health"), "--timeout", "5s"]);
    assert_eq!(code, 1, "{}", h.dump());
}

// ===========================================================================
// The health verb
// ===========================================================================

/// `modelarts-init health ARGS...`.
fn health_verb(args: &[&str]) -> (Running, i32) {
    run_verb(Init::new().arg("health").args(args))
}

/// `modelarts-init health`: 0 against a ready instance, 1 against a closed
/// port (the starting case is in `starting_upstream_gives_503_and_health_verb_1`).
#[test]
fn health_verb_exit_codes() {
    let f = start_gunicorn("health-verb", &[], &[]);
    let (r, code) = health_verb(&["--url", &f.url("/health")]);
    assert_eq!(code, 0, "{}", r.dump());

    let closed = free_addr();
    let url = format!("http://{closed}/health");
    let (r, code) = health_verb(&["--url", &url, "--timeout", "3s"]);
    assert_eq!(code, 1, "{}", r.dump());
    assert!(r.stderr.contains(&closed.to_string()), "{}", r.dump());

    // A path that answers non-200 (gunicorn's 404): 1 as well.
    let (r, code) = health_verb(&["--url", &f.url("/nowhere")]);
    assert_eq!(code, 1, "{}", r.dump());
}
