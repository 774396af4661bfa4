//! WebSockets through the proxy: an echo (text and 1 MiB binary), and a
//! socket opened before SIGTERM that keeps working through the drain, and
//! a tunnel that keeps its place under `--max-connections`.

use serde_json::Value;

use crate::front_util::*;
use crate::http::Conn;
use crate::util::*;

/// A WebSocket echo through the proxy: text and binary messages (1 MiB)
/// come back intact; the upstream sees the upgrade and X-Forwarded-For.
#[test]
fn websocket_echo_passes_through() {
    let (py, server) = (python(), py_script("ws_echo_server.py"));
    let mut f = spawn_child("ws", &[], &[py.as_str(), server.as_str()]);
    f.wait_ready("/health");
    let mut client = ws_client(&format!("ws://{}/ws", f.listen), None);
    let code = client.expect_code(secs(60));
    client.stdout.wait_eof(secs(5));
    assert_eq!(
        code,
        0,
        "ws client failed\n{}\nfront:\n{}",
        client.dump(),
        f.run.dump()
    );
    let out = client.stdout.text();
    assert!(out.contains("WS-OK 5"), "{out}");
    let headers: Value = out
        .lines()
        .find_map(|l| l.strip_prefix("HEADERS "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        headers["upgrade"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket"),
        "{headers}"
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{headers}");
    // The front still serves plain HTTP afterwards.
    assert_health_true(&f.get("/health").unwrap());
}

/// modelarts-init `flags` in front of the echo server, and a WebSocket
/// client connected through it that holds its socket open until `go` (the
/// returned path) is written, then echoes 5 messages and closes.
fn held_websocket(tag: &str, flags: &[&str]) -> (Front, std::path::PathBuf, Running) {
    let (py, server) = (python(), py_script("ws_echo_server.py"));
    let mut f = spawn_child(tag, flags, &[py.as_str(), server.as_str()]);
    f.wait_ready("/health");
    let go = f.dir.join("go");
    let client = ws_client(&format!("ws://{}/ws", f.listen), Some(&go));
    assert!(
        wait_until(secs(30), || client.stdout.contains("CONNECTED")),
        "ws client never connected\n{}",
        client.dump()
    );
    (f, go, client)
}

/// A WebSocket opened before SIGTERM keeps working through the drain delay
/// (R8: traffic is served as before), and the exit waits for nothing more
/// than the timeline.
#[test]
fn websocket_keeps_working_during_the_drain() {
    let (mut f, go, mut client) =
        held_websocket("ws-drain", &["--drain-delay", "3s", "--stop-timeout", "2s"]);
    let (term_at, _) = f.sigterm_until_draining();
    std::fs::write(&go, "").unwrap();
    let code = client.expect_code(secs(30));
    client.stdout.wait_eof(secs(5));
    assert_eq!(
        code,
        0,
        "ws client failed during the drain\n{}\nfront:\n{}",
        client.dump(),
        f.run.dump()
    );
    assert!(client.stdout.contains("WS-OK 5"), "{}", client.dump());
    assert!(
        term_at.elapsed() < secs(3),
        "the echoes took until {:?} after SIGTERM, past the 3 s delay",
        term_at.elapsed()
    );
    f.run.expect_exit(secs(20));
    let after = term_at.elapsed();
    assert!(
        after < secs(12),
        "exit {after:?} after SIGTERM (3 s delay + 2 s timeout)"
    );
}

/// A WebSocket tunnel is an open, busy connection: it keeps its place
/// under `--max-connections` after hyper has handed the socket over (it is
/// not idle, so not closed to make room), and its place comes free when
/// the tunnel closes. With a limit of 1, a GET on a second connection
/// waits in the backlog while the tunnel is open, and is answered after.
#[test]
fn a_websocket_tunnel_counts_as_an_open_connection() {
    let (f, go, mut client) = held_websocket("ws-limit", &["--max-connections", "1"]);
    let mut waiting = Conn::open(f.listen).unwrap();
    waiting
        .send(format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", f.listen).as_bytes())
        .unwrap();
    waiting.set_read_timeout(secs(1));
    let mut buf = [0u8; 256];
    match waiting.read_some(&mut buf) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        other => panic!(
            "a second connection was served while the tunnel held the only place: {other:?} {:?}\nfront:\n{}",
            String::from_utf8_lossy(&buf),
            f.run.dump()
        ),
    }
    // The tunnel ends (5 echoes, then the client closes it): the waiting
    // connection is accepted and answered.
    std::fs::write(&go, "").unwrap();
    assert_eq!(client.expect_code(secs(30)), 0, "{}", client.dump());
    waiting.set_read_timeout(secs(20));
    let resp = waiting.read_response(false).unwrap_or_else(|e| {
        panic!(
            "no answer after the tunnel closed: {e}\nfront:\n{}",
            f.run.dump()
        )
    });
    assert_health_true(&resp);
}
