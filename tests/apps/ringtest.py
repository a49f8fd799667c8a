"""Endpoints for the ring tests (tests/test_ring.py).

  /sha?wait=S   sleep S seconds WITHOUT reading the body (the ring must stop receiving), then read it
                all and answer "<length> <sha256>"
"""

import asyncio

from tests.apps._util import hash_body, lifespan_noop, query, send_bytes


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    await asyncio.sleep(float(query(scope).get("wait", 0)))
    hashed = await hash_body(receive)
    if hashed is not None:
        await send_bytes(send, b"%d %s" % (hashed[0], hashed[1].encode()))
