//! Keep-alive on both sides: client connections kept past gunicorn's own
//! keep-alive, no 502 from stale pooled upstream connections, and the
//! client keep-alive (`--keep-alive`) cutting slowloris clients.

use std::thread;
use std::time::Instant;

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// One client connection, idle 15 s between two requests, while gunicorn's
/// own keep-alive is 2 s: the same connection serves both.
#[test]
fn idle_client_connection_is_kept_past_the_upstream_keepalive() {
    let f = start_gunicorn("idle-15s", &[], &["--keep-alive", "2"]);
    let mut c = Conn::open(f.listen).unwrap();
    let local = c.stream().local_addr().unwrap();
    let r = c.get("/").unwrap();
    assert_eq!(r.status, 200);
    assert_ne!(r.header("connection"), Some("close"));
    thread::sleep(secs(15)); // the idle time under test
    let r = c
        .get("/")
        .unwrap_or_else(|e| panic!("connection not kept: {e}\n{}", f.run.dump()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.stream().local_addr().unwrap(), local);
}

/// Requests spaced 1.9-2.2 s apart, around gunicorn's 2 s keep-alive, on
/// new and reused client connections: never a 502 from a stale pooled
/// upstream connection.
#[test]
fn requests_around_the_upstream_keepalive_never_get_502() {
    spaced_requests_get_no_502(&[]);
}

/// Even with a pool idle timeout longer than gunicorn's keep-alive, a stale
/// pooled connection is not a 502: a bodiless GET is sent once more.
#[test]
fn stale_pooled_connections_are_retried() {
    spaced_requests_get_no_502(&["--upstream-idle-timeout", "5s"]);
}

/// Requests spaced around gunicorn's 2 s keep-alive, on a reused client
/// connection and on new ones, all answered 200.
fn spaced_requests_get_no_502(flags: &[&str]) {
    let f = start_gunicorn("spaced", flags, &["--keep-alive", "2"]);
    let mut reused = Conn::open(f.listen).unwrap();
    let gaps = [1900u64, 2000, 2100, 2200, 1950, 2050, 2150, 2000];
    let mut statuses = Vec::new();
    for (i, gap) in gaps.iter().enumerate() {
        let r = if i % 2 == 0 {
            reused.get("/").unwrap()
        } else {
            f.get("/").unwrap()
        };
        statuses.push(r.status);
        thread::sleep(ms(*gap));
    }
    assert!(
        statuses.iter().all(|&s| s == 200),
        "{statuses:?}\n{}",
        f.run.dump()
    );
}

// ===========================================================================
// Slowloris and the client keep-alive
// ===========================================================================

/// `--keep-alive 1s`: clients that send half a header and stall, or trickle
/// a byte every 300 ms, are cut within a few seconds, while other clients
/// are served; an idle kept-alive connection is closed after about 1 s; a
/// request that takes longer than that is not.
#[test]
fn slowloris_is_cut_by_the_keep_alive() {
    let f = start_gunicorn("slowloris", &["--keep-alive", "1s"], &[]);
    let mut stalled: Vec<(Conn, Instant)> = (0..20)
        .map(|_| {
            let mut c = Conn::open(f.listen).unwrap();
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ").unwrap();
            (c, Instant::now())
        })
        .collect();
    // Others are served meanwhile.
    for _ in 0..10 {
        let r = f.get("/").unwrap();
        assert_eq!(r.status, 200);
    }
    for (c, opened) in stalled.iter_mut() {
        let mut got = Vec::new();
        let left = (*opened + secs(8)).saturating_duration_since(Instant::now());
        let closed = c.wait_closed(left, &mut got);
        assert!(closed.is_some(), "stalled client still connected 8 s later");
        let t = opened.elapsed();
        assert!(t >= ms(800), "cut after {t:?}, before the 1 s keep-alive");
        if got.is_empty() {
            eprintln!("stalled client closed after {t:?} without an answer");
        } else {
            eprintln!(
                "stalled client got {:?} after {t:?}",
                String::from_utf8_lossy(&got[..got.len().min(40)])
            );
        }
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "unexpected answer {:?}",
            String::from_utf8_lossy(&got)
        );
    }

    // A trickling client: one byte every 300 ms, never a full head.
    let mut c = Conn::open(f.listen).unwrap();
    let opened = Instant::now();
    let head =
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = None;
    for &b in head.iter() {
        if c.send(&[b]).is_err() {
            cut = Some(opened.elapsed());
            break;
        }
        let mut got = Vec::new();
        if c.wait_closed(ms(300), &mut got).is_some() {
            cut = Some(opened.elapsed());
            break;
        }
    }
    let cut = cut.expect("trickling client never cut");
    assert!(cut < secs(8), "trickling client cut after {cut:?}");

    // Idle keep-alive after a complete request: closed after ~1 s.
    let mut c = Conn::open(f.listen).unwrap();
    assert_eq!(c.get("/").unwrap().status, 200);
    let mut got = Vec::new();
    let closed = c.wait_closed(secs(8), &mut got);
    let t = closed.expect("idle connection not closed with --keep-alive 1s");
    assert!(t >= ms(700), "closed after {t:?}");
    assert_eq!(f.get("/").unwrap().status, 200);

    // A request that runs for longer than the keep-alive is not cut, and
    // its connection serves the next one.
    let mut c = Conn::open(f.listen).unwrap();
    let r = c.get("/slow?s=2.5").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get("/").unwrap().status, 200);
}
