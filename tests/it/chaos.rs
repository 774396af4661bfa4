//! The chaos suite: modelarts-init against children and clients that
//! misbehave, each case with what must hold: no panic, no hang past its
//! bound, nothing left running (modelarts-init runs under
//! `tests/py/subreaper.py`, which inherits and counts whatever it leaves),
//! and the right status.
//!
//! Cases that other modules already cover are not repeated here (README,
//! "The chaos suite", lists them all): setsid escapees that ignore SIGTERM
//! at the stop timeout (`supervisor::stop_timeout_sigkills_child_grandchild_and_setsid_escapees`,
//! `supervisor::leftovers_get_sigterm_then_sigkill_and_are_reaped_before_we_exit`),
//! upstream keep-alive shorter and longer than ours (`front_keepalive`),
//! slowloris (`front_keepalive::slowloris_is_cut_by_the_keep_alive`),
//! SIGTERM before ready (`front_drain::sigterm_before_ready_skips_the_drain_delay`),
//! an upstream that closes before answering (`front_upstream`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::front_util::*;
use crate::http::*;
use crate::util::*;

/// modelarts-init under `tests/py/subreaper.py`, listening on `listen`.
struct Chaos {
    run: Running,
    listen: SocketAddr,
    dir: TempDir,
}

/// Starts `modelarts-init flags -- argv` on free ports under the subreaper;
/// `argv` may name the temp dir as `{dir}`.
fn chaos(tag: &str, flags: &[&str], argv: &[String]) -> Chaos {
    let (init, dir, listen, _) = init_on_free_ports(tag, flags);
    let argv: Vec<String> = argv.iter().map(|a| a.replace("{dir}", dir.str())).collect();
    chaos_init(init.command(&argv), dir, listen)
}

/// Runs `init` (a whole command line) under the subreaper.
fn chaos_init(init: Init, dir: TempDir, listen: SocketAddr) -> Chaos {
    let cmd = init.into_command();
    let mut wrapped = scrubbed_command("python3");
    wrapped
        .arg(repo().join("tests/py/subreaper.py"))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    Chaos {
        run: Running::spawn(wrapped),
        listen,
        dir,
    }
}

impl Chaos {
    /// modelarts-init's pid, once it runs; found by name, as `python3`
    /// may be a shim that runs helpers of its own first.
    fn init_pid(&self) -> i32 {
        let mut pid = None;
        wait_until(secs(10), || {
            pid = children_of(self.run.pid())
                .into_iter()
                .find(|s| s.comm == "modelarts-init")
                .map(|s| s.pid);
            pid.is_some()
        });
        pid.unwrap_or_else(|| panic!("modelarts-init never started\n{}", self.run.dump()))
    }

    fn signal(&self, sig: Signal) {
        // ESRCH is fine: it may have exited already.
        let _ = kill(Pid::from_raw(self.init_pid()), sig);
    }

    fn wait_ready(&self) {
        let ok = wait_until(secs(60), || {
            get(self.listen, "/health").is_ok_and(|r| r.status == 200)
        });
        assert!(ok, "/health never 200\n{}", self.run.dump());
    }

    /// Waits (up to `bound`) for modelarts-init to exit and returns its exit
    /// code, asserting that it left nothing behind and did not panic.
    fn end(&mut self, bound: Duration) -> i32 {
        let started = Instant::now();
        self.run.finish(bound + secs(5));
        let took = started.elapsed();
        let out = self.run.stdout.text();
        assert!(
            !out.contains("panicked") && !self.run.stderr.text().contains("panicked"),
            "modelarts-init panicked\n{}",
            self.run.dump()
        );
        assert!(
            out.contains("LEFT 0 \n"),
            "modelarts-init left processes behind\n{}",
            self.run.dump()
        );
        let code = out
            .lines()
            .find_map(|l| l.strip_prefix("EXIT "))
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("no EXIT line\n{}", self.run.dump()));
        assert!(
            took <= bound,
            "took {took:?} to end, past its bound of {bound:?}\n{}",
            self.run.dump()
        );
        code
    }
}

fn strings(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|s| s.to_string()).collect()
}

/// Each run of this child (`sh -c CRASH_LEAVING_A_DAEMON sh DIR`) leaves
/// a daemon that called setsid and ignores SIGTERM (once it is set up),
/// then exits 3.
const CRASH_LEAVING_A_DAEMON: &str = r#"
d="$1/daemon.$$"
d="$d" setsid sh -c 'trap "" TERM; : > "$d"; exec sleep 1000' >/dev/null 2>&1 &
while [ ! -e "$d" ]; do sleep 0.01; done
exit 3
"#;

fn crashing_child() -> Vec<String> {
    strings(&["sh", "-c", CRASH_LEAVING_A_DAEMON, "sh", "{dir}"])
}

// ===========================================================================
// The child
// ===========================================================================

/// A child that crashes at once, leaving a daemon that ignores SIGTERM,
/// without --restart: modelarts-init exits 3 within the leftover grace,
/// the daemon SIGKILLed and reaped.
#[test]
fn a_crashing_child_without_restart_ends_us_with_its_status() {
    let flags = ["--leftover-grace", "300ms", "--upstream-health", "tcp"];
    let mut c = chaos("crash", &flags, &crashing_child());
    assert_eq!(c.end(secs(5)), 3);
    let out = c.run.stdout.text();
    assert!(out.contains("signal=SIGKILL"), "{}", c.run.dump());
}

/// A crash loop under `--restart on-failure`: five runs, each leaving a
/// daemon that ignores SIGTERM; /health never says ready; after
/// --max-restarts it gives up with the child's status, and every daemon is
/// gone.
#[test]
fn a_crash_loop_with_restart_on_failure_gives_up_and_leaves_nothing() {
    let flags = [
        "--restart",
        "on-failure",
        "--restart-backoff",
        "50ms..200ms",
        "--max-restarts",
        "4",
        "--leftover-grace",
        "300ms",
        "--upstream-health",
        "tcp",
    ];
    let mut c = chaos("crashloop", &flags, &crashing_child());
    let mut answers = Vec::new();
    while c.run.try_status().is_none() {
        if let Ok(r) = get(c.listen, "/health") {
            answers.push(r.status);
        }
        thread::sleep(ms(20));
    }
    assert_eq!(c.end(secs(20)), 3);
    assert!(
        answers.iter().all(|&s| s == 503),
        "/health answered {answers:?}"
    );
    let out = c.run.stdout.text();
    assert_eq!(out.matches("child started").count(), 5, "{}", c.run.dump());
    assert!(out.contains("giving up"), "{}", c.run.dump());
    assert!(out.contains("signal=SIGKILL"), "{}", c.run.dump());
}

// ===========================================================================
// The upstream
// ===========================================================================

fn broken_upstream(tag: &str, mode: &str, extra: &[&str]) -> Chaos {
    let mut flags = vec![
        "--upstream-health",
        "tcp",
        "--drain-delay",
        "1s",
        "--stop-timeout",
        "1s",
    ];
    flags.extend_from_slice(extra);
    let argv = strings(&["python3", &py_script("chaos_upstream.py"), mode]);
    let c = chaos(tag, &flags, &argv);
    c.wait_ready();
    c
}

/// SIGTERM, then the end within drain + stop timeout (+ slack): the Python
/// upstream dies of its SIGTERM, which is our status.
fn stop_broken_upstream(mut c: Chaos) {
    c.signal(Signal::SIGTERM);
    assert_eq!(c.end(secs(6)), 143);
}

/// An upstream that accepts and never answers: 504 JSON at
/// --request-timeout, /health stays 200, the front serves on, the stop
/// keeps its bound.
#[test]
fn an_upstream_that_hangs_gets_504_within_the_request_timeout() {
    let c = broken_upstream("hang", "hang", &["--request-timeout", "1s"]);
    for _ in 0..3 {
        let t = Instant::now();
        let r = get(c.listen, "/").unwrap();
        r.assert_json_error(504, "timeout");
        assert!(t.elapsed() < secs(4), "504 after {:?}", t.elapsed());
    }
    assert_health_true(&get(c.listen, "/health").unwrap());
    stop_broken_upstream(c);
}

/// An upstream that closes in the middle of its body: the client gets the
/// head and part of the body, then its connection is closed (a proxy
/// cannot take back a 200 it has passed on; the close says the answer is
/// truncated), and nothing hangs; the front serves the next client.
#[test]
fn an_upstream_closing_mid_response_cuts_the_client_connection() {
    let c = broken_upstream("midway", "midway", &[]);
    for _ in 0..3 {
        let mut s = TcpStream::connect(c.listen).unwrap();
        s.set_read_timeout(Some(secs(5))).unwrap();
        s.write_all(request_head("GET", "/", &[], None).as_bytes())
            .unwrap();
        let mut got = Vec::new();
        let started = Instant::now();
        // EOF or a reset: either way the connection ends, within 5 s.
        let _ = s.read_to_end(&mut got);
        assert!(started.elapsed() < secs(5), "the connection hung");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert!(body.len() < 1000, "a whole body from a broken upstream");
    }
    assert_health_true(&get(c.listen, "/health").unwrap());
    let line = c
        .run
        .stdout
        .text()
        .lines()
        .find(|l| l.contains("WARN"))
        .map(str::to_owned);
    eprintln!("logged: {line:?}");
    stop_broken_upstream(c);
}

/// An upstream that answers bytes that are not HTTP: 502 JSON, every time.
#[test]
fn an_upstream_sending_garbage_gets_502() {
    let c = broken_upstream("garbage", "garbage", &[]);
    for _ in 0..3 {
        get(c.listen, "/")
            .unwrap()
            .assert_json_error(502, "upstream_error");
    }
    assert_health_true(&get(c.listen, "/health").unwrap());
    stop_broken_upstream(c);
}

// ===========================================================================
// Signals
// ===========================================================================

/// 1,000 SIGUSR1 while serving, then two storms of 200 SIGTERMs, sent as
/// fast as they can be: modelarts-init survives the first storm (the child
/// gets USR1); a SIGTERM storm is at least one SIGTERM (a signal pending
/// twice is delivered once: the kernel coalesces them), so the first one
/// starts the 30 s drain, and the second, once the drain is on, is the
/// fast stop: the child gets its stop signal at once, once, and we exit
/// with its status.
#[test]
fn signal_storms_are_survived_and_a_sigterm_storm_in_the_drain_is_a_fast_stop() {
    let script = r#"
n=0
trap 'n=$((n+1))' USR1
trap 'echo $n > "$1/usr1"; exit 0' TERM
echo ready > "$1/ready"
while :; do sleep 0.05; done
"#;
    // Pure init: no front (its flags are refused with --no-proxy).
    let flags = ["--no-proxy", "--drain-delay", "30s", "--stop-timeout", "2s"];
    let dir = TempDir::new("storm");
    let init = Init::new().args(flags).sh(script, &[dir.str()]);
    let mut c = chaos_init(init, dir, free_addr());
    assert!(
        wait_for_file(&c.dir.join("ready"), secs(10)).is_some(),
        "{}",
        c.run.dump()
    );
    let pid = Pid::from_raw(c.init_pid());
    let storm = |sig: Signal, n: usize| {
        for _ in 0..n {
            let _ = kill(pid, sig);
        }
    };
    storm(Signal::SIGUSR1, 1000);
    storm(Signal::SIGTERM, 200);
    let drain = wait_until(secs(5), || c.run.stdout.text().contains("draining:"));
    assert!(drain, "no drain after a SIGTERM storm\n{}", c.run.dump());
    let started = Instant::now();
    storm(Signal::SIGTERM, 200);
    assert_eq!(c.end(secs(5)), 0);
    assert!(started.elapsed() < secs(5));
    let usr1: u32 = std::fs::read_to_string(c.dir.join("usr1"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(usr1 >= 1, "the child got no USR1\n{}", c.run.dump());
    let out = c.run.stdout.text();
    assert_eq!(
        out.matches("stop signal to child").count(),
        1,
        "{}",
        c.run.dump()
    );
}

/// SIGTERM at every moment of start-up, from as soon as the process exists
/// to a second in (gunicorn's workers still importing a 3 s app): always
/// an end within the stop timeout, never the 30 s drain (no balancer can
/// have routed traffic to an instance that was never ready), nothing left,
/// a clean status.
#[test]
fn sigterm_at_every_moment_of_start_up_ends_cleanly() {
    let flags = ["--drain-delay", "30s", "--stop-timeout", "2s"];
    for delay_ms in [0u64, 2, 5, 10, 20, 50, 100, 300, 600, 1000] {
        let (init, dir, listen, upstream) = init_on_free_ports("startup", &flags);
        let argv = gunicorn_app_argv(&dir, upstream, &test_apps_dir(), "slow_import:app", &[]);
        let c = chaos_init(init.env("IMPORT_DELAY", "3").command(&argv), dir, listen);
        // The delay is the variable under test: where in start-up the
        // SIGTERM lands.
        thread::sleep(ms(delay_ms));
        c.signal(Signal::SIGTERM);
        let mut c = c;
        let code = c.end(secs(8));
        // 0: gunicorn stopped on its TERM; 143: the TERM came before
        // Python set its handlers; 137: a worker still importing was
        // SIGKILLed at the stop timeout; -15: the TERM came before ours
        // (the subreaper prints Python's returncode).
        assert!(
            [0, 143, 137, -15].contains(&code),
            "SIGTERM at {delay_ms} ms: exit {code}\n{}",
            c.run.dump()
        );
        assert!(
            !c.run.stdout.text().contains(r#"to="ready""#),
            "ready within {delay_ms} ms: not start-up any more\n{}",
            c.run.dump()
        );
        eprintln!("SIGTERM at {delay_ms} ms: exit {code}");
    }
}

// ===========================================================================
// Clients
// ===========================================================================

/// 10,000 idle keep-alive connections (each has had its answer): /health
/// and the proxied app still answer, nothing is refused, and the stop
/// closes them all within its bound.
#[test]
fn ten_thousand_idle_keep_alive_connections() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const N: usize = 10_000;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // This process holds the N client ends, modelarts-init the N server
    // ends (each its own limit, inherited from here), plus room for the
    // upstream, the probe and gunicorn.
    if hard < N as u64 + 1024 {
        skip(
            "ten_thousand_idle_keep_alive_connections",
            &format!(
                "the hard open-files limit is {hard}; the test needs {}",
                N + 1024
            ),
        );
        return;
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    // Room for the N idle ones and the /health checks made meanwhile.
    let max = (N + 64).to_string();
    let flags = [
        "--max-connections",
        &max,
        "--drain-delay",
        "1s",
        "--stop-timeout",
        "5s", // gunicorn's ~1.5 s to stop, with room on a loaded machine
    ];
    let (init, dir, listen, upstream) = init_on_free_ports("10k", &flags);
    let argv = gunicorn_argv(&dir, upstream, &[]);
    let mut c = chaos_init(init.command(&argv), dir, listen);
    c.wait_ready();
    let request = request_head("GET", "/health", &[], None);
    let mut idle = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = TcpStream::connect(c.listen).unwrap_or_else(|e| panic!("connect {i}: {e}"));
        s.set_read_timeout(Some(secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&got).contains(r#"{"health":"true"}"#) {
            let n = s
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("answer {i}: {e}"));
            assert!(
                n > 0,
                "connection {i} closed: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        idle.push(s);
    }
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", c.init_pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        })
        .unwrap_or(0);
    eprintln!("{N} idle keep-alive connections: modelarts-init RSS {rss_kib} KiB");
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        assert_health_true(&get(c.listen, "/health").unwrap());
        slowest = slowest.max(t.elapsed());
    }
    eprintln!("slowest of 20 /health answers meanwhile: {slowest:?}");
    assert_eq!(get(c.listen, "/").unwrap().status, 200);
    let out = c.run.stdout.text();
    for bad in ["connection limit reached", "cannot accept"] {
        assert!(!out.contains(bad), "{bad}\n{}", c.run.dump());
    }
    // The stop: the drain (1 s), then the idle connections are closed and
    // gunicorn stops; a sample of them sees its EOF before we exit.
    c.signal(Signal::SIGTERM);
    let mut buf = [0u8; 64];
    for s in idle.iter_mut().step_by(1000) {
        s.set_read_timeout(Some(secs(5))).unwrap();
        let end = s.read(&mut buf);
        assert!(
            matches!(&end, Ok(0))
                || matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "an idle connection not closed at the stop: {end:?}"
        );
    }
    assert_eq!(
        c.end(secs(12)),
        0,
        "gunicorn stops cleanly\n{}",
        c.run.dump()
    );
    drop(idle);
}
