//! The HTTP front (`modelarts_init::http`: the accept loop, the connection
//! clock, the gate) fed arbitrary bytes on a loopback connection, in front
//! of a stub app that reads the whole body and answers its length. The
//! front runs once per fuzzing process, ready, on a thread of its own, as
//! the mnist server runs it (no child, the R8 timeline waiting).
//!
//! Must hold for every input: no panic (libFuzzer aborts on one in any
//! thread); the connection is answered and closed within a bound (the
//! front's keep-alive and request timeout are 2 s: the client half-closes
//! after sending); what comes back starts with a valid status line, and an
//! error status (4xx, 5xx) comes as JSON `{"error": ..., "message": ...}`,
//! hyper's own answers to unparsable requests included (README: "Known
//! limits").
#![no_main]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use modelarts_init::http::{error, json, server, App, Body, Front, FrontConfig};
use modelarts_init::supervisor::Supervised;
use modelarts_init::timeline::{restart, Settings};
use modelarts_init::{lifecycle, start_front, timeline};

/// Bodies past this get the front's 413 (`max_body`) or the stub's 400.
const MAX_BODY: u64 = 64 * 1024;
/// A connection must be done this long after the client half-closed.
const BOUND: Duration = Duration::from_secs(6);

struct Stub;

impl App for Stub {
    async fn call(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        match Limited::new(req.into_body(), MAX_BODY as usize)
            .collect()
            .await
        {
            Ok(body) => json(
                StatusCode::OK,
                &serde_json::json!({ "read": body.to_bytes().len() }),
            ),
            Err(e) => error(StatusCode::BAD_REQUEST, "bad_body", &e.to_string()),
        }
    }
}

fn front() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(serve(tx));
        });
        rx.recv().expect("the front's address")
    })
}

async fn serve(tx: std::sync::mpsc::Sender<SocketAddr>) {
    let config = FrontConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        health_path: "/health".into(),
        status_path: Some("/status".into()),
        metrics_path: Some("/metrics".into()),
        routes: Vec::new(),
        live_path: Some("/live".into()),
        access_log: false,
        admission: None,
        keep_alive: Duration::from_secs(2),
        max_connections: Some(512),
        request_timeout: Some(Duration::from_secs(2)),
        max_body: Some(MAX_BODY),
        tls: None,
    };
    let listener = server::bind(config.listen).expect("a loopback port");
    tx.send(listener.local_addr().unwrap()).unwrap();
    let (lifecycle, feed) = lifecycle::channel();
    let front = Arc::new(Front::new(config, lifecycle.clone(), Stub));
    let served = start_front(listener, front);
    lifecycle.report_ready(true);
    let settings = Settings {
        drain_delay: Duration::from_secs(60),
        stop_timeout: Duration::from_secs(25),
        stop_signal: libc::SIGTERM,
        leftover_grace: Duration::ZERO,
        restart: restart::Policy::NEVER,
        quiet: None,
    };
    let signals = futures_util::stream::pending();
    timeline::run(
        settings,
        None,
        Supervised::none(),
        signals,
        feed,
        Some(served),
    )
    .await;
}

fuzz_target!(|data: &[u8]| {
    let addr = front();
    let mut conn = TcpStream::connect(addr).expect("connect to the front");
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The front may answer and close before it has read everything.
    let _ = conn.write_all(data);
    let _ = conn.shutdown(Shutdown::Write);
    let sent = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            // libFuzzer's -timeout alarm (SIGALRM every second) interrupts
            // the read: a harness matter, not the front's (found by the
            // stable, no-sanitizer run; the deadline below still holds).
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                assert!(
                    sent.elapsed() < BOUND,
                    "the front neither answered nor closed within {BOUND:?}; got {:?}",
                    String::from_utf8_lossy(&got)
                );
            }
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    check_first_answer(&got);
});

/// The first answer in `got`, if any: a status line, and JSON for errors.
fn check_first_answer(got: &[u8]) {
    if got.is_empty() {
        return;
    }
    let Some(head_end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        panic!(
            "an answer without a whole head: {:?}",
            String::from_utf8_lossy(got)
        );
    };
    let head = String::from_utf8_lossy(&got[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a bad status line: {status_line:?}"));
    if status < 400 {
        return;
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json"),
        "a {status} answer that is not JSON: {head:?}"
    );
    let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) else {
        return;
    };
    let body = &got[head_end + 4..];
    if body.len() >= len {
        let value: serde_json::Value = serde_json::from_slice(&body[..len])
            .unwrap_or_else(|e| panic!("a {status} body that is not JSON ({e}): {head:?}"));
        assert!(value.get("error").is_some(), "no \"error\" in {value}");
    }
}
