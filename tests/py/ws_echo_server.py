"""A WebSocket echo server for the proxy tests (tests/it/front_websocket.rs).

Run as modelarts-init's child: listens on 127.0.0.1:$PORT (modelarts-init
sets PORT to the --upstream port). Echoes every message; the text message
"__headers__" is answered with the handshake's request headers as JSON, so
the test can see what the proxy forwarded.
"""

import asyncio
import json
import os

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        if message == "__headers__":
            headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
            await ws.send(json.dumps(headers))
        else:
            await ws.send(message)


async def main():
    port = int(os.environ["PORT"])
    async with serve(echo, "127.0.0.1", port, max_size=None) as server:
        print(f"ws echo server on 127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
