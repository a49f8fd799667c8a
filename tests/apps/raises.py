"""An app that raises RuntimeError(msg) before or after starting the response.

Query: when=before|after|after_cl, msg=<text that the test looks for in the server log>.
  before    raise before http.response.start           -> the server answers 500
  after     start a chunked response, one chunk, raise -> the server must close, no final chunk
  after_cl  start with content-length 100, send 10 bytes, raise -> the server must close
"""

from tests.apps._util import lifespan_noop, query


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    q = query(scope)
    when, msg = q.get("when", "before"), q.get("msg", "boom")
    if when == "before":
        raise RuntimeError(msg)
    headers = [(b"content-type", b"text/plain")]
    if when == "after_cl":
        headers.append((b"content-length", b"100"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"partial-10", "more_body": True})
    raise RuntimeError(msg)
