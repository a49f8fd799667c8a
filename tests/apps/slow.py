"""A slow streamed response: the head and b"started\\n" at once, b"done\\n" after `delay` seconds.

The early head lets a test know the request is in flight without sleeping.
"""

import asyncio

from tests.apps._util import lifespan_noop, query, read_body


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    await read_body(receive)
    delay = float(query(scope).get("delay", 1))
    tag = query(scope).get("tag", "").encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"started " + tag + b"\n", "more_body": True})
    await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b"done " + tag + b"\n", "more_body": False})
