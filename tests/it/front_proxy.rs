//! Proxying: bodies streamed byte-exact both ways (50 MB, chunked, HEAD),
//! request headers forwarded as a proxy should (hop-by-hop dropped, Expect
//! answered, X-Forwarded-*), the upstream's status codes and response
//! headers passed on.

use std::fs;

use crate::front_util::*;
use crate::http::*;
use crate::payload::*;
use crate::util::*;

// ===========================================================================
// Byte-exact proxying
// ===========================================================================

const BIG: usize = 50 * 1024 * 1024;

/// 50 MB up (curl --data-binary, which sends `Expect: 100-continue`) and
/// back through /echo, and 50 MB down from /bytes: sha256 equal.
#[test]
fn streams_50mb_both_ways_byte_exact() {
    let f = start_gunicorn("bytes", &[], &[]);
    let src = f.dir.join("up.bin");
    write_random_file(&src, BIG);
    let want = sha256_file(&src);

    let echoed = f.dir.join("echoed.bin");
    curl_post_file(&f.url("/echo"), &src, &echoed, &[], secs(120));
    assert_eq!(fs::metadata(&echoed).unwrap().len(), BIG as u64);
    assert_eq!(sha256_file(&echoed), want, "upload echoed back differs");

    let down = f.dir.join("down.bin");
    let out = curl(
        &[
            "-o",
            down.to_str().unwrap(),
            "-w",
            "%{http_code} %{size_download}",
            &f.url(&format!("/bytes?n={BIG}")),
        ],
        secs(120),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, format!("200 {BIG}"));
    let expected = f.dir.join("expected.bin");
    write_pattern_file(&expected, BIG);
    assert_eq!(
        sha256_file(&down),
        sha256_file(&expected),
        "download differs"
    );
}

/// A chunked upload (no Content-Length) of 5 MB is echoed byte-exact.
#[test]
fn chunked_upload_is_streamed_byte_exact() {
    let f = start_gunicorn("chunked", &[], &[]);
    let src = f.dir.join("up.bin");
    write_random_file(&src, 5 * 1024 * 1024 + 7);
    let echoed = f.dir.join("echoed.bin");
    let chunked = ["-H", "Transfer-Encoding: chunked"];
    curl_post_file(&f.url("/echo"), &src, &echoed, &chunked, secs(60));
    assert_eq!(sha256_file(&echoed), sha256_file(&src));

    // The same by hand, in three chunks, on a raw connection.
    let mut c = Conn::open(f.listen).unwrap();
    let mut msg =
        request_head("POST", "/echo", &[("Transfer-Encoding", "chunked")], None).into_bytes();
    for part in [&b"hello, "[..], b"chunked ", b"world"] {
        msg.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        msg.extend_from_slice(part);
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(b"0\r\n\r\n");
    c.send(&msg).unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, chunked world");
}

/// HEAD gets the headers of GET and no body: the next request on the same
/// connection is read correctly.
#[test]
fn head_has_no_body() {
    let f = start_gunicorn("head", &[], &[]);
    let out = curl(&["-I", &f.url("/bytes?n=12345")], secs(30));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("HTTP/1.1 200"), "{}", out.stdout);
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("content-length: 12345"),
        "{}",
        out.stdout
    );

    let mut c = Conn::open(f.listen).unwrap();
    let r = c.request("HEAD", "/bytes?n=12345", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("12345"));
    let r = c.request("HEAD", "/", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let r = c.get("/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["app"], "gunicorn-app");
    let r = c.get("/bytes?n=1000").unwrap();
    assert_eq!(
        r.body,
        (0..1000).map(|i| (i % 251) as u8).collect::<Vec<u8>>()
    );
}

// ===========================================================================
// Headers
// ===========================================================================

/// Hop-by-hop request headers (and what Connection names) are not
/// forwarded, Expect is removed (after we answered 100 Continue),
/// X-Forwarded-For is appended to, X-Forwarded-Proto set when absent.
#[test]
fn request_headers_forwarded_as_a_proxy_should() {
    let f = start_gunicorn("headers", &[], &[]);
    let mut c = Conn::open(f.listen).unwrap();
    let r = c
        .request(
            "GET",
            "/headers",
            &[
                ("Connection", "keep-alive, X-Secret"),
                ("X-Secret", "named by Connection"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "trailers"),
                ("Trailer", "X-Checksum"),
                ("Upgrade", "h2c"),
                ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
                ("Proxy-Authenticate", "Basic"),
                ("X-Forwarded-For", "10.1.2.3"),
                ("X-Kept", "yes"),
            ],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json();
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "transfer-encoding",
    ] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h}");
    }
    assert_eq!(h["x-kept"], "yes", "{h}");
    assert_eq!(h["x-forwarded-for"], "10.1.2.3, 127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-proto"], "http", "{h}");

    // A proxy in front already said https: kept. No XFF yet: just us.
    let r = c
        .request("GET", "/headers", &[("X-Forwarded-Proto", "https")], b"")
        .unwrap();
    let h = r.json();
    assert_eq!(h["x-forwarded-proto"], "https", "{h}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{h}");

    // Expect: 100-continue: we answer 100, the body flows, the upstream
    // sees no Expect header.
    let head = request_head(
        "POST",
        "/headers",
        &[("Expect", "100-continue"), ("Content-Length", "11")],
        None,
    );
    c.send(head.as_bytes()).unwrap();
    let interim = c.read_response(false).unwrap();
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send(b"hello world").unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let h = r.json();
    assert!(h.get("expect").is_none(), "Expect was forwarded: {h}");
    assert_eq!(h["content-length"], "11", "{h}");

    // And with a body that is read: /echo.
    let head = request_head(
        "POST",
        "/echo",
        &[("Expect", "100-continue"), ("Content-Length", "5")],
        None,
    );
    c.send(head.as_bytes()).unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 100);
    c.send(b"12345").unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"12345"[..]));
}

/// Status codes of the upstream pass through unchanged.
#[test]
fn upstream_status_codes_pass_through() {
    let f = start_gunicorn("status-codes", &[], &[]);
    let mut c = Conn::open(f.listen).unwrap();
    for code in [200u16, 201, 204, 301, 400, 404, 418, 431, 500, 503] {
        let r = c.get(&format!("/status/{code}")).unwrap();
        assert_eq!(r.status, code, "{}", r.text());
        if code >= 400 {
            // The upstream's own body, not one of the front's errors.
            assert_eq!(r.json()["status"], code, "{}", r.text());
        }
    }
    let r = c.get("/nowhere").unwrap();
    assert_eq!(r.status, 404);
}

/// Child for the response hop-by-hop test: an HTTP/1.1 server on $PORT
/// whose every answer carries hop-by-hop headers, one of them named only
/// by its `Connection` header.
const HOP_BY_HOP_SERVER: &str = r#"
import os, socket, threading
RESP = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Secret\r\n"
        b"X-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
        b"Trailer: X-T\r\nX-Kept: k\r\n\r\nok")
def serve(c):
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        buf += d
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1)
            c.sendall(RESP)
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Hop-by-hop headers of the upstream's response describe its connection to
/// us, not ours to the client: dropped, with whatever its `Connection`
/// header names; the others pass.
#[test]
fn response_hop_by_hop_headers_are_dropped() {
    let mut f = spawn_child("hop-resp", &[], &["python3", "-c", HOP_BY_HOP_SERVER]);
    f.wait_ready("/health");
    let mut c = Conn::open(f.listen).unwrap();
    for _ in 0..2 {
        let r = c.get("/").unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, b"ok");
        for h in ["x-secret", "keep-alive", "proxy-connection", "trailer"] {
            assert!(r.header(h).is_none(), "{h} passed through: {r:?}");
        }
        assert!(
            r.header("connection")
                .is_none_or(|v| !v.to_ascii_lowercase().contains("x-secret")),
            "{r:?}"
        );
        assert_eq!(r.header("x-kept"), Some("k"), "{r:?}");
    }
}
