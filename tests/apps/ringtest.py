"""Endpoints for the ring tests (tests/test_ring.py).

  /sha?wait=S   sleep S seconds WITHOUT reading the body (the ring must stop receiving), then read it
                all and answer "<length> <sha256>"
  /flood?n=N&block=S
                a thread calls loop.call_soon_threadsafe N times while the loop thread is blocked
                for S seconds (as under load, when threads finish faster than the loop gets the
                GIL); answers the number of callbacks that ran
"""

import asyncio
import threading
import time

from tests.apps._util import hash_body, lifespan_noop, query, send_bytes


async def flood(n: int, block_s: float) -> int:
    loop = asyncio.get_running_loop()
    ran = [0]
    all_ran = loop.create_future()

    def one() -> None:
        ran[0] += 1
        if ran[0] == n:
            all_ran.set_result(None)

    def calls() -> None:
        for _ in range(n):
            loop.call_soon_threadsafe(one)

    thread = threading.Thread(target=calls)
    thread.start()
    time.sleep(block_s)  # blocks the loop thread (not the GIL)
    await all_ran
    thread.join()
    return ran[0]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    if scope["path"] == "/flood":
        q = query(scope)
        await send_bytes(send, b"%d" % await flood(int(q["n"]), float(q["block"])))
        return
    await asyncio.sleep(float(query(scope).get("wait", 0)))
    hashed = await hash_body(receive)
    if hashed is not None:
        await send_bytes(send, b"%d %s" % (hashed[0], hashed[1].encode()))
