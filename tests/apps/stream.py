"""A streamed response without Content-Length (chunked on HTTP/1.1, close-delimited on 1.0).

Query: n (chunks, default 5), delay (seconds between chunks, default 0).
Between chunks it also sends an EMPTY body message with more_body=True, which a server
must not frame as the terminating zero-length chunk.
"""

import asyncio

from tests.apps._util import lifespan_noop, query


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    q = query(scope)
    n, delay = int(q.get("n", 5)), float(q.get("delay", 0))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(n):
        if i and delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": b"chunk-%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
