"""A Flask app that streams, for the stream tests (tests/it/front_streams.rs),
served by gunicorn with gevent workers: `gunicorn --chdir tests/py streams_app:app`.

Routes:

    GET /lockstep?n=N&dir=D   server-sent events 0..N-1; event k+1 is written
                              only once the client has created D/got-k (it
                              does so on receiving event k), so the stream
                              passes through the proxy only if each event is
                              forwarded as it comes. Gives up after 5 s.
    GET /stall                one event, then nothing for 60 s
"""

import os
import time

from flask import Flask, Response, request

try:
    from gevent import sleep
except ImportError:
    from time import sleep

app = Flask(__name__)


@app.get("/lockstep")
def lockstep():
    n = request.args.get("n", default=5, type=int)
    d = request.args["dir"]

    def events():
        deadline = time.monotonic() + 5
        for k in range(n):
            yield f"data: event {k}\n\n"
            while not os.path.exists(os.path.join(d, f"got-{k}")):
                if time.monotonic() > deadline:
                    yield "data: gave up\n\n"
                    return
                sleep(0.01)

    return Response(events(), content_type="text/event-stream")


@app.get("/stall")
def stall():
    def events():
        yield "data: first\n\n"
        sleep(60)
        yield "data: late\n\n"

    return Response(events(), content_type="text/event-stream")
