"""A plain ASGI app for uvicorn (tests/it/front_readiness.rs):
`uvicorn --app-dir tests/py asgi_app:app --port $PORT`. Answers every GET
with a small JSON and no /health of its own (404 there), as many apps do.
"""

import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        status, body = 404, {"error": "no such path"}
    else:
        status, body = 200, {"app": "asgi", "path": scope["path"]}
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
