"""A WebSocket client for the proxy tests (tests/it/front_websocket.rs).

Usage: ws_client.py URL [GO_FILE]

Sends text and binary messages (one of 1 MiB) to the echo server behind the
proxy, checks each echo, then asks for the handshake headers the server saw.
Prints "HEADERS <json>" and "WS-OK <n>" and exits 0, or exits 1 with the
reason. A wss:// URL is opened with Python's ssl module, trusting any
certificate when WS_INSECURE=1 (the front's self-signed one). With GO_FILE: after the first echo prints "CONNECTED" and waits (60 s
at most) until GO_FILE exists before sending the rest, so that a test can
act (e.g. start a drain) while the connection is open.
"""

import asyncio
import json
import os
import random
import ssl
import sys

from websockets.asyncio.client import connect


async def main(url, go_file=None):
    rng = random.Random(7)
    messages = [
        "hello",
        "ünïcödé ✓",
        b"\x00\x01\x02binary\xff",
        bytes(rng.getrandbits(8) for _ in range(1 << 20)),
        "x" * 100_000,
    ]
    options = {}
    if url.startswith("wss://"):
        context = ssl.create_default_context()
        if os.environ.get("WS_INSECURE") == "1":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    async with connect(url, max_size=None, open_timeout=20, close_timeout=5, **options) as ws:
        for i, message in enumerate(messages):
            await ws.send(message)
            got = await asyncio.wait_for(ws.recv(), 20)
            if got != message:
                print(f"message {i}: echo differs ({len(got)} vs {len(message)})")
                return 1
            if i == 0 and go_file:
                print("CONNECTED", flush=True)
                for _ in range(600):
                    if os.path.exists(go_file):
                        break
                    await asyncio.sleep(0.1)
        await ws.send("__headers__")
        headers = json.loads(await asyncio.wait_for(ws.recv(), 20))
    print("HEADERS " + json.dumps(headers), flush=True)
    print(f"WS-OK {len(messages)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:3])))
