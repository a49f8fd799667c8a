"""Endpoints for the ring tests (tests/test_ring.py).

  /sha?wait=S   sleep S seconds WITHOUT reading the body (the ring must stop receiving), then read it
                all and answer "<length> <sha256>"
"""

import asyncio
import hashlib

from tests.apps._util import lifespan_noop, query, send_bytes


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    await asyncio.sleep(float(query(scope).get("wait", 0)))
    digest, size, more = hashlib.sha256(), 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        digest.update(message.get("body", b""))
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send_bytes(send, b"%d %s" % (size, digest.hexdigest().encode()))
