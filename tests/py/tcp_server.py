"""The accept loop of the raw-socket test upstreams (chaos_upstream.py,
record_upstream.py): listen on 127.0.0.1:$PORT, one thread per connection.

Usage: from tcp_server import serve_forever; serve_forever(serve)
"""

import os
import socket
import threading


def serve_forever(serve, backlog=128):
    """Calls serve(conn) on a thread of its own for every connection."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(os.environ["PORT"])))
    s.listen(backlog)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
