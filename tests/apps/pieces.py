"""Read the request body message by message and report what arrived.

Response JSON: {"messages": [[len(body), more_body], ...], "body": <latin-1 text>}.
"""

from tests.apps._util import lifespan_noop, read_body, send_json, text


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    body, messages = await read_body(receive)
    await send_json(send, {"messages": messages, "body": text(body)})
