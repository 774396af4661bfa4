//! Shared helpers for the integration tests: temp dirs, spawning the real
//! `modelarts-init` binary with captured output, waiting on conditions with
//! deadlines, reading `/proc`, and a guard that SIGKILLs everything a test
//! started when it is dropped (also on panic).
//!
//! Everything here uses real processes; nothing is mocked.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_modelarts-init")
}

/// Poll interval for every wait loop.
pub const POLL: Duration = Duration::from_millis(15);

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------
// Temp dirs
// ---------------------------------------------------------------------------

/// A fresh directory under `std::env::temp_dir()`, removed on drop (kept, and
/// its path printed, when the test is panicking, to help debugging).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "modelarts-init-it-{}-{}-{}-{}",
            tag,
            std::process::id(),
            n,
            nanos
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The path as a `&str` (temp paths are ASCII here).
    pub fn str(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("(keeping temp dir {} of failed test)", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------

/// Bytes read from a pipe by a background thread, readable while the process
/// still runs.
#[derive(Clone)]
pub struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    eof: Arc<AtomicBool>,
}

impl Capture {
    fn start<R: Read + Send + 'static>(mut r: R) -> Capture {
        let cap = Capture {
            buf: Arc::new(Mutex::new(Vec::new())),
            eof: Arc::new(AtomicBool::new(false)),
        };
        let c = cap.clone();
        thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => c.buf.lock().unwrap().extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            c.eof.store(true, Ordering::SeqCst);
        });
        cap
    }

    fn empty() -> Capture {
        Capture {
            buf: Arc::new(Mutex::new(Vec::new())),
            eof: Arc::new(AtomicBool::new(true)),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.buf.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.buf.lock().unwrap().len()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    pub fn is_eof(&self) -> bool {
        self.eof.load(Ordering::SeqCst)
    }

    /// Wait until every writer closed the pipe.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.is_eof())
    }

    /// Some line equals `line` exactly (log lines that merely mention it,
    /// e.g. the logged command line, do not count).
    pub fn has_line(&self, line: &str) -> bool {
        self.text().lines().any(|l| l == line)
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }
}

// ---------------------------------------------------------------------------
// Spawning
// ---------------------------------------------------------------------------

/// A `Command` for the binary under test, with every inherited
/// `MODELARTS_INIT_*` variable removed (so the environment of the test runner
/// cannot change the behaviour), stdin from /dev/null and stdout/stderr piped.
/// Add flags with [`Init::arg`], then the child command with [`Init::command`].
pub struct Init {
    cmd: Command,
}

/// `program` with every `MODELARTS_INIT_*` variable removed, stdin from
/// /dev/null, stdout and stderr piped.
pub fn scrubbed_command<S: AsRef<OsStr>>(program: S) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MODELARTS_INIT_") {
            cmd.env_remove(&k);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl Init {
    pub fn new() -> Init {
        Init {
            cmd: scrubbed_command(bin()),
        }
    }

    /// Applies `f` to the underlying `Command`: the body of the builder methods.
    fn with(mut self, f: impl FnOnce(&mut Command)) -> Init {
        f(&mut self.cmd);
        self
    }

    pub fn arg<S: AsRef<OsStr>>(self, a: S) -> Init {
        self.with(|c| {
            c.arg(a);
        })
    }

    pub fn args<I, S>(self, a: I) -> Init
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.with(|c| {
            c.args(a);
        })
    }

    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(self, k: K, v: V) -> Init {
        self.with(|c| {
            c.env(k, v);
        })
    }

    pub fn current_dir<P: AsRef<Path>>(self, dir: P) -> Init {
        self.with(|c| {
            c.current_dir(dir);
        })
    }

    /// `-- argv...`
    pub fn command<I, S>(self, argv: I) -> Init
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.arg("--").args(argv)
    }

    /// `-- sh -c SCRIPT sh ARGS...` (so `$1`, `$2`... are `args` in the script).
    pub fn sh(self, script: &str, args: &[&str]) -> Init {
        let mut argv: Vec<&str> = vec!["sh", "-c", script, "sh"];
        argv.extend_from_slice(args);
        self.command(argv)
    }

    /// Access to the underlying `Command` (e.g. for `pre_exec`).
    pub fn cmd_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }

    pub fn into_command(self) -> Command {
        self.cmd
    }

    pub fn spawn(self) -> Running {
        Running::spawn(self.cmd)
    }

    /// Run to completion (with a deadline); returns the exited guard.
    pub fn run(self, timeout: Duration) -> Running {
        let mut r = self.spawn();
        r.expect_exit(timeout);
        r.stdout.wait_eof(Duration::from_secs(5));
        r.stderr.wait_eof(Duration::from_secs(5));
        r
    }
}

impl Default for Init {
    fn default() -> Self {
        Init::new()
    }
}

/// A spawned process plus its captured output. On drop, if it is still
/// running (or on a failed test), it and all its descendants are SIGKILLed,
/// as is every pid registered with [`Running::track_pid`].
pub struct Running {
    child: Child,
    pub stdout: Capture,
    pub stderr: Capture,
    status: Option<ExitStatus>,
    tracked: Vec<(i32, u64)>,
    started: Instant,
}

impl Running {
    /// Spawn any command; stdout/stderr are captured if they were set to
    /// `Stdio::piped()`.
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {}", cmd, e));
        let stdout = child
            .stdout
            .take()
            .map(Capture::start)
            .unwrap_or_else(Capture::empty);
        let stderr = child
            .stderr
            .take()
            .map(Capture::start)
            .unwrap_or_else(Capture::empty);
        Running {
            child,
            stdout,
            stderr,
            status: None,
            tracked: Vec::new(),
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig)
            .unwrap_or_else(|e| panic!("kill({}, {:?}): {}", self.pid(), sig, e));
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Poll for exit up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Like `wait_exit` but panics (with the captured output) on timeout.
    pub fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit(timeout) {
            Some(s) => s,
            None => panic!(
                "process {} did not exit within {:?}\n{}",
                self.pid(),
                timeout,
                self.dump()
            ),
        }
    }

    /// Wait for exit (panics on timeout), then for both output pipes to reach
    /// EOF (up to 5 s more), so `stdout`/`stderr` hold everything written.
    pub fn finish(&mut self, timeout: Duration) -> ExitStatus {
        let s = self.expect_exit(timeout);
        self.stdout.wait_eof(Duration::from_secs(5));
        self.stderr.wait_eof(Duration::from_secs(5));
        s
    }

    /// Exit code, or panics with the output if killed by a signal.
    pub fn expect_code(&mut self, timeout: Duration) -> i32 {
        let s = self.expect_exit(timeout);
        match s.code() {
            Some(c) => c,
            None => panic!("process killed by signal {:?}\n{}", s.signal(), self.dump()),
        }
    }

    /// Register a pid (e.g. a grandchild read from a pid file) to SIGKILL on
    /// drop. Its start time is remembered so a recycled pid is never killed.
    pub fn track_pid(&mut self, pid: i32) {
        if let Some(st) = stat(pid) {
            self.tracked.push((pid, st.starttime));
        }
    }

    /// The process's captured stdout and stderr, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "--- stdout ({} bytes, last 4000 shown) ---\n{}\n--- stderr ---\n{}\n---",
            self.stdout.len(),
            tail(&self.stdout.text(), 4000),
            tail(&self.stderr.text(), 4000)
        )
    }

    fn kill_everything(&mut self) {
        // Descendants first (they may be re-parented once we kill the top).
        if self.status.is_none() {
            for pid in descendants_of(self.pid()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for &(pid, start) in &self.tracked {
            if stat(pid).map(|s| s.starttime) == Some(start) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.try_status();
        self.kill_everything();
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Poll `cond` every [`POLL`] until it is true or `timeout` passes.
pub fn wait_until<F: FnMut() -> bool>(timeout: Duration, mut cond: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// Wait until `path` exists and holds at least one complete line; returns its
/// contents.
pub fn wait_for_file(path: &Path, timeout: Duration) -> Option<String> {
    wait_for_lines(path, 1, timeout)
}

/// Wait until `path` contains at least `n` complete lines.
pub fn wait_for_lines(path: &Path, n: usize, timeout: Duration) -> Option<String> {
    let mut out = None;
    wait_until(timeout, || match fs::read_to_string(path) {
        Ok(s) if s.matches('\n').count() >= n => {
            out = Some(s);
            true
        }
        _ => false,
    });
    out
}

/// Wait until some line of `path` equals `line`.
pub fn wait_for_line(path: &Path, line: &str, timeout: Duration) -> bool {
    wait_until(timeout, || {
        fs::read_to_string(path)
            .map(|s| s.lines().any(|l| l == line))
            .unwrap_or(false)
    })
}

/// Read a pid written (with a trailing newline) to `path`, waiting for it.
pub fn read_pid_file(path: &Path, timeout: Duration) -> i32 {
    let s = wait_for_file(path, timeout)
        .unwrap_or_else(|| panic!("pid file {} not written in {:?}", path.display(), timeout));
    s.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad pid file {}: {:?}: {}", path.display(), s, e))
}

/// After sending a signal, give the process a chance to act on it before the
/// next step: wait (up to `max`) until its stdout grew past `len_before`
/// (its log line about the signal), then a short grace period. This is only a
/// hint for ordering; assertions always use their own deadlines.
pub fn settle_after_signal(r: &Running, len_before: usize, max: Duration) {
    wait_until(max, || r.stdout.len() > len_before);
    thread::sleep(Duration::from_millis(100));
}

/// Seconds since the Unix epoch, as a float (compare with `date +%s.%N`).
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/// The fields of `/proc/<pid>/stat` the tests need.
#[derive(Debug, Clone)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub starttime: u64,
}

pub fn parse_stat(s: &str) -> Option<Stat> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let pid = s[..open].trim().parse().ok()?;
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N-3].
    Some(Stat {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        session: rest.get(3)?.parse().ok()?,
        starttime: rest.get(19)?.parse().ok()?,
    })
}

/// `/proc/<pid>/stat`, or None if the process is gone (fully reaped).
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?)
}

/// Exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    matches!(stat(pid), Some(s) if s.state != 'Z')
}

/// Gone from /proc entirely (so also not a zombie).
pub fn is_gone(pid: i32) -> bool {
    stat(pid).is_none()
}

/// Every process (thread-group leader) on the system.
pub fn all_stats() -> Vec<Stat> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(s) = stat(pid) {
                v.push(s);
            }
        }
    }
    v
}

/// Direct children of `pid` (found by scanning ppid; the kernel here has no
/// `/proc/<pid>/task/<tid>/children`).
pub fn children_of(pid: i32) -> Vec<Stat> {
    all_stats().into_iter().filter(|s| s.ppid == pid).collect()
}

/// Zombie children of `pid`.
pub fn zombie_children_of(pid: i32) -> Vec<Stat> {
    children_of(pid)
        .into_iter()
        .filter(|s| s.state == 'Z')
        .collect()
}

/// All descendants of `pid` (not including `pid`), parents before children.
pub fn descendants_of(pid: i32) -> Vec<i32> {
    let stats = all_stats();
    let mut by_parent: HashMap<i32, Vec<i32>> = HashMap::new();
    for s in &stats {
        by_parent.entry(s.ppid).or_default().push(s.pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        if let Some(kids) = by_parent.get(&p) {
            for &k in kids {
                if k != pid && !out.contains(&k) {
                    out.push(k);
                    stack.push(k);
                }
            }
        }
    }
    out
}

/// Wait for `parent` to have a child and return its pid (e.g. the
/// modelarts-init started by `unshare --fork`, or the supervised child).
pub fn wait_for_child(parent: i32, timeout: Duration) -> Option<i32> {
    let mut found = None;
    wait_until(timeout, || {
        found = children_of(parent).first().map(|s| s.pid);
        found.is_some()
    });
    found
}

/// Parse a hex signal mask line such as `SigBlk:\t0000000000000000` from a
/// `/proc/<pid>/status` text.
pub fn status_mask(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        u64::from_str_radix(v.trim(), 16).ok()
    })
}

// ---------------------------------------------------------------------------
// Environment probes
// ---------------------------------------------------------------------------

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `unshare --pid --fork --mount-proc` works here (cached).
pub fn unshare_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// `unshare --pid --fork --mount-proc <bin> ARGS...` with the same
/// environment scrubbing and piping as [`Init::new`].
pub fn unshare_init() -> Init {
    let mut cmd = scrubbed_command("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", bin()]);
    Init { cmd }
}

/// Look up a user in /etc/passwd: (uid, gid).
pub fn passwd_entry(name: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// Look up a group in /etc/group: gid.
pub fn group_entry(name: &str) -> Option<u32> {
    let text = fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3 && f[0] == name {
            f[2].parse().ok()
        } else {
            None
        }
    })
}

/// Print a skip notice (cargo shows it with `--nocapture`; it is always in
/// the test's captured stderr).
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIP {}: {}", test, why);
}

/// Helper to make `pre_exec` available via the prelude of this module.
pub fn cmd_pre_exec<F>(cmd: &mut Command, f: F)
where
    F: FnMut() -> std::io::Result<()> + Send + Sync + 'static,
{
    // SAFETY: callers only pass async-signal-safe closures (sigprocmask,
    // sigaction), as required between fork and exec.
    unsafe {
        cmd.pre_exec(f);
    }
}

// ---------------------------------------------------------------------------
// The repository, the test venv, ports
// ---------------------------------------------------------------------------

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python venv of the tests (gunicorn, gevent, Flask, websockets, numpy,
/// Pillow): `MODELARTS_TEST_VENV`, else `<repo>/.venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("MODELARTS_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"))
}

/// A program of the test venv; panics with the way to make the venv if it
/// is missing (the tests need the real programs, never a stand-in).
pub fn venv_bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    if !path.exists() {
        panic!(
            "{} not found: these tests need the test venv.\n\
             Create it at the repo root with\n  \
             python3 -m venv .venv && .venv/bin/pip install -r examples/gunicorn-app/requirements.txt -r tests/requirements.txt\n\
             (or run `bash .ci/run`), or point MODELARTS_TEST_VENV at such a venv.",
            path.display()
        );
    }
    path
}

/// A free port on 127.0.0.1: bind port 0, read it, drop the listener. Ports
/// already handed out in this test process are never handed out again.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// `curl -s` with a deadline: (HTTP status, body); status 0 when nothing
/// answered.
pub fn curl_status(args: &[&str], timeout: Duration) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time"])
        .arg(timeout.as_secs().max(1).to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
