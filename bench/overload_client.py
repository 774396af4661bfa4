"""The client of bench/overload.sh: CONNS keep-alive connections, each
sending GET PATH back to back for SECONDS, with X-Sent-At (CLOCK_MONOTONIC
in ns) so that the app (tests/py/inflight_app.py) can say how long the
request waited before a worker started it. A 503 with Retry-After makes
that connection wait that long before its next request, as a client that
honours the answer does (RETRY_AFTER=0: retry at once).

Usage: overload_client.py URL CONNS SECONDS

Prints one JSON object: answers by status, errors, and for the 200s the
latency and the app-measured wait (p50, p99, mean, in ms).
"""

import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit


def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(url, conns, seconds):
    u = urlsplit(url)
    honour = os.environ.get("RETRY_AFTER", "1") != "0"
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    statuses, latencies, waits, errors = {}, [], [], []

    def run():
        c = None
        while time.monotonic() < deadline:
            if c is None:
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
            t0 = time.monotonic_ns()
            try:
                c.request("GET", u.path + ("?" + u.query if u.query else ""),
                          headers={"X-Sent-At": str(t0)})
                r = c.getresponse()
                body = r.read()
            except Exception as e:
                with lock:
                    errors.append(repr(e))
                c.close()
                c = None
                continue
            took = (time.monotonic_ns() - t0) / 1e6
            retry = r.getheader("Retry-After")
            with lock:
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    latencies.append(took)
                    waited = json.loads(body).get("waited_ms")
                    if waited is not None:
                        waits.append(waited)
            if r.getheader("Connection", "").lower() == "close":
                c.close()
                c = None
            if r.status == 503 and retry and honour:
                time.sleep(min(float(retry), max(0.0, deadline - time.monotonic())))

    threads = [threading.Thread(target=run) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "ok": len(latencies),
        "latency_ms": {"p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99),
                       "mean": sum(latencies) / len(latencies) if latencies else None},
        "waited_ms": {"p50": pct(waits, 0.5), "p99": pct(waits, 0.99),
                      "mean": sum(waits) / len(waits) if waits else None},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
