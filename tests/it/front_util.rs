//! modelarts-init in front of a child, for the tests of the HTTP front
//! (`front_*`): [`Front`], the running instance (its guard, temp dir and
//! listen address, with waits on `/health` and on its log, and the
//! SIGTERM steps of the drain), its launchers ([`start_gunicorn`],
//! [`spawn_gunicorn`], [`spawn_child`], or [`init_on_free_ports`] then
//! [`Front::spawn`]; [`Front::spawn_init`] for a mode without a child, such
//! as `mnist --listen`), the example app under gunicorn, the verbs
//! ([`run_verb`]) and the `/health` assertions.
//!
//! The upstream is the real example app (`examples/gunicorn-app`) under
//! gunicorn with gevent workers, from the test venv: `$MODELARTS_TEST_VENV`,
//! default `<repo>/.venv`, made by
//! `python3 -m venv .venv && .venv/bin/pip install -r examples/gunicorn-app/requirements.txt -r tests/requirements.txt`.
//! Clients are curl, raw `TcpStream`s where a test needs control over the
//! connection (`http`), and Python scripts in `tests/py`. Everything listens
//! on 127.0.0.1 on free ports; every wait has a deadline; every process a
//! test starts is SIGKILLed by its guard if the test fails.

use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::http::{free_addr, get, Resp};
use crate::util::*;

// ===========================================================================
// The test venv, the example app
// ===========================================================================

fn gunicorn() -> String {
    venv_bin("gunicorn").to_str().unwrap().to_owned()
}

/// The Python of the test venv.
pub fn python() -> String {
    venv_bin("python").to_str().unwrap().to_owned()
}

fn app_dir() -> String {
    repo()
        .join("examples/gunicorn-app")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The path of a script in `tests/py`.
pub fn py_script(name: &str) -> String {
    repo()
        .join("tests/py")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

/// `tests/py/ws_client.py` on `url`, running; with `go`, it stops after
/// the first echo (printing CONNECTED) until that file exists.
pub fn ws_client(url: &str, go: Option<&std::path::Path>) -> Running {
    let mut cmd = std::process::Command::new(python());
    cmd.arg(py_script("ws_client.py")).arg(url);
    cmd.args(go)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    Running::spawn(cmd)
}

// ===========================================================================
// modelarts-init in front of gunicorn (or another child)
// ===========================================================================

/// A running modelarts-init that listens on `listen`: in wrap mode in front
/// of a child (gunicorn, a Python snippet...), or in a mode of its own
/// ([`Front::spawn_init`]); its temp dir is `dir`, its guard `run`.
pub struct Front {
    pub run: Running,
    pub dir: TempDir,
    pub listen: SocketAddr,
}

/// modelarts-init `--listen listen --upstream upstream`.
pub fn init_at(listen: &str, upstream: &str) -> Init {
    Init::new().args(["--listen", listen, "--upstream", upstream])
}

/// modelarts-init on fresh ports with `flags`, before the child command.
pub fn init_on_free_ports(tag: &str, flags: &[&str]) -> (Init, TempDir, SocketAddr, SocketAddr) {
    let dir = TempDir::new(tag);
    let listen = free_addr();
    let upstream = free_addr();
    let init = init_at(&listen.to_string(), &upstream.to_string()).args(flags);
    (init, dir, listen, upstream)
}

/// gunicorn's argv for the example app: gevent workers, 2 of them,
/// gunicorn's default keep-alive of 2 s (the case the pool must survive),
/// its pid in `<dir>/gunicorn.pid`; `extra` can override any of these.
pub fn gunicorn_argv(dir: &TempDir, upstream: SocketAddr, extra: &[&str]) -> Vec<String> {
    gunicorn_app_argv(dir, upstream, &app_dir(), "app:app", extra)
}

/// [`gunicorn_argv`] for the app `app` (`module:object`) found in `chdir`
/// (e.g. a test app in `tests/py`).
pub fn gunicorn_app_argv(
    dir: &TempDir,
    upstream: SocketAddr,
    chdir: &str,
    app: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        gunicorn(),
        "--chdir".into(),
        chdir.into(),
        "-k".into(),
        "gevent".into(),
        "-w".into(),
        "2".into(),
        "--keep-alive".into(),
        "2".into(),
        "--no-control-socket".into(),
        "--pid".into(),
        dir.join("gunicorn.pid").to_str().unwrap().into(),
        "-b".into(),
        upstream.to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push(app.into());
    v
}

/// `tests/py`, where the test apps are.
pub fn test_apps_dir() -> String {
    repo().join("tests/py").to_str().unwrap().to_owned()
}

/// Spawns modelarts-init `flags` -- gunicorn `gunicorn_extra` (not waiting).
pub fn spawn_gunicorn(tag: &str, flags: &[&str], gunicorn_extra: &[&str]) -> Front {
    let (init, dir, listen, upstream) = init_on_free_ports(tag, flags);
    let argv = gunicorn_argv(&dir, upstream, gunicorn_extra);
    Front::spawn(init, dir, listen, &argv)
}

/// Spawns and waits until `/health` answers 200.
pub fn start_gunicorn(tag: &str, flags: &[&str], gunicorn_extra: &[&str]) -> Front {
    let mut f = spawn_gunicorn(tag, flags, gunicorn_extra);
    f.wait_ready("/health");
    let pid = f.gunicorn_pid();
    f.run.track_pid(pid);
    f
}

/// Spawns modelarts-init `flags` -- `argv`.
pub fn spawn_child(tag: &str, flags: &[&str], argv: &[&str]) -> Front {
    let (init, dir, listen, _) = init_on_free_ports(tag, flags);
    Front::spawn(init, dir, listen, argv)
}

impl Front {
    /// Spawns `init -- argv` (from [`init_on_free_ports`]) without waiting.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(
        init: Init,
        dir: TempDir,
        listen: SocketAddr,
        argv: &[S],
    ) -> Front {
        Front::spawn_init(init.command(argv), dir, listen)
    }

    /// Spawns `init` as it is, without waiting: any mode that listens on
    /// `listen` (e.g. `Init::new().args(["mnist", "--listen", &listen.to_string()])`
    /// with `listen` from [`free_addr`]); then [`Front::wait_ready`].
    pub fn spawn_init(init: Init, dir: TempDir, listen: SocketAddr) -> Front {
        let run = init.spawn();
        Front { run, dir, listen }
    }

    /// `GET path` on a fresh connection to our listener.
    pub fn get(&self, path: &str) -> io::Result<Resp> {
        get(self.listen, path)
    }

    /// `http://<listen><path>`, for curl.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    /// Waits (60 s at most: gunicorn boots slowly on a busy machine) until
    /// `health_path` answers 200; panics with the output if the process
    /// exits or the deadline passes.
    pub fn wait_ready(&mut self, health_path: &str) {
        let deadline = Instant::now() + secs(60);
        loop {
            if let Some(s) = self.run.try_status() {
                panic!(
                    "modelarts-init exited ({s:?}) before it was ready\n{}",
                    self.run.dump()
                );
            }
            if let Ok(r) = self.get(health_path) {
                if r.status == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("{health_path} not 200 within 60 s\n{}", self.run.dump());
            }
            thread::sleep(ms(50));
        }
    }

    /// Waits until the listener answers at all (it is bound before the
    /// child starts) and returns the first `/health` answer.
    pub fn first_health(&mut self) -> Resp {
        let deadline = Instant::now() + secs(20);
        loop {
            if let Some(s) = self.run.try_status() {
                panic!("modelarts-init exited ({s:?})\n{}", self.run.dump());
            }
            if let Ok(r) = self.get("/health") {
                return r;
            }
            if Instant::now() > deadline {
                panic!("the listener never answered\n{}", self.run.dump());
            }
            thread::sleep(POLL);
        }
    }

    /// gunicorn's master pid, from its `--pid` file.
    pub fn gunicorn_pid(&self) -> i32 {
        read_pid_file(&self.dir.join("gunicorn.pid"), secs(30))
    }

    /// Polls `/health` until its answer satisfies `f` (deadline `timeout`).
    pub fn wait_health<F: Fn(&Resp) -> bool>(&self, timeout: Duration, f: F) -> Option<Resp> {
        let mut last = None;
        let ok = wait_until(timeout, || match self.get("/health") {
            Ok(r) => {
                let done = f(&r);
                last = Some(r);
                done
            }
            Err(_) => false,
        });
        if ok {
            last
        } else {
            None
        }
    }

    /// Waits until our stdout has a line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            found = self
                .run
                .stdout
                .text()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_owned);
            found.is_some()
        });
        found
    }

    /// Sends SIGTERM to modelarts-init.
    pub fn sigterm(&self) {
        self.run.signal(Signal::SIGTERM);
    }

    /// Sends SIGTERM and asserts /health turns 503 "draining" within 2 s:
    /// (when SIGTERM was sent, how long /health took to fail).
    pub fn sigterm_until_draining(&self) -> (Instant, Duration) {
        let term_at = Instant::now();
        self.sigterm();
        let h = self
            .wait_health(secs(2), |r| r.status != 200)
            .unwrap_or_else(|| panic!("/health still 200 after SIGTERM\n{}", self.run.dump()));
        let failed_after = term_at.elapsed();
        assert_health_false(&h, "draining");
        (term_at, failed_after)
    }

    /// Waits (15 s) for the log of the child's stop signal; returns its
    /// `elapsed_ms`, asserted to be about the 2 s drain delay.
    pub fn wait_child_stop_signal(&self) -> u64 {
        let line = self
            .wait_log("stop signal to child", secs(15))
            .unwrap_or_else(|| panic!("no 'stop signal to child' log\n{}", self.run.dump()));
        let elapsed = log_field_u64(&line, "elapsed_ms").unwrap_or_else(|| panic!("{line}"));
        assert!(
            (1900..=6000).contains(&elapsed),
            "child SIGTERM at {elapsed} ms, expected about 2000: {line}"
        );
        elapsed
    }
}

/// The number after `key=` in a log line.
pub fn log_field_u64(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(&format!("{key}="))? + key.len() + 1..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Asserts a ready `/health` answer: 200, exactly `{"health":"true"}`, JSON.
pub fn assert_health_true(r: &Resp) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), r#"{"health":"true"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

/// Asserts a failing `/health` answer: 503 JSON
/// `{"health": "false", "reason": reason}`.
pub fn assert_health_false(r: &Resp, reason: &str) {
    assert_eq!(r.status, 503, "{r:?} {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"health": "false", "reason": reason}));
}

// ===========================================================================
// The verbs
// ===========================================================================

/// Runs a verb (`health`, `check-config`...) to completion (20 s): (guard, exit code).
pub fn run_verb(init: Init) -> (Running, i32) {
    let mut r = init.run(secs(20));
    let code = r.expect_code(secs(1));
    (r, code)
}
