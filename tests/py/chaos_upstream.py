"""A broken upstream for tests/it/chaos.rs, listening on 127.0.0.1:$PORT.

Usage: python3 chaos_upstream.py MODE

Every connection reads one request head, then, by MODE:

    hang     never answers (keeps the connection open)
    midway   a 200 head with Content-Length: 1000, 100 bytes of body, close
    garbage  bytes that are not HTTP, then close
"""

import sys

from tcp_server import serve_forever

MODE = sys.argv[1]
held = []


def serve(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            conn.close()
            return
        data += chunk
    if MODE == "hang":
        held.append(conn)
        return
    if MODE == "midway":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    elif MODE == "garbage":
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe not http at all\r\n\r\n")
    conn.close()


serve_forever(serve)
