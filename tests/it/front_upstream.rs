//! A failing or slow upstream: 502 JSON when it refuses or closes without
//! an answer, 504 JSON past `--request-timeout`, and the R9 warning for a
//! request past 60 s (which still completes without a timeout).

use std::thread;
use std::time::Instant;

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// Child for the 502 test: listens on $PORT until the first connection
/// (modelarts-init's readiness probe) arrives, then closes its listener,
/// writes `$1/closed` and sleeps.
const LISTEN_ONCE: &str = r#"
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(16)
c, _ = s.accept()
s.close()
c.close()
open(os.path.join(sys.argv[1], "closed"), "w").close()
time.sleep(1000)
"#;

/// Upstream refusing connections: 502 JSON. The child listens only until
/// the readiness probe has connected, so the upstream has been ready; with
/// `--probe-interval 1h` no later probe notices that it is gone, so
/// /health stays 200 and the proxied request meets a refused connection.
#[test]
fn refused_upstream_gives_502() {
    // A TCP probe: the child answers no HTTP.
    let flags = ["--probe-interval", "1h", "--upstream-health", "tcp"];
    let (init, dir, listen, _) = init_on_free_ports("502", &flags);
    let argv = ["python3", "-c", LISTEN_ONCE, dir.str()].map(String::from);
    let mut f = Front::spawn(init, dir, listen, &argv);
    f.wait_ready("/health");
    assert!(
        wait_until(secs(10), || f.dir.join("closed").exists()),
        "child never closed its listener\n{}",
        f.run.dump()
    );
    let r = f.get("/").unwrap();
    r.assert_json_error(502, "upstream_unavailable");
    let r = http(f.listen, "POST", "/echo", &[], b"payload").unwrap();
    r.assert_json_error(502, "upstream_unavailable");
}

/// Child for the second 502 test: accepts connections and closes them
/// without answering.
const CLOSE_AT_ONCE: &str = r#"
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.close()
"#;

/// An upstream that closes the connection without answering: 502 JSON.
#[test]
fn upstream_closing_without_an_answer_gives_502() {
    // A TCP probe: the child answers no HTTP.
    let flags = ["--upstream-health", "tcp"];
    let mut f = spawn_child("502-close", &flags, &["python3", "-c", CLOSE_AT_ONCE]);
    f.wait_ready("/health");
    let r = f.get("/").unwrap();
    r.assert_json_error(502, "upstream_error");
    // The log line says what happened in words, with its cause, and no
    // Rust debug text.
    let line = f
        .wait_log("upstream request failed", secs(5))
        .unwrap_or_else(|| panic!("no log line\n{}", f.run.dump()));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains("connection closed before message completed"),
        "{line}"
    );
    for debug in ["Os {", "hyper::Error(", "Kind(", "Some("] {
        assert!(!line.contains(debug), "Rust debug text in: {line}");
    }
}

/// `--request-timeout 1s` with a 5 s request: 504 JSON after about 1 s;
/// the instance goes on serving.
#[test]
fn request_timeout_gives_504() {
    let f = start_gunicorn("504", &["--request-timeout", "1s"], &[]);
    let t = Instant::now();
    let r = f.get("/slow?s=5").unwrap();
    let took = t.elapsed();
    r.assert_json_error(504, "timeout");
    assert!(took >= ms(900) && took < ms(4500), "504 after {took:?}");
    let r = f.get("/slow?s=0.1").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(f.get("/").unwrap().status, 200);
}

// ===========================================================================
// R9: requests past 60 s
// ===========================================================================

/// A request still running after 60 s is logged as a warning (R9) and,
/// without --request-timeout, still completes.
#[test]
fn request_past_60s_is_logged() {
    let f = start_gunicorn("r9", &[], &["--timeout", "120"]);
    let addr = f.listen;
    let slow = thread::spawn(move || get(addr, "/slow?s=62"));
    let line = f
        .wait_log("request still running after 60 s", secs(75))
        .unwrap_or_else(|| panic!("no R9 warning\n{}", f.run.dump()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("/slow"), "{line}");
    let r = slow.join().unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}
