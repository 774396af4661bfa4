//! The client socket of a connection, as hyper sees it.
//!
//! Owns: [`Io`], which tells the connection's clock (`conn`) when an answer
//! is being written, and gives hyper's own bare 400/414/431 answers a JSON
//! body. Must not: decide answers or keep time.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};

use super::conn::ConnClock;

/// A client socket that reports writes to its connection's clock, and
/// gives hyper's own error answers a JSON body.
///
/// hyper answers a request it cannot parse by itself, before any service
/// sees it, with a bare `400`, `414` or `431` and no way to change the body.
/// Those answers are recognised on the way out (the exact head hyper
/// writes, at a moment when no response of ours is due) and replaced by the
/// same answer with a JSON body, like every other error of the front.
pub struct Io<T> {
    inner: T,
    clock: std::sync::Arc<ConnClock>,
    /// The JSON answer being written in place of hyper's, how much of it is
    /// written, and the length of hyper's buffer it stands for.
    rewrite: Option<(Vec<u8>, usize, usize)>,
}

impl<T> Io<T> {
    pub fn new(inner: T, clock: std::sync::Arc<ConnClock>) -> Io<T> {
        Io {
            inner,
            clock,
            rewrite: None,
        }
    }
}

impl<T: Write + Unpin> Io<T> {
    /// Notes a write; starts replacing it if it is one of hyper's bare
    /// error answers (`first` is the start of what hyper writes).
    fn before_write(&mut self, first: &[u8], whole: impl FnOnce() -> Vec<u8>) {
        let ours = self.clock.wrote();
        if !ours && self.rewrite.is_none() && first.starts_with(b"HTTP/1.1 4") {
            let whole = whole();
            if let Some(json) = json_error_answer(&whole) {
                self.rewrite = Some((json, 0, whole.len()));
            }
        }
    }

    /// Writes the replacement; done when all of it is out.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let Some((bytes, done, stands_for)) = &mut self.rewrite else {
            return Poll::Ready(Ok(0));
        };
        while *done < bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => *done += n,
                other => return other,
            }
        }
        let n = *stands_for;
        self.rewrite = None;
        Poll::Ready(Ok(n))
    }
}

/// Our answer in place of one of hyper's bare error answers, if `head` is
/// exactly one: `HTTP/1.1 <status>`, `connection: close`,
/// `content-length: 0`, `date`, and nothing else.
fn json_error_answer(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let (status_line, rest) = rest.split_once("\r\n")?;
    let date = rest
        .strip_prefix("connection: close\r\ncontent-length: 0\r\ndate: ")?
        .strip_suffix("\r\n\r\n")?;
    if date.len() != 29 || date.contains('\n') {
        return None;
    }
    let (code, message) = match status_line.get(..3)? {
        "400" => (
            "bad_request",
            "malformed request: the request line or a header could not be parsed",
        ),
        "414" => ("uri_too_long", "the request target is too long"),
        "431" => (
            "headers_too_large",
            "the request line and headers are too large",
        ),
        _ => return None,
    };
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    Some(
        format!(
            "HTTP/1.1 {status_line}\r\nconnection: close\r\ncontent-type: application/json\r\n\
             content-length: {}\r\ndate: {date}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: Read + Unpin> Read for Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none() {
            this.before_write(buf, || buf.to_vec());
        }
        if this.rewrite.is_some() {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            this.before_write(first, || {
                bufs.iter().flat_map(|b| b.iter().copied()).collect()
            });
        }
        if this.rewrite.is_some() {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_exact_error_heads_are_replaced() {
        let date = "Thu, 26 Nov 2026 13:12:24 GMT";
        let hyper =
            format!("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n");
        let ours = String::from_utf8(json_error_answer(hyper.as_bytes()).unwrap()).unwrap();
        let (head, body) = ours.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "bad_request");
        let too_big = hyper.replace("400 Bad Request", "431 Request Header Fields Too Large");
        assert!(json_error_answer(too_big.as_bytes()).is_some());
        // Anything else passes untouched: other statuses, other headers, a
        // body, a 400 with content.
        for other in [
            hyper.replace("400 Bad Request", "404 Not Found"),
            hyper.replace("connection: close\r\n", ""),
            format!("{hyper}x"),
            hyper.replace("content-length: 0", "content-length: 1"),
            hyper.replace("\r\n\r\n", "\r\nx-a: b\r\n\r\n"),
        ] {
            assert!(json_error_answer(other.as_bytes()).is_none(), "{other}");
        }
    }
}
