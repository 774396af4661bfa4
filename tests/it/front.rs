//! Integration tests of the HTTP front (wrap mode with the proxy): the
//! synthesized `/health`, byte-exact streaming both ways, header handling,
//! the R8 drain with a real gunicorn, keep-alive on both sides, WebSockets,
//! the JSON error answers, config.json, the `health` and `check-config`
//! verbs, the slowloris cut, the status page and the start-up refusals.
//!
//! The upstream is the real example app (`examples/gunicorn-app`) under
//! gunicorn with gevent workers, from the test venv: `$MODELARTS_TEST_VENV`,
//! default `<repo>/.venv`, made by
//! `python3 -m venv .venv && .venv/bin/pip install -r examples/gunicorn-app/requirements.txt -r tests/requirements.txt`.
//! Clients are curl, raw `TcpStream`s where a test needs control over the
//! connection, and Python scripts in `tests/py`. Everything listens on
//! 127.0.0.1 on free ports; every wait has a deadline; every process a test
//! starts is SIGKILLed by its guard if the test fails.

use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::util::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ===========================================================================
// The test venv, the example app, ports
// ===========================================================================

fn gunicorn() -> String {
    venv_bin("gunicorn").to_str().unwrap().to_owned()
}

fn python() -> String {
    venv_bin("python").to_str().unwrap().to_owned()
}

fn app_dir() -> String {
    repo()
        .join("examples/gunicorn-app")
        .to_str()
        .unwrap()
        .to_owned()
}

fn py_script(name: &str) -> String {
    repo()
        .join("tests/py")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

// ===========================================================================
// A small raw HTTP/1.1 client
// ===========================================================================

#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    /// First value of a header, by case-insensitive name.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of the {} answer is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts a JSON error answer: `status`, content-type
    /// application/json, `{"error": code, "message": "..."}`.
    fn assert_json_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "unexpected answer: {self:?} {}",
            self.text()
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["error"], code, "{v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message in {v}"
        );
    }
}

/// One client connection, kept open across requests.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, secs(5))?;
        s.set_read_timeout(Some(secs(120)))?;
        s.set_write_timeout(Some(secs(60)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::with_capacity(256 * 1024, s),
        })
    }

    fn stream(&self) -> &TcpStream {
        self.r.get_ref()
    }

    fn set_read_timeout(&self, d: Duration) {
        self.stream().set_read_timeout(Some(d)).unwrap();
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.stream();
        s.write_all(bytes)?;
        s.flush()
    }

    /// Sends a request (Host and, with a body or for POST/PUT,
    /// Content-Length added) and reads the answer.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Resp> {
        let head = request_head(method, path, headers, Some(body.len()));
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.send(&msg)?;
        self.read_response(method == "HEAD")
    }

    fn get(&mut self, path: &str) -> io::Result<Resp> {
        self.request("GET", path, &[], b"")
    }

    /// Reads one response (an interim 1xx one too).
    fn read_response(&mut self, head_request: bool) -> io::Result<Resp> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            ));
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if self.r.read_line(&mut h)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside the response head",
                ));
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size)?;
                let size = size.trim().split(';').next().unwrap_or("");
                let n = usize::from_str_radix(size, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {size:?}"),
                    )
                })?;
                if n == 0 {
                    // trailers, then the empty line
                    loop {
                        let mut t = String::new();
                        if self.r.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = resp.body.len();
                resp.body.resize(start + n, 0);
                self.r.read_exact(&mut resp.body[start..])?;
                let mut crlf = [0u8; 2];
                self.r.read_exact(&mut crlf)?;
            }
        } else if let Some(len) = resp.header("content-length") {
            let n: usize = len.parse().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad length {len:?}"))
            })?;
            resp.body.resize(n, 0);
            self.r.read_exact(&mut resp.body)?;
        } else {
            self.r.read_to_end(&mut resp.body)?;
        }
        Ok(resp)
    }

    /// Waits up to `timeout` for the peer to close the connection (EOF or a
    /// reset). Returns how long that took, or None if it stayed open. Bytes
    /// that arrive meanwhile (e.g. a 408 answer) are collected in `got`.
    fn wait_closed(&mut self, timeout: Duration, got: &mut Vec<u8>) -> Option<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.set_read_timeout(left.max(ms(10)));
            match self.r.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return None
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Some(start.elapsed()),
            }
        }
    }
}

fn request_head(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_len: Option<usize>,
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test.local\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = body_len {
        if !has("content-length")
            && !has("transfer-encoding")
            && (n > 0 || method == "POST" || method == "PUT")
        {
            head.push_str(&format!("Content-Length: {n}\r\n"));
        }
    }
    head.push_str("\r\n");
    head
}

/// One request on a fresh connection, closed afterwards.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    h.push(("Connection", "close"));
    Conn::open(addr)?.request(method, path, &h, body)
}

fn get(addr: SocketAddr, path: &str) -> io::Result<Resp> {
    http(addr, "GET", path, &[], b"")
}

// ===========================================================================
// curl and sha256sum
// ===========================================================================

struct CurlOut {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs curl (silent, errors shown) with a deadline.
fn curl(args: &[&str], timeout: Duration) -> CurlOut {
    let mut cmd = Command::new("curl");
    cmd.arg("-sS")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut r = Running::spawn(cmd);
    let code = r.expect_code(timeout);
    r.stdout.wait_eof(secs(5));
    r.stderr.wait_eof(secs(5));
    CurlOut {
        code,
        stdout: r.stdout.text(),
        stderr: r.stderr.text(),
    }
}

/// POSTs `src` (curl `--data-binary`, after the `extra` args) to `url`,
/// saving the answer in `out`; asserts curl succeeded with a 200.
fn curl_post_file(url: &str, src: &Path, out: &Path, extra: &[&str], timeout: Duration) {
    let data = format!("@{}", src.display());
    let mut args = vec!["-o", out.to_str().unwrap(), "-w", "%{http_code}"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--data-binary", &data, url]);
    let got = curl(&args, timeout);
    assert_eq!(
        (got.code, got.stdout.as_str()),
        (0, "200"),
        "{extra:?} {}",
        got.stderr
    );
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `n` pseudo-random bytes (xorshift64*, fixed seed) into `path`.
fn write_random_file(path: &Path, n: usize) {
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = n;
    while left > 0 {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let k = left.min(8);
        w.write_all(&v[..k]).unwrap();
        left -= k;
    }
    w.flush().unwrap();
}

/// What the app's `/bytes?n=N` sends: byte i is i % 251.
fn write_pattern_file(path: &Path, n: usize) {
    let block: Vec<u8> = (0..251 * 256).map(|i| (i % 251) as u8).collect();
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        w.write_all(&block[..k]).unwrap();
        left -= k;
    }
    w.flush().unwrap();
}

// ===========================================================================
// modelarts-init in front of gunicorn (or another child)
// ===========================================================================

/// A running modelarts-init with its listen and upstream addresses.
struct Front {
    run: Running,
    dir: TempDir,
    listen: SocketAddr,
}

/// modelarts-init on fresh ports with `flags`, before the child command.
fn init_on_free_ports(tag: &str, flags: &[&str]) -> (Init, TempDir, SocketAddr, SocketAddr) {
    let dir = TempDir::new(tag);
    let listen = free_addr();
    let upstream = free_addr();
    let init = init_at(&listen.to_string(), &upstream.to_string()).args(flags);
    (init, dir, listen, upstream)
}

/// gunicorn's argv for the example app: gevent workers, 2 of them,
/// gunicorn's default keep-alive of 2 s (the case the pool must survive),
/// its pid in `<dir>/gunicorn.pid`; `extra` can override any of these.
fn gunicorn_argv(dir: &TempDir, upstream: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        gunicorn(),
        "--chdir".into(),
        app_dir(),
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
    v.push("app:app".into());
    v
}

/// Spawns modelarts-init `flags` -- gunicorn `gunicorn_extra` (not waiting).
fn spawn_gunicorn(tag: &str, flags: &[&str], gunicorn_extra: &[&str]) -> Front {
    let (init, dir, listen, upstream) = init_on_free_ports(tag, flags);
    let argv = gunicorn_argv(&dir, upstream, gunicorn_extra);
    Front::spawn(init, dir, listen, &argv)
}

/// Spawns and waits until `/health` answers 200.
fn start_gunicorn(tag: &str, flags: &[&str], gunicorn_extra: &[&str]) -> Front {
    let mut f = spawn_gunicorn(tag, flags, gunicorn_extra);
    f.wait_ready("/health");
    let pid = f.gunicorn_pid();
    f.run.track_pid(pid);
    f
}

/// Spawns modelarts-init `flags` -- `argv`.
fn spawn_child(tag: &str, flags: &[&str], argv: &[&str]) -> Front {
    let (init, dir, listen, _) = init_on_free_ports(tag, flags);
    Front::spawn(init, dir, listen, argv)
}

impl Front {
    /// Spawns `init -- argv` (from [`init_on_free_ports`]) without waiting.
    fn spawn<S: AsRef<std::ffi::OsStr>>(
        init: Init,
        dir: TempDir,
        listen: SocketAddr,
        argv: &[S],
    ) -> Front {
        let run = init.command(argv).spawn();
        Front { run, dir, listen }
    }

    fn get(&self, path: &str) -> io::Result<Resp> {
        get(self.listen, path)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    /// Waits (60 s at most: gunicorn boots slowly on a busy machine) until
    /// `health_path` answers 200; panics with the output if the process
    /// exits or the deadline passes.
    fn wait_ready(&mut self, health_path: &str) {
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
    fn first_health(&mut self) -> Resp {
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
    fn gunicorn_pid(&self) -> i32 {
        read_pid_file(&self.dir.join("gunicorn.pid"), secs(30))
    }

    /// Polls `/health` until its answer satisfies `f` (deadline `timeout`).
    fn wait_health<F: Fn(&Resp) -> bool>(&self, timeout: Duration, f: F) -> Option<Resp> {
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
    fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
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

    fn sigterm(&self) {
        self.run.signal(Signal::SIGTERM);
    }

    /// Sends SIGTERM and asserts /health turns 503 "draining" within 2 s:
    /// (when SIGTERM was sent, how long /health took to fail).
    fn sigterm_until_draining(&self) -> (Instant, Duration) {
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
    fn wait_child_stop_signal(&self) -> u64 {
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
fn log_field_u64(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(&format!("{key}="))? + key.len() + 1..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn assert_health_true(r: &Resp) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), r#"{"health":"true"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

fn assert_health_false(r: &Resp, reason: &str) {
    assert_eq!(r.status, 503, "{r:?} {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"health": "false", "reason": reason}));
}

// ===========================================================================
// A client loop for the drain tests
// ===========================================================================

#[derive(Debug, Clone)]
struct Sample {
    start: Instant,
    /// Status, or the I/O error.
    outcome: Result<u16, String>,
    /// Whether the request went on a reused connection.
    reused: bool,
}

/// Sends `GET /` until `stop` is set (at most 60 s, 5000 requests), every
/// ~20 ms, on fresh connections (`keep_alive` false) or one kept-alive
/// connection (reopened after an error or a close).
fn client_loop(
    addr: SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Sample>> {
    thread::spawn(move || {
        let mut samples = Vec::new();
        let mut conn: Option<Conn> = None;
        let began = Instant::now();
        while !stop.load(Ordering::SeqCst) && began.elapsed() < secs(60) && samples.len() < 5000 {
            let start = Instant::now();
            let (outcome, reused) = if keep_alive {
                let reused = conn.is_some();
                let c = match conn.take() {
                    Some(c) => Ok(c),
                    None => Conn::open(addr),
                };
                match c {
                    Ok(mut c) => match c.get("/") {
                        Ok(r) => {
                            let closing = r
                                .header("connection")
                                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                            if !closing {
                                conn = Some(c);
                            }
                            (Ok(r.status), reused)
                        }
                        Err(e) => (Err(e.to_string()), reused),
                    },
                    Err(e) => (Err(e.to_string()), false),
                }
            } else {
                (
                    get(addr, "/").map(|r| r.status).map_err(|e| e.to_string()),
                    false,
                )
            };
            samples.push(Sample {
                start,
                outcome,
                reused,
            });
            thread::sleep(ms(20));
        }
        samples
    })
}

// ===========================================================================
// /health and the child's life
// ===========================================================================

/// /health is 503 "starting" until gunicorn listens (its start is delayed
/// 1.5 s so that the starting phase is long enough to see), proxied
/// requests get 503 JSON meanwhile, then /health is exactly
/// `{"health":"true"}`. When the gunicorn master is SIGKILLed, a request
/// in flight is answered 503 JSON, /health stops answering 200 for good
/// (the listener closes at once: no 503 is seen in practice), and
/// modelarts-init exits 137, gunicorn's status.
#[test]
fn health_follows_gunicorn_start_and_death() {
    let (init, dir, listen, upstream) = init_on_free_ports("health", &[]);
    let mut argv = vec![
        "sh".to_string(),
        "-c".into(),
        "sleep 1.5; exec \"$@\"".into(),
        "sh".into(),
    ];
    argv.extend(gunicorn_argv(&dir, upstream, &[]));
    let mut f = Front::spawn(init, dir, listen, &argv);

    let first = f.first_health();
    assert_health_false(&first, "starting");
    let r = f.get("/").unwrap();
    r.assert_json_error(503, "not_ready");
    let r = http(f.listen, "POST", "/echo", &[], b"abc").unwrap();
    r.assert_json_error(503, "not_ready");

    // 503 "starting" until the first 200; whenever /health says 200,
    // gunicorn really answers.
    let deadline = Instant::now() + secs(60);
    loop {
        assert!(Instant::now() < deadline, "never ready\n{}", f.run.dump());
        assert!(f.run.try_status().is_none(), "exited\n{}", f.run.dump());
        let r = f.get("/health").unwrap();
        if r.status == 200 {
            assert_health_true(&r);
            break;
        }
        assert_health_false(&r, "starting");
        thread::sleep(ms(30));
    }
    let r = f.get("/").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["app"], "gunicorn-app");
    let master = f.gunicorn_pid();
    f.run.track_pid(master);

    // Watch /health on fresh connections while gunicorn is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let addr = f.listen;
        thread::spawn(move || {
            let mut seen: Vec<(Instant, Result<(u16, String), String>)> = Vec::new();
            while !stop.load(Ordering::SeqCst) && seen.len() < 20_000 {
                let r = get(addr, "/health")
                    .map(|r| (r.status, r.text()))
                    .map_err(|e| e.to_string());
                seen.push((Instant::now(), r));
                thread::sleep(ms(5));
            }
            seen
        })
    };
    // A request in flight when gunicorn dies.
    let addr = f.listen;
    let slow = thread::spawn(move || get(addr, "/slow?s=20"));
    thread::sleep(ms(500)); // scenario: let it reach a worker
    let killed_at = Instant::now();
    kill(Pid::from_raw(master), Signal::SIGKILL).unwrap();
    let status = f.run.expect_code(secs(20));
    let exited_at = Instant::now();
    thread::sleep(ms(200));
    stop.store(true, Ordering::SeqCst);
    let seen = watcher.join().unwrap();

    // Answered 503 JSON when the child is gone (before its orphaned
    // workers are killed), not cut.
    let r = slow
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("in-flight request cut: {e}\n{}", f.run.dump()));
    r.assert_json_error(503, "stopped");
    assert_eq!(
        status,
        137,
        "exit status should be gunicorn's (SIGKILL)\n{}",
        f.run.dump()
    );
    assert!(
        exited_at - killed_at < secs(10),
        "took {:?} to exit after the child died",
        exited_at - killed_at
    );
    assert!(
        seen.iter()
            .any(|(t, r)| *t < killed_at && matches!(r, Ok((200, _)))),
        "no 200 before the kill: {seen:?}"
    );
    // After the kill: 200s (before the death is noticed), then never again.
    let after: Vec<_> = seen.iter().filter(|(t, _)| *t > killed_at).collect();
    eprintln!(
        "after the kill: {} x 200, {} x 503, {} x no answer",
        after
            .iter()
            .filter(|(_, r)| matches!(r, Ok((200, _))))
            .count(),
        after
            .iter()
            .filter(|(_, r)| matches!(r, Ok((503, _))))
            .count(),
        after.iter().filter(|(_, r)| r.is_err()).count()
    );
    let first_bad = after
        .iter()
        .position(|(_, r)| !matches!(r, Ok((200, _))))
        .unwrap_or_else(|| panic!("/health never stopped answering 200: {after:?}"));
    for (_, r) in &after[first_bad..] {
        match r {
            Ok((200, _)) => panic!("/health answered 200 again after failing: {after:?}"),
            Ok((503, body)) => {
                let v: Value = serde_json::from_str(body).unwrap();
                assert_eq!(v["health"], "false", "{body}");
                assert!(
                    v["reason"] == "exited" || v["reason"] == "stopping",
                    "{body}"
                );
            }
            Ok(other) => panic!("unexpected /health answer {other:?}"),
            Err(_) => {} // the listener is closed: refused
        }
    }
    f.run.stdout.wait_eof(secs(5));
    assert!(f.run.stdout.contains("child exited"), "{}", f.run.dump());
}

/// A gunicorn that hangs (SIGSTOPped master and workers) fails the HTTP
/// readiness probe (`--upstream-health /`): after `--unhealthy-after`
/// failures /health is 503 "unhealthy"; once it runs again, 200.
#[test]
fn health_turns_unhealthy_while_gunicorn_hangs() {
    let mut f = start_gunicorn(
        "unhealthy",
        &[
            "--upstream-health",
            "/",
            "--probe-interval",
            "300ms",
            "--unhealthy-after",
            "2",
        ],
        &[],
    );
    let master = f.gunicorn_pid();
    let mut pids = vec![master];
    assert!(
        wait_until(secs(30), || children_of(master).len() >= 2),
        "gunicorn workers did not start\n{}",
        f.run.dump()
    );
    pids.extend(children_of(master).iter().map(|s| s.pid));
    for &p in &pids {
        f.run.track_pid(p);
        kill(Pid::from_raw(p), Signal::SIGSTOP).unwrap();
    }
    let r = f.wait_health(secs(20), |r| r.status != 200);
    for &p in &pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
    }
    let r = r.unwrap_or_else(|| panic!("/health stayed 200 while gunicorn hung\n{}", f.run.dump()));
    assert_health_false(&r, "unhealthy");
    let r = f
        .wait_health(secs(20), |r| r.status == 200)
        .unwrap_or_else(|| panic!("/health not 200 again after SIGCONT\n{}", f.run.dump()));
    assert_health_true(&r);
    assert_eq!(f.get("/").unwrap().status, 200);
}

/// gunicorn that cannot load its app exits non-zero (4, "App failed to
/// load"; gunicorn 27 sometimes exits 1 instead, when a second worker's
/// failure raises while it halts): modelarts-init exits with that status.
#[test]
fn gunicorn_exit_status_is_ours() {
    let (init, dir, _listen, upstream) = init_on_free_ports("bootfail", &[]);
    let mut argv = gunicorn_argv(&dir, upstream, &[]);
    *argv.last_mut().unwrap() = "app:no_such_app".into();
    let mut r = init.command(&argv).spawn();
    let code = r.expect_code(secs(60));
    r.stdout.wait_eof(secs(5));
    let out = r.stdout.text();
    assert!(out.contains("App failed to load"), "{}", r.dump());
    let line = out
        .lines()
        .find(|l| l.contains("child exited"))
        .unwrap_or_else(|| panic!("no 'child exited' log\n{}", r.dump()));
    let child = log_field_u64(&line.replace("status=exit code ", "status="), "status")
        .unwrap_or_else(|| panic!("no exit code in {line}"));
    assert_ne!(child, 0, "{line}");
    assert_eq!(
        code as u64,
        child,
        "our status differs from gunicorn's\n{}",
        r.dump()
    );
}

// ===========================================================================
// Restarts (--restart)
// ===========================================================================

/// A child that fails on its second run (exit 3) and otherwise serves HTTP
/// on $PORT with Python's http.server; `$1/count` counts its runs.
const FAILS_ON_SECOND_RUN: &str = r#"n=$(cat "$1/count" 2>/dev/null || echo 0)
echo $((n + 1)) > "$1/count"
if [ "$n" = 1 ]; then exit 3; fi
exec "$2" -m http.server "$PORT" --bind 127.0.0.1"#;

#[test]
fn restart_on_failure_brings_health_back() {
    let flags = [
        "--restart",
        "on-failure",
        "--restart-backoff",
        "200ms..400ms",
        "--status-path",
        "/status",
        "--drain-delay",
        "500ms",
    ];
    let (init, dir, listen, _) = init_on_free_ports("restart", &flags);
    let argv = ["sh", "-c", FAILS_ON_SECOND_RUN, "sh", dir.str(), &python()].map(String::from);
    let mut f = Front::spawn(init, dir, listen, &argv);
    f.wait_ready("/health");
    let first = f.get("/status").unwrap().json()["child_pid"]
        .as_i64()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    // /health follows: 503 "restarting" while the child is down (the second
    // run fails too), then 200 once the third run serves; a proxied request
    // meanwhile gets 503 JSON, never a hang.
    let mut seen_restarting = false;
    let back = wait_until(secs(30), || match f.get("/health") {
        Ok(r) if r.status == 503 => {
            if r.json()["reason"] == "restarting" {
                seen_restarting = true;
                // The next run may already be starting by now.
                let proxied = f.get("/").unwrap();
                if proxied.status == 503 {
                    let code = proxied.json()["error"].clone();
                    assert!(code == "restarting" || code == "not_ready", "{proxied:?}");
                }
            }
            false
        }
        Ok(r) => r.status == 200 && seen_restarting,
        Err(_) => false,
    });
    assert!(
        back,
        "/health did not come back via 'restarting'\n{}",
        f.run.dump()
    );
    let status = f.get("/status").unwrap().json();
    assert_eq!(status["restarts"], 2, "{status}");
    assert_eq!(status["last_exit"], "exit code 3", "{status}");
    assert_ne!(status["child_pid"].as_i64(), Some(first));
    assert_eq!(f.get("/").unwrap().status, 200, "the third run serves");
    let out = f.run.stdout.text();
    let delays: Vec<u64> = out
        .lines()
        .filter(|l| l.contains("restarting it after the delay"))
        .filter_map(|l| log_field_u64(l, "delay_ms"))
        .collect();
    assert_eq!(delays, [200, 400], "the backoff doubles\n{}", f.run.dump());
    f.sigterm();
    assert_eq!(f.run.expect_code(secs(15)), 143, "{}", f.run.dump());
}

#[test]
fn max_restarts_then_the_childs_exit_status() {
    let flags = [
        "--restart",
        "always",
        "--restart-backoff",
        "100ms..100ms",
        "--max-restarts",
        "2",
    ];
    let mut f = spawn_child("maxrestart", &flags, &["sh", "-c", "exit 5"]);
    assert_eq!(f.run.expect_code(secs(15)), 5, "{}", f.run.dump());
    f.run.stdout.wait_eof(secs(5));
    let out = f.run.stdout.text();
    assert_eq!(
        out.matches("child started").count(),
        3,
        "the first run and two restarts\n{}",
        f.run.dump()
    );
    assert!(out.contains("giving up"), "{}", f.run.dump());
}

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

// ===========================================================================
// Drain (R8)
// ===========================================================================

/// `--drain-delay 2s --stop-timeout 2s` while two client loops (fresh and
/// kept-alive connections) send requests: /health is 503 "draining" at
/// once, no request started before the child's SIGTERM fails, gunicorn gets
/// its SIGTERM at about 2 s, and modelarts-init exits inside the bound with
/// gunicorn's status.
#[test]
fn drain_serves_traffic_until_the_child_stops() {
    let mut f = start_gunicorn(
        "drain",
        &["--drain-delay", "2s", "--stop-timeout", "2s"],
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let fresh = client_loop(f.listen, false, stop.clone());
    let kept = client_loop(f.listen, true, stop.clone());
    thread::sleep(ms(700)); // some traffic before the SIGTERM

    let (term_at, health_failed_after) = f.sigterm_until_draining();
    assert!(
        health_failed_after < ms(1900),
        "took {health_failed_after:?}"
    );

    let elapsed = f.wait_child_stop_signal();
    let code = f.run.expect_code(secs(15));
    let exit_after = term_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut samples = fresh.join().unwrap();
    samples.extend(kept.join().unwrap());
    f.run.stdout.wait_eof(secs(5));

    // 2 s delay + 2 s stop timeout + kill grace and the front's 0.5 s.
    assert!(
        exit_after < secs(10),
        "exit {exit_after:?} after SIGTERM\n{}",
        f.run.dump()
    );
    assert_eq!(
        code,
        0,
        "gunicorn stops cleanly on SIGTERM\n{}",
        f.run.dump()
    );
    assert!(
        f.run.stdout.contains("Handling signal: term"),
        "gunicorn never got SIGTERM\n{}",
        f.run.dump()
    );

    // Requests started before the child's SIGTERM (with a 300 ms margin for
    // the delivery of ours) all succeeded, during the drain too.
    let child_term = term_at + ms(elapsed);
    let before: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start + ms(300) < child_term)
        .collect();
    let in_drain = before.iter().filter(|s| s.start > term_at).count();
    assert!(in_drain >= 10, "only {in_drain} requests during the drain");
    let failed: Vec<_> = before.iter().filter(|s| s.outcome != Ok(200)).collect();
    assert!(
        failed.is_empty(),
        "failures before the child's SIGTERM: {failed:?}"
    );
    // After it: 200s that were in flight, 503 "stopping", or closed.
    for s in &samples {
        if let Ok(st) = s.outcome {
            assert!(st == 200 || st == 503, "{s:?}");
        }
    }
    eprintln!(
        "drain: {} requests, {} during the drain, {} reused connections, exit after {:?}",
        samples.len(),
        in_drain,
        samples.iter().filter(|s| s.reused).count(),
        exit_after
    );
}

/// A slow request (3 s) started ~1 s after SIGTERM is in flight when the
/// child gets its SIGTERM at ~2 s; gunicorn (`--graceful-timeout 10`)
/// finishes it, the client gets 200, and modelarts-init exits 0 right
/// after, long before `--stop-timeout 8s`.
#[test]
fn drain_lets_an_in_flight_request_finish() {
    let mut f = start_gunicorn(
        "drain-slow",
        &["--drain-delay", "2s", "--stop-timeout", "8s"],
        &["--graceful-timeout", "10"],
    );
    // A kept-alive connection, idle when the stop comes.
    let mut idle = Conn::open(f.listen).unwrap();
    assert_eq!(idle.get("/").unwrap().status, 200);
    // A connection in the middle of its request head when the stop comes.
    let mut partial = Conn::open(f.listen).unwrap();
    partial.send(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();

    let (term_at, _) = f.sigterm_until_draining();
    // Scenario timing, not synchronisation: start the slow request ~1 s in.
    thread::sleep(ms(1000).saturating_sub(term_at.elapsed()));
    let addr = f.listen;
    let slow = thread::spawn(move || {
        let started = Instant::now();
        let r = get(addr, "/slow?s=3");
        (started, Instant::now(), r)
    });

    let elapsed = f.wait_child_stop_signal();

    // The request finished on the still-open connection: 503 JSON with
    // Connection: close, and the connection is closed.
    partial.send(b"\r\n").unwrap();
    let r = partial.read_response(false).unwrap();
    r.assert_json_error(503, "stopping");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(partial.wait_closed(secs(5), &mut Vec::new()).is_some());

    // The idle kept-alive connection is closed at the stop.
    let mut got = Vec::new();
    let closed = idle.wait_closed(secs(5), &mut got);
    assert!(
        closed.is_some(),
        "idle keep-alive connection not closed at the stop"
    );
    // New connections are refused once the listener is closed.
    assert!(
        wait_until(secs(5), || TcpStream::connect_timeout(&f.listen, secs(1))
            .is_err()),
        "listener still accepting after the child's SIGTERM"
    );

    let (started, ended, r) = slow.join().unwrap();
    let r = r.unwrap_or_else(|e| panic!("slow request failed: {e}\n{}", f.run.dump()));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), f.run.dump());
    assert_eq!(r.json()["slept"], 3.0);
    assert!(
        started < term_at + ms(elapsed),
        "slow request was not in flight at the child's SIGTERM"
    );
    assert!(
        ended > term_at + ms(elapsed),
        "slow request ended before the child's SIGTERM"
    );

    let code = f.run.expect_code(secs(15));
    let exit_after = term_at.elapsed();
    assert_eq!(code, 0, "{}", f.run.dump());
    assert!(exit_after < secs(10), "exit {exit_after:?} after SIGTERM");
    assert!(
        f.run.stdout.contains("Handling signal: term"),
        "{}",
        f.run.dump()
    );
    assert!(!f.run.stdout.contains("stop timeout"), "{}", f.run.dump());
}

/// When the stop timeout runs out with a request still open (gunicorn
/// waits for it: its graceful timeout is 30 s), the client gets 503 JSON,
/// gunicorn is SIGKILLed and modelarts-init exits 137.
#[test]
fn stop_timeout_answers_open_requests_503() {
    let mut f = start_gunicorn(
        "stop-timeout",
        &["--drain-delay", "1s", "--stop-timeout", "2s"],
        &["--graceful-timeout", "30"],
    );
    let addr = f.listen;
    let slow = thread::spawn(move || get(addr, "/slow?s=30"));
    // Let the request reach gunicorn (the status page is off; gunicorn's
    // access log is off too): a short scenario pause, then SIGTERM.
    thread::sleep(ms(500));
    let term_at = Instant::now();
    f.sigterm();
    let code = f.run.expect_code(secs(20));
    let exit_after = term_at.elapsed();
    let r = slow
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("no answer: {e}\n{}", f.run.dump()));
    r.assert_json_error(503, "stopped");
    assert_eq!(
        code,
        137,
        "gunicorn SIGKILLed at the stop timeout\n{}",
        f.run.dump()
    );
    assert!(
        exit_after >= ms(2900) && exit_after < secs(12),
        "exit {exit_after:?} after SIGTERM (1 s delay + 2 s timeout)"
    );
    assert!(f.run.stdout.contains("stop timeout"), "{}", f.run.dump());
}

/// SIGTERM before the upstream was ever ready skips the drain delay.
#[test]
fn sigterm_before_ready_skips_the_drain_delay() {
    let mut f = spawn_child("never-ready", &["--drain-delay", "30s"], &["sleep", "1000"]);
    let h = f.first_health();
    assert_health_false(&h, "starting");
    let term_at = Instant::now();
    f.sigterm();
    let code = f.run.expect_code(secs(25));
    assert!(term_at.elapsed() < secs(10), "took {:?}", term_at.elapsed());
    assert_eq!(code, 143, "sleep killed by SIGTERM\n{}", f.run.dump());
    f.run.stdout.wait_eof(secs(5));
    assert!(
        f.run.stdout.contains("skipping the drain delay"),
        "{}",
        f.run.dump()
    );
}

// ===========================================================================
// Keep-alive on both sides
// ===========================================================================

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
    fourth.set_read_timeout(Duration::from_millis(800));
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
// WebSocket
// ===========================================================================

/// A WebSocket echo through the proxy: text and binary messages (1 MiB)
/// come back intact; the upstream sees the upgrade and X-Forwarded-For.
#[test]
fn websocket_echo_passes_through() {
    let (py, server) = (python(), py_script("ws_echo_server.py"));
    let mut f = spawn_child("ws", &[], &[py.as_str(), server.as_str()]);
    f.wait_ready("/health");
    let mut cmd = Command::new(python());
    cmd.arg(py_script("ws_client.py"))
        .arg(format!("ws://{}/ws", f.listen))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = Running::spawn(cmd);
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

/// A WebSocket opened before SIGTERM keeps working through the drain delay
/// (R8: traffic is served as before), and the exit waits for nothing more
/// than the timeline.
#[test]
fn websocket_keeps_working_during_the_drain() {
    let (py, server) = (python(), py_script("ws_echo_server.py"));
    let mut f = spawn_child(
        "ws-drain",
        &["--drain-delay", "3s", "--stop-timeout", "2s"],
        &[py.as_str(), server.as_str()],
    );
    f.wait_ready("/health");
    let go = f.dir.join("go");
    let mut cmd = Command::new(python());
    cmd.arg(py_script("ws_client.py"))
        .arg(format!("ws://{}/ws", f.listen))
        .arg(&go)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = Running::spawn(cmd);
    assert!(
        wait_until(secs(30), || client.stdout.contains("CONNECTED")),
        "ws client never connected\n{}",
        client.dump()
    );
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

// ===========================================================================
// Error answers
// ===========================================================================

/// Child for the 502 test: listens on $PORT until the first connection
/// (modelarts-init's readiness probe) arrives, then closes its listener,
/// writes `$1/closed` and sleeps.
const LISTEN_ONCE: &str = r#"
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(16)
c, _ = s.accept()
s.close()
c.close()
open(os.path.join(sys.argv[1], "closed"), "w").close()
time.sleep(1000)
"#;

/// Upstream refusing connections: 502 JSON. The child listens only until
/// the readiness probe has connected, so the upstream has been ready; with
/// `--probe-interval 1h` no later probe notices that it is gone, so
/// /health stays 200 and the proxied request meets a refused connection.
#[test]
fn refused_upstream_gives_502() {
    // A TCP probe: the child answers no HTTP.
    let flags = ["--probe-interval", "1h", "--upstream-health", "tcp"];
    let (init, dir, listen, _) = init_on_free_ports("502", &flags);
    let argv = ["python3", "-c", LISTEN_ONCE, &dir.str().to_owned()];
    let mut f = Front::spawn(init, dir, listen, &argv);
    f.wait_ready("/health");
    assert!(
        wait_until(secs(10), || f.dir.join("closed").exists()),
        "child never closed its listener\n{}",
        f.run.dump()
    );
    let r = f.get("/").unwrap();
    r.assert_json_error(502, "upstream_unavailable");
    let r = http(f.listen, "POST", "/echo", &[], b"payload").unwrap();
    r.assert_json_error(502, "upstream_unavailable");
}

/// Child for the second 502 test: accepts connections and closes them
/// without answering.
const CLOSE_AT_ONCE: &str = r#"
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.close()
"#;

/// An upstream that closes the connection without answering: 502 JSON.
#[test]
fn upstream_closing_without_an_answer_gives_502() {
    // A TCP probe: the child answers no HTTP.
    let flags = ["--upstream-health", "tcp"];
    let mut f = spawn_child("502-close", &flags, &["python3", "-c", CLOSE_AT_ONCE]);
    f.wait_ready("/health");
    let r = f.get("/").unwrap();
    r.assert_json_error(502, "upstream_error");
}

/// While the upstream is starting: 503 JSON for proxied requests, /health
/// 503 "starting", and the `health` verb exits 1.
#[test]
fn starting_upstream_gives_503_and_health_verb_1() {
    let mut f = spawn_child("503", &[], &["sleep", "1000"]);
    assert_health_false(&f.first_health(), "starting");
    f.get("/").unwrap().assert_json_error(503, "not_ready");
    http(f.listen, "POST", "/echo", &[], b"x")
        .unwrap()
        .assert_json_error(503, "not_ready");
    http(f.listen, "HEAD", "/", &[], b"")
        .map(|r| assert_eq!(r.status, 503))
        .unwrap();
    let (h, code) = health_verb(&["--url", &f.url("/health"), "--timeout", "5s"]);
    assert_eq!(code, 1, "{}", h.dump());
}

/// `--request-timeout 1s` with a 5 s request: 504 JSON after about 1 s;
/// the instance goes on serving.
#[test]
fn request_timeout_gives_504() {
    let f = start_gunicorn("504", &["--request-timeout", "1s"], &[]);
    let t = Instant::now();
    let r = f.get("/slow?s=5").unwrap();
    let took = t.elapsed();
    r.assert_json_error(504, "timeout");
    assert!(took >= ms(900) && took < ms(4500), "504 after {took:?}");
    let r = f.get("/slow?s=0.1").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(f.get("/").unwrap().status, 200);
}

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

// ===========================================================================
// config.json and check-config
// ===========================================================================

const OLD_FORMAT: &str = r#"{
  "model_algorithm": "image_classification",
  "model_type": "Image",
  "apis": [{"protocol": "http", "url": "/", "method": "post",
            "request": {"Content-type": "multipart/form-data",
                        "data": {"type": "object", "properties": {"images": {"type": "file"}}}},
            "response": {"Content-type": "application/json",
                         "data": {"type": "object", "properties": {"mnist_result": {"type": "integer"}}}}}],
  "health": {"url": "/ping", "protocol": "http", "initial_delay_seconds": "30", "timeout_seconds": "5"}
}"#;

const NEW_FORMAT: &str = r#"{
  "model_algorithm": "image_classification",
  "model_type": "Image",
  "apis": [{"url": "/predict", "method": "post",
            "request": {"Content-type": "application/json", "data": {"type": "object"}},
            "response": {"Content-type": "application/json", "data": {"type": "object"}}},
           {"url": "/", "method": "get"}],
  "health": {"check_method": "HTTP", "url": "/ping", "protocol": "http",
             "initial_delay_seconds": 10, "timeout_seconds": 5,
             "period_seconds": 5, "failure_threshold": 2}
}"#;

/// Runs a verb (`health`, `check-config`...) to completion (20 s): (guard, exit code).
fn run_verb(init: Init) -> (Running, i32) {
    let mut r = init.run(secs(20));
    let code = r.expect_code(secs(1));
    (r, code)
}

/// `modelarts-init check-config <path>`.
fn check_config_file(path: &Path) -> (Running, i32) {
    run_verb(Init::new().arg("check-config").arg(path))
}

/// `modelarts-init health ARGS...`.
fn health_verb(args: &[&str]) -> (Running, i32) {
    run_verb(Init::new().arg("health").args(args))
}

/// modelarts-init `--listen listen --upstream upstream`.
fn init_at(listen: &str, upstream: &str) -> Init {
    Init::new().args(["--listen", listen, "--upstream", upstream])
}

/// Runs `init` with a child that would touch `marker`; asserts exit 2 before
/// the child was started (`what` names the case) and returns the guard.
fn assert_refused_before_child(init: Init, marker: &Path, what: &str) -> Running {
    let (r, code) = run_verb(init.sh("touch \"$1\"", &[marker.to_str().unwrap()]));
    assert_eq!(code, 2, "{what}: exit {code}\n{}", r.dump());
    assert!(!marker.exists(), "{what}: the child was started");
    r
}

fn check_config(dir: &TempDir, name: &str, text: &str) -> (i32, String, String, PathBuf) {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    let (r, code) = check_config_file(&path);
    (code, r.stdout.text(), r.stderr.text(), path)
}

/// Both health formats (strings; numbers with check_method) and the
/// example app's config.json are valid; check-config prints what they
/// declare.
#[test]
fn check_config_accepts_both_formats() {
    let dir = TempDir::new("check-config");
    let (code, out, err, path) = check_config(&dir, "old.json", OLD_FORMAT);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{}: valid", path.display())), "{out}");
    assert!(out.lines().any(|l| l == "api: POST /"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("health: http /ping")),
        "{out}"
    );

    let (code, out, err, _) = check_config(&dir, "new.json", NEW_FORMAT);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().any(|l| l == "api: POST /predict"), "{out}");
    assert!(out.lines().any(|l| l == "api: GET /"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("health: http /ping")),
        "{out}"
    );

    let example = repo().join("examples/gunicorn-app/config.json");
    let (r, code) = check_config_file(&example);
    let out = r.stdout.text();
    assert_eq!(code, 0, "{}", r.dump());
    assert!(out.contains(": valid"), "{out}");
    assert!(out.lines().any(|l| l == "api: POST /echo"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("health: http /health")),
        "{out}"
    );
}

/// Broken configs: exit 2 with the field path, from check-config and from
/// `--config` (before the child is started).
#[test]
fn broken_config_exits_2_with_the_field_path() {
    let dir = TempDir::new("bad-config");
    let cases: [(&str, &str, &str); 8] = [
        (
            "wrong-type",
            r#"{"health": {"url": "/health", "period_seconds": true}}"#,
            "health.period_seconds",
        ),
        (
            "not-a-number",
            r#"{"health": {"url": "/health", "initial_delay_seconds": "thirty"}}"#,
            "health.initial_delay_seconds",
        ),
        ("url-type", r#"{"health": {"url": 5}}"#, "health.url"),
        (
            "protocol",
            r#"{"health": {"url": "/health", "protocol": "ftp"}}"#,
            "health.protocol",
        ),
        (
            "no-slash",
            r#"{"health": {"url": "health", "protocol": "http"}}"#,
            "health.url",
        ),
        (
            "https",
            r#"{"health": {"url": "/health", "protocol": "https"}}"#,
            "health.protocol",
        ),
        (
            "api-url",
            r#"{"apis": [{"url": "predict", "method": "post"}]}"#,
            "apis[0].url",
        ),
        (
            "check-method",
            r#"{"health": {"url": "/health", "check_method": "TCP"}}"#,
            "health.check_method",
        ),
    ];
    for (name, text, field) in cases {
        let (code, out, err, path) = check_config(&dir, &format!("{name}.json"), text);
        assert_eq!(code, 2, "{name}: check-config exit {code}\n{out}{err}");
        assert!(err.contains(field), "{name}: no {field} in {err:?}");
        assert!(
            err.contains(path.to_str().unwrap()),
            "{name}: file not named in {err:?}"
        );

        let marker = dir.join(&format!("{name}.ran"));
        let init = init_at(&free_addr().to_string(), &free_addr().to_string())
            .arg("--config")
            .arg(&path);
        let r = assert_refused_before_child(init, &marker, &format!("{name}: --config"));
        assert!(r.stderr.contains(field), "{name}: no {field}\n{}", r.dump());
    }
}

/// `--config` with health.url /ping, in both formats: /ping is the health
/// path (200 {"health":"true"} when ready); /health is the app's (404).
#[test]
fn config_health_url_is_the_health_path() {
    for (name, text) in [("old", OLD_FORMAT), ("new", NEW_FORMAT)] {
        let dir = TempDir::new("config-ping");
        let cfg = dir.join("config.json");
        fs::write(&cfg, text).unwrap();
        let mut f = spawn_gunicorn(
            &format!("config-{name}"),
            &["--config", cfg.to_str().unwrap()],
            &[],
        );
        f.wait_ready("/ping");
        let r = f.get("/ping").unwrap();
        assert_health_true(&r);
        let r = f.get("/health").unwrap();
        assert_eq!(
            r.status,
            404,
            "{name}: /health should reach gunicorn: {}",
            r.text()
        );
    }
}

// ===========================================================================
// The health verb
// ===========================================================================

/// `modelarts-init health`: 0 against a ready instance, 1 against a closed
/// port (the starting case is in `starting_upstream_gives_503_and_health_verb_1`).
#[test]
fn health_verb_exit_codes() {
    let f = start_gunicorn("health-verb", &[], &[]);
    let (r, code) = health_verb(&["--url", &f.url("/health")]);
    assert_eq!(code, 0, "{}", r.dump());

    let closed = free_addr();
    let url = format!("http://{closed}/health");
    let (r, code) = health_verb(&["--url", &url, "--timeout", "3s"]);
    assert_eq!(code, 1, "{}", r.dump());
    assert!(r.stderr.contains(&closed.to_string()), "{}", r.dump());

    // A path that answers non-200 (gunicorn's 404): 1 as well.
    let (r, code) = health_verb(&["--url", &f.url("/nowhere")]);
    assert_eq!(code, 1, "{}", r.dump());
}

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
            "2s",
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

// ===========================================================================
// Status page
// ===========================================================================

/// `--status-path /_status` reports the gunicorn master (child_pid, from
/// its pid file) and its workers (tree processes, rss), and counts requests.
#[test]
fn status_page_reports_gunicorn_and_workers() {
    let f = start_gunicorn("status", &["--status-path", "/_status"], &["-w", "2"]);
    let master = f.gunicorn_pid();
    let mut page = Value::Null;
    let ok = wait_until(secs(30), || {
        page = f.get("/_status").unwrap().json();
        page["tree"]["processes"].as_u64().unwrap_or(0) >= 3
    });
    assert!(
        ok,
        "gunicorn master + 2 workers not in {page}\n{}",
        f.run.dump()
    );
    assert_eq!(page["state"], "ready", "{page}");
    assert_eq!(page["pid"], f.run.pid(), "{page}");
    assert_eq!(page["child_pid"], master, "{page}");
    assert!(
        page["tree"]["rss_bytes"].as_u64().unwrap() > 10_000_000,
        "{page}"
    );
    assert!(page["tree"]["cpu_time_ms"].as_u64().is_some(), "{page}");
    assert!(page["uptime_ms"].as_u64().unwrap() > 0, "{page}");

    let served = page["requests_served"].as_u64().unwrap();
    for _ in 0..3 {
        assert_eq!(f.get("/").unwrap().status, 200);
    }
    let addr = f.listen;
    let slow = thread::spawn(move || get(addr, "/slow?s=2"));
    let mut in_flight = Value::Null;
    assert!(
        wait_until(secs(5), || {
            in_flight = f.get("/_status").unwrap().json();
            in_flight["requests_in_flight"].as_u64() == Some(1)
        }),
        "{in_flight}"
    );
    assert_eq!(slow.join().unwrap().unwrap().status, 200);
    let page = f.get("/_status").unwrap().json();
    assert!(
        page["requests_served"].as_u64().unwrap() >= served + 4,
        "{page}"
    );
    assert_eq!(page["requests_in_flight"], 0, "{page}");
    let r = f.get("/_status").unwrap();
    assert_eq!(r.header("content-type"), Some("application/json"));
}

/// Without `--status-path` the path is the app's: gunicorn's 404.
#[test]
fn status_page_is_off_by_default() {
    let f = start_gunicorn("status-off", &[], &[]);
    let r = f.get("/_status").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/html")),
        "not gunicorn's 404: {r:?}"
    );
    assert!(
        serde_json::from_slice::<Value>(&r.body).is_err(),
        "{}",
        r.text()
    );
}

// ===========================================================================
// R9: requests past 60 s
// ===========================================================================

/// A request still running after 60 s is logged as a warning (R9) and,
/// without --request-timeout, still completes.
#[test]
fn request_past_60s_is_logged() {
    let f = start_gunicorn("r9", &[], &["--timeout", "120"]);
    let addr = f.listen;
    let slow = thread::spawn(move || get(addr, "/slow?s=62"));
    let line = f
        .wait_log("request still running after 60 s", secs(75))
        .unwrap_or_else(|| panic!("no R9 warning\n{}", f.run.dump()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("/slow"), "{line}");
    let r = slow.join().unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

// ===========================================================================
// Start-up refusals
// ===========================================================================

/// `--upstream` equal to `--listen` (or reachable through 0.0.0.0): exit 2
/// before the child starts.
#[test]
fn upstream_equal_to_listen_exits_2() {
    let dir = TempDir::new("same-addr");
    let p = free_port();
    for (listen, upstream) in [
        (format!("127.0.0.1:{p}"), format!("127.0.0.1:{p}")),
        (format!("0.0.0.0:{p}"), format!("127.0.0.1:{p}")),
    ] {
        let marker = dir.join("ran");
        let what = format!("--listen {listen} --upstream {upstream}");
        let r = assert_refused_before_child(init_at(&listen, &upstream), &marker, &what);
        assert!(r.stderr.contains("--upstream"), "{}", r.dump());
    }
}

/// A port already in use: exit 2 with a message naming the address.
#[test]
fn port_in_use_exits_2() {
    let dir = TempDir::new("in-use");
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let marker = dir.join("ran");
    let init = init_at(&addr.to_string(), &free_addr().to_string());
    let r = assert_refused_before_child(init, &marker, &format!("--listen {addr} in use"));
    let err = r.stderr.text();
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");
    drop(holder);
}
