//! The status page (`--status-path`): the child and its process tree,
//! request counts, and off by default.

use std::thread;

use serde_json::Value;

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// `--status-path /_status` reports the gunicorn master (child_pid, from
/// its pid file) and its workers (tree processes, rss), and counts requests.
#[test]
fn status_page_reports_gunicorn_and_workers() {
    let f = start_gunicorn("status", &["--status-path", "/_status"], &["-w", "2"]);
    let master = f.gunicorn_pid();
    let mut page = Value::Null;
    let ok = wait_until(secs(30), || {
        page = f.get("/_status").unwrap().json();
        page["tree"]["processes"].as_u64().unwrap_or(0) >= 3
    });
    assert!(
        ok,
        "gunicorn master + 2 workers not in {page}\n{}",
        f.run.dump()
    );
    assert_eq!(page["state"], "ready", "{page}");
    assert_eq!(page["pid"], f.run.pid(), "{page}");
    assert_eq!(page["child_pid"], master, "{page}");
    assert!(
        page["tree"]["rss_bytes"].as_u64().unwrap() > 10_000_000,
        "{page}"
    );
    assert!(page["tree"]["cpu_time_ms"].as_u64().is_some(), "{page}");
    assert!(page["uptime_ms"].as_u64().unwrap() > 0, "{page}");

    let served = page["requests_served"].as_u64().unwrap();
    for _ in 0..3 {
        assert_eq!(f.get("/").unwrap().status, 200);
    }
    let addr = f.listen;
    let slow = thread::spawn(move || get(addr, "/slow?s=2"));
    let mut in_flight = Value::Null;
    assert!(
        wait_until(secs(5), || {
            in_flight = f.get("/_status").unwrap().json();
            in_flight["requests_in_flight"].as_u64() == Some(1)
        }),
        "{in_flight}"
    );
    assert_eq!(slow.join().unwrap().unwrap().status, 200);
    let page = f.get("/_status").unwrap().json();
    assert!(
        page["requests_served"].as_u64().unwrap() >= served + 4,
        "{page}"
    );
    assert_eq!(page["requests_in_flight"], 0, "{page}");
    let r = f.get("/_status").unwrap();
    assert_eq!(r.header("content-type"), Some("application/json"));
}

/// Without `--status-path` the path is the app's: gunicorn's 404.
#[test]
fn status_page_is_off_by_default() {
    let f = start_gunicorn("status-off", &[], &[]);
    let r = f.get("/_status").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/html")),
        "not gunicorn's 404: {r:?}"
    );
    assert!(
        serde_json::from_slice::<Value>(&r.body).is_err(),
        "{}",
        r.text()
    );
}
