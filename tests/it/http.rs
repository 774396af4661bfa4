//! A small raw HTTP/1.1 client for the integration tests, and curl.
//!
//! [`Conn`] is one client connection kept open across requests, with full
//! control over the bytes sent (partial heads, garbage, bodies chunked by
//! hand: see [`request_head`]) and a reader for each answer ([`Resp`]:
//! status, headers, body by length, chunked or to EOF; interim 1xx answers
//! too). [`http`] and [`get`] send one request on a fresh connection.
//! [`curl`] runs curl with a deadline, for what curl does best (large
//! uploads from a file, `Expect: 100-continue`). Nothing here knows
//! modelarts-init: any HTTP/1.1 server on 127.0.0.1 will do (the fronts of
//! `front_util`, the mnist server).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{free_port, ms, secs, Running};

/// 127.0.0.1 on a free port ([`free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

// ===========================================================================
// A small raw HTTP/1.1 client
// ===========================================================================

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> Value {
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
    pub fn assert_json_error(&self, status: u16, code: &str) {
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
pub struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    /// Connects (5 s at most), with read and write timeouts of 120 s and 60 s
    /// and TCP_NODELAY.
    pub fn open(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, secs(5))?;
        s.set_read_timeout(Some(secs(120)))?;
        s.set_write_timeout(Some(secs(60)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::with_capacity(256 * 1024, s),
        })
    }

    /// The socket, e.g. for its local address or a writer clone.
    pub fn stream(&self) -> &TcpStream {
        self.r.get_ref()
    }

    /// Reads whatever has arrived (after what an earlier answer left
    /// buffered), as `Read::read` does.
    pub fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read(buf)
    }

    /// Sets the read timeout of the socket.
    pub fn set_read_timeout(&self, d: Duration) {
        self.stream().set_read_timeout(Some(d)).unwrap();
    }

    /// Writes raw bytes (a whole request, or any part of one).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.stream();
        s.write_all(bytes)?;
        s.flush()
    }

    /// Sends a request (Host and, with a body or for POST/PUT,
    /// Content-Length added) and reads the answer.
    pub fn request(
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

    /// `GET path` on this connection.
    pub fn get(&mut self, path: &str) -> io::Result<Resp> {
        self.request("GET", path, &[], b"")
    }

    /// Reads one response (an interim 1xx one too).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Resp> {
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
    pub fn wait_closed(&mut self, timeout: Duration, got: &mut Vec<u8>) -> Option<Duration> {
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

/// A request head: the request line, `Host: test.local`, `headers`, and
/// with `body_len` a Content-Length (unless `headers` has one or a
/// Transfer-Encoding; for an empty body only on POST and PUT), then the
/// empty line.
pub fn request_head(
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
pub fn http(
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

/// `GET path` on a fresh connection, closed afterwards.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Resp> {
    http(addr, "GET", path, &[], b"")
}

// ===========================================================================
// curl
// ===========================================================================

/// What a [`curl`] run gave: its exit code and output.
pub struct CurlOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs curl (silent, errors shown) with a deadline.
pub fn curl(args: &[&str], timeout: Duration) -> CurlOut {
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
pub fn curl_post_file(url: &str, src: &Path, out: &Path, extra: &[&str], timeout: Duration) {
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
