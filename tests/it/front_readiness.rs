//! Readiness means a worker answers: gunicorn whose app takes 5 s to
//! import (its master binds the port at once), uvicorn, a server on the
//! wrong port (named in the log), and `--upstream-health tcp`, the old
//! behaviour.

use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// gunicorn serving `tests/py/slow_import.py` (the example app behind a
/// 5 s import) under modelarts-init `flags`.
fn slow_gunicorn(tag: &str, flags: &[&str]) -> (Front, SocketAddr) {
    let (init, dir, listen, upstream) = init_on_free_ports(tag, flags);
    let argv = gunicorn_app_argv(&dir, upstream, &test_apps_dir(), "slow_import:app", &[]);
    let f = Front::spawn(init.env("IMPORT_DELAY", "5"), dir, listen, &argv);
    (f, upstream)
}

#[test]
fn gunicorn_is_ready_only_once_a_worker_answers() {
    let (mut f, upstream) = slow_gunicorn("slowimport", &[]);
    f.first_health();
    let started = Instant::now();
    let (mut not_ready, mut bound_while_not_ready) = (0, false);
    loop {
        assert!(
            started.elapsed() < secs(60),
            "never ready\n{}",
            f.run.dump()
        );
        let t = Instant::now();
        let h = f.get("/health").unwrap();
        assert!(t.elapsed() < secs(2), "/health took {:?}", t.elapsed());
        if h.status == 200 {
            break;
        }
        assert_health_false(&h, "starting");
        // The master has bound the port: a TCP probe would have said ready.
        bound_while_not_ready |= TcpStream::connect(upstream).is_ok();
        let t = Instant::now();
        let r = f.get("/").unwrap();
        assert!(
            t.elapsed() < secs(2),
            "a proxied request hung {:?}",
            t.elapsed()
        );
        if r.status != 200 {
            r.assert_json_error(503, "not_ready");
        }
        not_ready += 1;
        std::thread::sleep(ms(100));
    }
    assert!(not_ready > 0, "ready before the import was done");
    assert!(
        bound_while_not_ready,
        "gunicorn never bound while importing"
    );
    // Ready means a worker answers now, directly and through the front.
    let direct = get(upstream, "/").unwrap_or_else(|e| panic!("no worker: {e}"));
    assert_eq!(direct.status, 200);
    assert_eq!(f.get("/").unwrap().status, 200);
}

#[test]
fn upstream_health_tcp_counts_a_bound_port_as_ready() {
    let (mut f, upstream) = slow_gunicorn("slowimport-tcp", &["--upstream-health", "tcp"]);
    f.wait_ready("/health");
    // Ready, though no worker answers yet: the old behaviour, on request.
    let mut c = Conn::open(upstream).unwrap();
    c.set_read_timeout(ms(500));
    assert!(
        c.get("/").is_err(),
        "a worker answered already: the import is not slow enough for this test"
    );
}

#[test]
fn uvicorn_is_probed_over_http_and_drains() {
    let (init, dir, listen, upstream) =
        init_on_free_ports("uvicorn", &["--drain-delay", "1s", "--stop-timeout", "5s"]);
    let port = upstream.port().to_string();
    let argv = [
        venv_bin("uvicorn").to_str().unwrap(),
        "--app-dir",
        &test_apps_dir(),
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "asgi_app:app",
    ]
    .map(String::from);
    let mut f = Front::spawn(init, dir, listen, &argv);
    f.wait_ready("/health");
    let r = f.get("/x").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["app"], "asgi");
    f.sigterm();
    // uvicorn shuts down gracefully, then re-raises SIGTERM: 128 + 15.
    assert_eq!(f.run.expect_code(secs(20)), 143, "{}", f.run.dump());
    assert!(
        f.run.stdout.contains("Finished server process"),
        "uvicorn did not shut down gracefully\n{}",
        f.run.dump()
    );
}

#[test]
fn a_server_on_the_wrong_port_is_named_in_the_log() {
    let (init, dir, listen, upstream) = init_on_free_ports("wrongport", &[]);
    let wrong = free_addr().port().to_string();
    let argv = [
        "python3",
        "-m",
        "http.server",
        &wrong,
        "--bind",
        "127.0.0.1",
    ]
    .map(String::from);
    let mut f = Front::spawn(init, dir, listen, &argv);
    assert_health_false(&f.first_health(), "starting");
    let line = f
        .wait_log("upstream not ready", secs(20))
        .unwrap_or_else(|| panic!("nothing logged while not ready\n{}", f.run.dump()));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains(&format!("$PORT={}", upstream.port())),
        "no hint at $PORT: {line}"
    );
    assert!(line.contains("refused"), "{line}");
    assert_health_false(&f.get("/health").unwrap(), "starting");
}
