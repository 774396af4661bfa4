//! `--proxy-threads`: serving threads that share the port and the drain.

use crate::front_util::*;
use crate::util::*;

/// Voluntary context switches of the thread of `pid` named `name`.
fn thread_switches(pid: i32, name: &str) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            if comm.trim() != name {
                return None;
            }
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
}

/// `--proxy-threads 2`: a second serving thread with its own listener on
/// the same port (SO_REUSEPORT) takes part of the connections; every
/// request is answered, the status page counts both threads' requests, and
/// SIGTERM drains both: /health 503 at once, the child stopped after the
/// delay, exit with its status.
#[test]
fn proxy_threads_share_the_port_and_the_drain() {
    let mut f = start_gunicorn(
        "threads",
        &[
            "--proxy-threads",
            "2",
            "--status-path",
            "/_status",
            "--drain-delay",
            "2s",
            "--stop-timeout",
            "5s", // gunicorn's ~1.5 s to stop, with room on a loaded machine
        ],
        &[],
    );
    let pid = f.run.pid();
    let served = |f: &Front| {
        f.get("/_status").unwrap().json()["requests_served"]
            .as_u64()
            .unwrap()
    };
    let before = served(&f);
    let switches = thread_switches(pid, "proxy-1")
        .unwrap_or_else(|| panic!("no thread proxy-1 in {pid}\n{}", f.run.dump()));
    // A fresh connection each: the kernel spreads them over both listeners.
    for _ in 0..60 {
        let r = f.get("/").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let after = served(&f);
    assert!(after >= before + 60, "served {before} -> {after}");
    let woke = thread_switches(pid, "proxy-1").unwrap() - switches;
    assert!(
        woke >= 5,
        "proxy-1 woke {woke} times for 60 connections: not serving"
    );

    let (_, failed_after) = f.sigterm_until_draining();
    assert!(failed_after < secs(2), "{failed_after:?}");
    // Traffic is still served during the delay, on both threads.
    for _ in 0..10 {
        assert_eq!(f.get("/").unwrap().status, 200);
    }
    f.wait_child_stop_signal();
    let code = f.run.expect_code(secs(20));
    assert_eq!(code, 0, "gunicorn's status after SIGTERM\n{}", f.run.dump());
}
