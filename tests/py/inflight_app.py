"""A WSGI app that counts its own requests in flight, across all of
gunicorn's worker processes, for the admission tests
(tests/it/front_admission.rs) and bench/overload.sh:

    INFLIGHT_FILE=/tmp/x gunicorn -k sync -w 2 --chdir tests/py inflight_app:app

Routes:

    GET|POST /work?ms=M   sleeps M milliseconds (default 200), then answers
                          {"ok": true, "pid": ..., "request_id": <its
                          X-Request-Id>, "waited_ms": ...}; a POST body is
                          read first. "waited_ms": from the client's
                          X-Sent-At (CLOCK_MONOTONIC in ns, the same clock
                          for every process of the machine) to the moment
                          a worker started it, when the client sent one.
    anything else         404

$INFLIGHT_FILE holds "<in flight now> <most in flight at once> <answered>
<service ns total>", updated under an flock by every worker, so that a
test reads the app's own count without a request that would queue.
"""

import fcntl
import json
import os
import time
from urllib.parse import parse_qs

STATS = os.environ["INFLIGHT_FILE"]


def _update(delta, served=0, service_ns=0):
    fd = os.open(STATS, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 200, 0).decode().split()
        now, most, answered, total = (int(x) for x in raw) if len(raw) == 4 else (0, 0, 0, 0)
        now += delta
        most = max(most, now)
        answered += served
        total += service_ns
        line = f"{now} {most} {answered} {total}".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
    finally:
        os.close(fd)


def app(environ, start_response):
    started = time.monotonic_ns()
    if environ.get("PATH_INFO") != "/work":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    sent = environ.get("HTTP_X_SENT_AT")
    waited_ms = (started - int(sent)) / 1e6 if sent else None
    _update(+1)
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["200"])[0])
        time.sleep(ms / 1000)
    finally:
        _update(-1, served=1, service_ns=time.monotonic_ns() - started)
    body = json.dumps(
        {
            "ok": True,
            "pid": os.getpid(),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),
            "waited_ms": waited_ms,
        }
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
