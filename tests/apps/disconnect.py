"""Wait for http.disconnect and record it, so another request can ask what happened.

  /disconnect/hold?id=X   read the body, then keep calling receive() until http.disconnect;
                          records every message as [len(body), more_body] or ["http.disconnect"].
                          Never answers on its own (the client is expected to go away).
  /disconnect/wait?id=X   waits (up to `timeout` s, default 5) until X has seen http.disconnect and
                          returns {"done": bool, "messages": [...], "send_after_disconnect": ...}.

State lives in this process, which is fine for a single-worker server.
"""

import asyncio

from tests.apps._util import lifespan_noop, query, send_json

RECORDS: dict[str, dict] = {}
EVENTS: dict[str, asyncio.Event] = {}


def _event(key: str) -> asyncio.Event:
    return EVENTS.setdefault(key, asyncio.Event())


async def hold(key, receive, send):
    record = RECORDS.setdefault(key, {"messages": [], "send_after_disconnect": None})
    while True:
        message = await receive()
        if message["type"] == "http.request":
            record["messages"].append([len(message.get("body", b"")), message.get("more_body", False)])
            continue
        record["messages"].append([message["type"]])
        break
    # ASGI: sending on a closed connection may be a no-op or raise OSError; both are fine.
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        record["send_after_disconnect"] = "ok"
    except OSError as exc:
        record["send_after_disconnect"] = type(exc).__name__
    _event(key).set()


async def wait(key, timeout, send):
    try:
        await asyncio.wait_for(_event(key).wait(), timeout)
        done = True
    except asyncio.TimeoutError:
        done = False
    record = RECORDS.get(key, {"messages": [], "send_after_disconnect": None})
    await send_json(send, dict(record, done=done))


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    q = query(scope)
    key = q.get("id", "default")
    if scope["path"].rstrip("/").endswith("/wait"):
        await wait(key, float(q.get("timeout", 5)), send)
    else:
        await hold(key, receive, send)
