"""A big response (default 8 MiB) streamed in 64 KiB chunks with backpressure left to the server.

Query: size (bytes). Headers carry content-length and x-sha256 of the whole body, so the client
can check the data arrived intact. Each chunk is a NEW bytes object (index prefix + pattern), so a
server that buffers instead of applying backpressure holds all of them in memory.
"""

import hashlib

from tests.apps._util import lifespan_noop, query

CHUNK = 64 * 1024
_BASE = bytes(range(256)) * (CHUNK // 256)
_DIGESTS: dict[int, str] = {}


def chunks(size: int):
    index, left = 0, size
    while left > 0:
        n = min(CHUNK, left)
        yield (index.to_bytes(8, "big") + _BASE[8:])[:n]
        index, left = index + 1, left - n


def digest(size: int) -> str:
    if size not in _DIGESTS:
        h = hashlib.sha256()
        for chunk in chunks(size):
            h.update(chunk)
        _DIGESTS[size] = h.hexdigest()
    return _DIGESTS[size]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    size = int(query(scope).get("size", 8 * 1024 * 1024))
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(size).encode()),
            (b"x-sha256", digest(size).encode()),
        ],
    })
    for chunk in chunks(size):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
