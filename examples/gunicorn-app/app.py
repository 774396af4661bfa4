"""A small Flask app to run behind modelarts-init, served by gunicorn with
gevent workers:

    modelarts-init -- gunicorn -k gevent -w 2 --keep-alive 200 -b 127.0.0.1:8081 app:app

Routes (the integration tests in tests/it/front_*.rs use them all):

    GET  /              a small JSON
    POST /echo          streams the request body back
    GET  /bytes?n=N     streams N bytes of deterministic content: byte i is i % 251
    GET  /slow?s=S      sleeps S seconds (a float), then answers
    GET  /headers       the request headers as a JSON object (POST too)
    ANY  /status/<code> answers with that status code
"""

import os

from flask import Flask, Response, jsonify, request

try:  # gevent.sleep yields to the other greenlets of a gevent worker
    from gevent import sleep
except ImportError:  # plain `flask run` or a sync worker
    from time import sleep

app = Flask(__name__)

CHUNK = 64 * 1024
# 251 is prime, so the pattern never lines up with power-of-two chunk sizes;
# the block holds whole periods, so consecutive blocks continue the pattern.
PATTERN = bytes(i % 251 for i in range(251 * 256))


@app.get("/")
def index():
    return jsonify(app="gunicorn-app", pid=os.getpid())


@app.post("/echo")
def echo():
    # request.stream also works for chunked uploads: gunicorn marks its
    # input as terminated, so Werkzeug reads it to the end.
    stream = request.stream

    def body():
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                return
            yield chunk

    length = request.content_length
    headers = {"Content-Length": str(length)} if length is not None else {}
    return Response(body(), content_type="application/octet-stream", headers=headers)


@app.get("/bytes")
def some_bytes():
    n = request.args.get("n", default=1024, type=int)

    def body():
        left = n
        while left > 0:
            block = PATTERN[: min(left, len(PATTERN))]
            left -= len(block)
            yield block

    return Response(
        body(),
        content_type="application/octet-stream",
        headers={"Content-Length": str(n)},
    )


@app.get("/slow")
def slow():
    s = request.args.get("s", default=1.0, type=float)
    sleep(s)
    return jsonify(slept=s)


@app.route("/headers", methods=["GET", "POST"])
def headers():
    return jsonify({k.lower(): v for k, v in request.headers.items()})


@app.route("/status/<int:code>", methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
def status(code):
    if code in (204, 304) or code < 200:
        return Response(status=code)
    return jsonify(status=code), code
