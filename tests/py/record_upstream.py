"""An HTTP/1.1 upstream that records the exact bytes of every request it
receives, for the strict-HTTP tests (tests/it/front_http11.rs).

Usage (as modelarts-init's child): python3 record_upstream.py DIR

Listens on 127.0.0.1:$PORT. Reads each request's head and its body (by
Content-Length or chunked), appends the raw bytes to DIR/requests (each
request followed by a line "\\n=====\\n"), and answers 200 "ok", keeping the
connection open. The readiness probe's requests (User-Agent
modelarts-init/...) are answered but not recorded.
"""

import os
import sys
import threading

from tcp_server import serve_forever

DIR = sys.argv[1]
LOCK = threading.Lock()


def read_until(conn, buf, marker):
    while marker not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    i = buf.index(marker) + len(marker)
    return buf[:i], buf[i:]


def read_exact(conn, buf, n):
    while len(buf) < n:
        chunk = conn.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    return buf[:n], buf[n:]


def read_chunked(conn, buf):
    body = b""
    while True:
        line, buf = read_until(conn, buf, b"\r\n")
        if line is None:
            return None, buf
        body += line
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            end, buf = read_until(conn, buf, b"\r\n")
            return (None if end is None else body + end), buf
        data, buf = read_exact(conn, buf, size + 2)
        if data is None:
            return None, buf
        body += data


def serve(conn):
    buf = b""
    with conn:
        while True:
            head, buf = read_until(conn, buf, b"\r\n\r\n")
            if head is None:
                return
            lower = head.lower()
            body = b""
            if b"transfer-encoding: chunked" in lower:
                body, buf = read_chunked(conn, buf)
            else:
                for line in lower.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        body, buf = read_exact(conn, buf, int(line.split(b":")[1]))
            if body is None:
                return
            if b"user-agent: modelarts-init/" not in lower:
                with LOCK, open(os.path.join(DIR, "requests"), "ab") as f:
                    f.write(head + body + b"\n=====\n")
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")


def main():
    serve_forever(serve, backlog=64)


if __name__ == "__main__":
    main()
