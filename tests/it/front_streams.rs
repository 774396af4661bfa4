//! Streams through the proxy: server-sent events pass each event as it
//! comes (tested in lockstep, not with timings), and a stream that stalls
//! is cut by `--stream-idle-timeout` (or `--request-timeout`'s value). The
//! upstream is `tests/py/streams_app.py` under gunicorn.

use std::fs;
use std::time::Instant;

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

fn streams(tag: &str, flags: &[&str]) -> Front {
    let (init, dir, listen, upstream) = init_on_free_ports(tag, flags);
    let argv = gunicorn_app_argv(&dir, upstream, &test_apps_dir(), "streams_app:app", &[]);
    let mut f = Front::spawn(init, dir, listen, &argv);
    f.wait_ready("/health");
    f
}

/// Reads from `c` until `needle` has arrived (or the deadline passes).
fn read_until(c: &mut Conn, got: &mut Vec<u8>, needle: &str, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(needle) {
        if Instant::now() > deadline {
            return false;
        }
        match c.read_some(&mut buf) {
            Ok(0) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    true
}

#[test]
fn server_sent_events_pass_one_by_one() {
    let f = streams("sse", &[]);
    let mut c = Conn::open(f.listen).unwrap();
    c.set_read_timeout(ms(100));
    let path = format!("/lockstep?n=5&dir={}", f.dir.str());
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
    )
    .unwrap();
    // The upstream sends event k+1 only once we have said we got event k:
    // each one must come through alone, within 5 s for the whole stream.
    let deadline = Instant::now() + secs(5);
    let mut got = Vec::new();
    for k in 0..5 {
        let event = format!("data: event {k}\n\n");
        assert!(
            read_until(&mut c, &mut got, &event, deadline),
            "event {k} did not come through; got {:?}\n{}",
            String::from_utf8_lossy(&got),
            f.run.dump()
        );
        fs::write(f.dir.join(&format!("got-{k}")), "").unwrap();
    }
    assert!(!String::from_utf8_lossy(&got).contains("gave up"));
}

#[test]
fn a_stalled_stream_is_cut_by_the_stream_idle_timeout() {
    let f = streams("stall", &["--stream-idle-timeout", "1s"]);
    assert_stall_is_cut(&f);
}

#[test]
fn the_request_timeout_also_bounds_a_stalled_stream() {
    let f = streams("stall-rt", &["--request-timeout", "1s"]);
    assert_stall_is_cut(&f);
}

fn assert_stall_is_cut(f: &Front) {
    let mut c = Conn::open(f.listen).unwrap();
    c.set_read_timeout(ms(100));
    c.send(b"GET /stall HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let mut got = Vec::new();
    assert!(
        read_until(&mut c, &mut got, "data: first", Instant::now() + secs(10)),
        "the first event never came\n{}",
        f.run.dump()
    );
    // Then nothing for 60 s upstream: the connection is closed instead.
    assert!(
        c.wait_closed(secs(10), &mut got).is_some(),
        "the stalled stream was not cut\n{}",
        f.run.dump()
    );
    assert!(!String::from_utf8_lossy(&got).contains("late"));
    let line = f
        .wait_log("response stream cut", secs(5))
        .unwrap_or_else(|| panic!("the cut is not logged\n{}", f.run.dump()));
    assert!(line.contains("1000 ms"), "{line}");
    // The front goes on serving.
    assert_eq!(f.get("/health").unwrap().status, 200);
}
