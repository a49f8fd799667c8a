"""Echo the request as JSON: method, path, query, headers, body and the rest of the scope.

Bytes are carried as latin-1 strings so the test sees them unchanged.
"""

from tests.apps._util import lifespan_noop, read_body, send_json, text


def describe(scope) -> dict:
    client, server = scope.get("client"), scope.get("server")
    return {
        "type": scope["type"],
        "asgi": scope.get("asgi"),
        "http_version": scope.get("http_version"),
        "method": scope.get("method"),
        "scheme": scope.get("scheme"),
        "path": scope.get("path"),
        "raw_path": text(scope.get("raw_path")),
        "query_string": text(scope.get("query_string")),
        "root_path": scope.get("root_path"),
        "headers": [[text(k), text(v)] for k, v in scope.get("headers", [])],
        "client": list(client) if client else client,
        "server": list(server) if server else server,
        "extensions": sorted((scope.get("extensions") or {}).keys()),
        "has_state": "state" in scope,
    }


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan_noop(receive, send)
        return
    body, messages = await read_body(receive)
    payload = describe(scope)
    payload["body"] = text(body)
    payload["messages"] = messages
    await send_json(send, payload)
