"""Small helpers shared by the test apps (raw ASGI, standard library only)."""

from __future__ import annotations

import hashlib
import json
import urllib.parse


async def lifespan_noop(receive, send):
    """Accept startup and shutdown without doing anything."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def query(scope) -> dict[str, str]:
    """The query string as a dict of last values."""
    return dict(urllib.parse.parse_qsl(scope["query_string"].decode("latin-1")))


async def read_body(receive) -> tuple[bytes, list[list]]:
    """Read the whole request body; also return [len(body), more_body] per message."""
    chunks, messages = [], []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            messages.append([message["type"]])
            break
        body = message.get("body", b"")
        more = message.get("more_body", False)
        chunks.append(body)
        messages.append([len(body), more])
        if not more:
            break
    return b"".join(chunks), messages


async def hash_body(receive) -> tuple[int, str] | None:
    """Read the whole request body without keeping it: (size, sha256 hex), or None if the client left."""
    digest, size = hashlib.sha256(), 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body = message.get("body", b"")
        digest.update(body)
        size += len(body)
        if not message.get("more_body", False):
            return size, digest.hexdigest()


async def ws_echo(receive, send) -> dict:
    """Echo websocket messages (text as text, bytes as bytes) until the disconnect, and return it."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return message
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


async def send_bytes(send, body: bytes, status: int = 200, content_type: bytes = b"text/plain",
                     headers: list | None = None) -> None:
    extra = list(headers or [])
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())] + extra,
    })
    await send({"type": "http.response.body", "body": body})


async def send_json(send, payload, status: int = 200, headers: list | None = None) -> None:
    await send_bytes(send, json.dumps(payload).encode(), status, b"application/json", headers)


def text(value: bytes | None) -> str | None:
    """Bytes -> str without loss (latin-1), so JSON can carry raw bytes."""
    return None if value is None else value.decode("latin-1")
