//! Strict HTTP/1.1 in front of a lenient upstream: what a client's bytes
//! become on the upstream's side, byte for byte. The upstream is
//! `tests/py/record_upstream.py`, which records every request it receives
//! (the readiness probe's excepted) and answers 200 "ok".
//!
//! Host (RFC 9112 §3.2), absolute-form targets, CONNECT, client body
//! errors, upgrades other than WebSocket (h2c smuggling), and the framing
//! attacks hyper's parser refuses (CL+TE, duplicate or signed
//! Content-Length, obs-fold, NUL, bare CR).

use std::fs;
use std::net::{Shutdown, SocketAddr};

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// modelarts-init in front of the recording upstream, ready; and the
/// upstream's address.
fn recorder(tag: &str) -> (Front, SocketAddr) {
    let (init, dir, listen, upstream) = init_on_free_ports(tag, &[]);
    let argv = ["python3", &py_script("record_upstream.py"), dir.str()].map(String::from);
    let mut f = Front::spawn(init, dir, listen, &argv);
    f.wait_ready("/health");
    (f, upstream)
}

/// The requests the upstream received, as text.
fn received(f: &Front) -> Vec<String> {
    fs::read(f.dir.join("requests"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split("\n=====\n")
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `raw` on a new connection and reads one answer.
fn exchange(f: &Front, raw: &[u8]) -> Resp {
    let mut c = Conn::open(f.listen).unwrap();
    c.set_read_timeout(secs(10));
    c.send(raw).unwrap();
    c.read_response(false).unwrap_or_else(|e| {
        panic!(
            "no answer to {:?}: {e}\n{}",
            String::from_utf8_lossy(raw),
            f.run.dump()
        )
    })
}

#[test]
fn host_is_required_once_on_http_1_1() {
    let (f, upstream) = recorder("host");
    for raw in [
        &b"GET /a HTTP/1.1\r\n\r\n"[..],
        b"GET /b HTTP/1.1\r\nHost: one\r\nHost: two\r\n\r\n",
        b"GET /c HTTP/1.0\r\nHost: one\r\nHost: two\r\n\r\n",
        b"GET /d HTTP/1.1\r\nHost: a/b\r\n\r\n",
    ] {
        let r = exchange(&f, raw);
        r.assert_json_error(400, "bad_host");
    }
    assert!(received(&f).is_empty(), "{:?}", received(&f));
    // HTTP/1.0 may omit it: the upstream gets its own address.
    let r = exchange(&f, b"GET /e HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    let got = received(&f);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("GET /e HTTP/1.0\r\n"), "{got:?}");
    assert!(
        got[0].contains(&format!("\r\nhost: {upstream}\r\n")),
        "{got:?}"
    );
}

#[test]
fn an_absolute_form_target_becomes_origin_form_with_its_host() {
    let (f, _) = recorder("absform");
    let r = exchange(
        &f,
        b"GET http://example.com:81/a?b=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = received(&f);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{got:?}");
    assert!(got[0].contains("\r\nhost: example.com:81\r\n"), "{got:?}");
    assert!(!got[0].contains("other.example"), "{got:?}");
}

#[test]
fn connect_is_501() {
    let (f, _) = recorder("connect");
    let r = exchange(
        &f,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    );
    r.assert_json_error(501, "not_implemented");
    assert!(received(&f).is_empty(), "{:?}", received(&f));
}

#[test]
fn a_clients_broken_body_is_its_own_400() {
    let (f, _) = recorder("badbody");
    // A chunk size that is not hex.
    let r = exchange(
        &f,
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    );
    r.assert_json_error(400, "bad_request_body");
    // A body shorter than its Content-Length: the client stops sending.
    let mut c = Conn::open(f.listen).unwrap();
    c.set_read_timeout(secs(10));
    c.send(b"POST /y HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly ten b")
        .unwrap();
    c.stream().shutdown(Shutdown::Write).unwrap();
    let r = c.read_response(false).unwrap();
    r.assert_json_error(400, "bad_request_body");
    assert!(received(&f).is_empty(), "{:?}", received(&f));
    // Logged as the client's doing, not the upstream's.
    let line = f
        .wait_log("the client's body is malformed", secs(5))
        .unwrap_or_else(|| panic!("no log of the client's body\n{}", f.run.dump()));
    assert!(line.contains("client=127.0.0.1:"), "{line}");
    assert!(
        !f.run.stdout.contains("upstream request failed"),
        "blamed on the upstream\n{}",
        f.run.dump()
    );
}

#[test]
fn only_websocket_upgrades_pass_an_h2c_upgrade_is_dropped() {
    let (f, _) = recorder("h2c");
    let r = exchange(
        &f,
        b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!(r.status, 200, "a plain request: {r:?}");
    assert_eq!(r.text(), "ok");
    let got = received(&f);
    assert_eq!(got.len(), 1, "{got:?}");
    let lower = got[0].to_ascii_lowercase();
    for gone in ["upgrade", "http2-settings", "connection:"] {
        assert!(
            !lower.contains(gone),
            "{gone} reached the upstream: {got:?}"
        );
    }
}

#[test]
fn framing_attacks_never_reach_the_upstream() {
    let (f, _) = recorder("smuggle");
    for (what, raw) in [
        (
            "two different Content-Lengths",
            &b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"
                [..],
        ),
        (
            "a signed Content-Length",
            b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\nabcd",
        ),
        (
            "an obs-folded header",
            b"GET /3 HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n",
        ),
        (
            "a NUL in a header",
            b"GET /4 HTTP/1.1\r\nHost: h\r\nX-A: b\0c\r\n\r\n",
        ),
        (
            "a bare CR in a header",
            b"GET /5 HTTP/1.1\r\nHost: h\r\nX-A: b\rc\r\n\r\n",
        ),
    ] {
        let r = exchange(&f, raw);
        assert_eq!(r.status, 400, "{what}: {r:?}");
        assert_eq!(r.json()["error"], "bad_request", "{what}: {r:?}");
    }
    assert!(received(&f).is_empty(), "{:?}", received(&f));
    // Content-Length and Transfer-Encoding together: Transfer-Encoding
    // wins and the Content-Length goes (RFC 9112 6.1), so the upstream
    // sees one framing, never two to disagree on.
    let r = exchange(
        &f,
        b"POST /6 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = received(&f);
    assert_eq!(got.len(), 1, "{got:?}");
    let lower = got[0].to_ascii_lowercase();
    assert!(lower.contains("transfer-encoding: chunked"), "{got:?}");
    assert!(!lower.contains("content-length"), "{got:?}");
}
