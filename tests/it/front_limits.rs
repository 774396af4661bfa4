//! What the front refuses from clients: bodies past `--max-body` (413),
//! heads too large (431), what hyper cannot parse (400, 414), and clients
//! past `--max-connections` (held back in the backlog).

use std::io::Write;
use std::path::Path;
use std::thread;

use crate::front_util::*;
use crate::http::*;
use crate::payload::*;
use crate::util::*;

/// `--max-body 1000`: larger bodies get 413 JSON, with Content-Length
/// (before anything is read) and chunked (while streaming); bodies up to
/// the limit pass.
#[test]
fn max_body_gives_413() {
    let f = start_gunicorn("413", &["--max-body", "1000"], &[]);
    let big = f.dir.join("big.bin");
    write_random_file(&big, 100_000);
    let at_limit = f.dir.join("ok.bin");
    write_random_file(&at_limit, 1000);
    let body = |p: &Path| format!("@{}", p.display());

    // Content-Length over the limit.
    let r = http(f.listen, "POST", "/echo", &[], &vec![b'a'; 1001]).unwrap();
    r.assert_json_error(413, "body_too_large");
    let out = curl(
        &["-i", "--data-binary", &body(&big), &f.url("/echo")],
        secs(30),
    );
    assert_curl_413(&out);

    // Chunked over the limit.
    let out = curl(
        &[
            "-i",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &body(&big),
            &f.url("/echo"),
        ],
        secs(30),
    );
    assert_curl_413(&out);
    assert!(
        out.stdout
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        out.stdout
    );
    let mut c = Conn::open(f.listen).unwrap();
    let mut msg =
        request_head("POST", "/echo", &[("Transfer-Encoding", "chunked")], None).into_bytes();
    for _ in 0..3 {
        msg.extend_from_slice(b"258\r\n"); // 600 bytes
        msg.extend_from_slice(&[b'z'; 600]);
        msg.extend_from_slice(b"\r\n");
    }
    msg.extend_from_slice(b"0\r\n\r\n");
    c.send(&msg).unwrap();
    c.read_response(false)
        .unwrap()
        .assert_json_error(413, "body_too_large");

    // At the limit: passes, both ways.
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let out_file = f.dir.join("echoed.bin");
        curl_post_file(&f.url("/echo"), &at_limit, &out_file, extra, secs(30));
        assert_eq!(sha256_file(&out_file), sha256_file(&at_limit));
    }
}

/// Asserts a `curl -i` output is a 413 answer with the `body_too_large` JSON error.
fn assert_curl_413(out: &CurlOut) {
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("HTTP/1.1 413"), "{}", out.stdout);
    assert!(
        out.stdout.contains(r#""error":"body_too_large""#),
        "{}",
        out.stdout
    );
}

/// A 100 KB header: 431 JSON (ours: under hyper's 256 KiB buffer).
#[test]
fn huge_header_gives_431() {
    let f = start_gunicorn("431", &[], &[]);
    let big = "a".repeat(100 * 1024);
    let r = http(f.listen, "GET", "/", &[("X-Big", &big)], b"").unwrap();
    r.assert_json_error(431, "headers_too_large");
    // Many headers that add up past 64 KiB count too.
    let v = "b".repeat(1000);
    let names: Vec<String> = (0..80).map(|i| format!("X-H{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), v.as_str())).collect();
    let r = http(f.listen, "GET", "/", &many, b"").unwrap();
    r.assert_json_error(431, "headers_too_large");
    // Under the limit: proxied (gunicorn's own limit is 8190 per field).
    let r = http(
        f.listen,
        "GET",
        "/headers",
        &[("X-Ok", &"c".repeat(4000))],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // 1 MiB of header: past hyper's own read buffer, so hyper answers; its
    // bare 431 gets our JSON body on the way out.
    let mut c = Conn::open(f.listen).unwrap();
    let mut writer = c.stream().try_clone().unwrap();
    let huge = request_head("GET", "/", &[("X-Huge", &"d".repeat(1 << 20))], None);
    let w = thread::spawn(move || {
        let _ = writer.write_all(huge.as_bytes());
    });
    let r = c.read_response(false).unwrap();
    let _ = w.join();
    r.assert_json_error(431, "headers_too_large");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(f.get("/").unwrap().status, 200);
}

/// What hyper cannot parse gets a JSON error too: a garbage request line or
/// header 400, a target over hyper's limit 414; on a fresh connection, and
/// after a request served on a kept-alive one. The connection is closed.
#[test]
fn garbage_request_line_gives_400() {
    let f = start_gunicorn("400", &[], &[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let cases: [(&[u8], u16, &str); 4] = [
        (b"\x01\x02\x03 / HTTP/1.1\r\n\r\n", 400, "bad_request"),
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            400,
            "bad_request",
        ),
        (long_target.as_bytes(), 414, "uri_too_long"),
    ];
    for (after_a_request, (garbage, status, code)) in [false, true]
        .into_iter()
        .flat_map(|a| cases.iter().map(move |c| (a, c)))
    {
        let what = format!(
            "{:?}{}",
            String::from_utf8_lossy(&garbage[..garbage.len().min(40)]),
            if after_a_request {
                " after a request"
            } else {
                ""
            }
        );
        let mut c = Conn::open(f.listen).unwrap();
        if after_a_request {
            assert_eq!(c.get("/").unwrap().status, 200, "{what}");
        }
        c.send(garbage).unwrap();
        let r = c
            .read_response(false)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        r.assert_json_error(*status, code);
        assert_eq!(r.header("connection"), Some("close"), "{what}: {r:?}");
        let mut rest = Vec::new();
        assert!(
            c.wait_closed(secs(5), &mut rest).is_some(),
            "{what}: not closed"
        );
        assert!(rest.is_empty(), "{what}: more after the answer: {rest:?}");
    }
    // The front is unharmed.
    assert_eq!(f.get("/").unwrap().status, 200);
}

/// `--max-connections 2`: a third client is served at once, and the held
/// connection idle the longest is closed to make room (nginx's way); the
/// limit is logged once. With both held connections busy, a new client
/// waits in the backlog until one is done.
#[test]
fn max_connections_makes_room_by_closing_the_idlest() {
    let f = start_gunicorn("maxconn", &["--max-connections", "2"], &[]);
    let mut held: Vec<Conn> = (0..2).map(|_| Conn::open(f.listen).unwrap()).collect();
    for c in held.iter_mut() {
        assert_eq!(c.get("/").unwrap().status, 200);
    }
    let mut third = Conn::open(f.listen).unwrap();
    third.set_read_timeout(secs(10));
    assert_eq!(third.get("/").unwrap().status, 200, "{}", f.run.dump());
    // The first held connection (idle the longest) was closed.
    let mut got = Vec::new();
    assert!(
        held[0].wait_closed(secs(5), &mut got).is_some(),
        "the connection idle the longest is still open\n{}",
        f.run.dump()
    );
    assert_eq!(held[1].get("/").unwrap().status, 200, "the other one stays");
    assert!(f.wait_log("connection limit reached", secs(5)).is_some());
    // Both slots busy (slow requests): a new client waits until one ends.
    let slow: Vec<_> = [held.pop().unwrap(), third]
        .into_iter()
        .map(|mut c| {
            c.send(b"GET /slow?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    let mut fourth = Conn::open(f.listen).unwrap();
    fourth.set_read_timeout(ms(800));
    assert!(
        fourth.get("/").is_err(),
        "served while both connections were busy"
    );
    fourth.set_read_timeout(secs(10));
    let r = fourth.read_response(false).unwrap_or_else(|e| {
        panic!(
            "fourth client never served after a slow request ended: {e}\n{}",
            f.run.dump()
        )
    });
    assert_eq!(r.status, 200, "{}", r.text());
    drop(slow);
}

/// Under a hard open-files limit of 1024, 2,000 idle client connections
/// never starve `/health` or the readiness probe: the connection limit
/// comes from the open-files limit ((1024 - 64) / 2 = 480, logged at
/// start), idle connections are closed to make room, and the limit is
/// logged once for the whole episode.
#[test]
fn a_flood_of_idle_connections_never_fails_health() {
    if !is_root() {
        skip(
            "a_flood_of_idle_connections_never_fails_health",
            "prlimit needs root to lower the hard limit here",
        );
        return;
    }
    // Ourselves: room for 2,000 client sockets.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = 4096.min(hard);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, hard).unwrap();
    let (init, dir, listen, upstream) = init_on_free_ports("flood", &[]);
    let cmd = init.into_command();
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut limited = scrubbed_command("prlimit");
    limited.arg("--nofile=1024:1024").arg(program).args(args);
    limited
        .args(["--"])
        .args(gunicorn_argv(&dir, upstream, &[]));
    let mut f = Front {
        run: Running::spawn(limited),
        dir,
        listen,
    };
    f.wait_ready("/health");
    let line = f.wait_log("connection limit:", secs(5)).unwrap();
    assert!(line.contains("max_connections=480"), "{line}");
    let mut idle = Vec::new();
    for _ in 0..2000 {
        match std::net::TcpStream::connect(f.listen) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {}: {e}", idle.len()),
        }
    }
    // /health answers, and the probe keeps the instance ready, for 3 s of
    // polling while the idle connections stay open on our side.
    let until = std::time::Instant::now() + secs(3);
    while std::time::Instant::now() < until {
        let h =
            get(f.listen, "/health").unwrap_or_else(|e| panic!("/health: {e}\n{}", f.run.dump()));
        assert_health_true(&h);
        std::thread::sleep(ms(100));
    }
    assert_eq!(get(f.listen, "/").unwrap().status, 200);
    drop(idle);
    let out = f.run.stdout.text();
    assert_eq!(
        out.matches("connection limit reached").count(),
        1,
        "the limit is logged once per episode\n{}",
        f.run.dump()
    );
    assert!(
        !out.contains("cannot accept"),
        "descriptors ran out\n{}",
        f.run.dump()
    );
    assert!(!out.contains("readiness lost"), "{}", f.run.dump());
}
