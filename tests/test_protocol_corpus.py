"""The request corpus (tests/corpus) replayed against a real server, each file on its own connection
and in one packet, while one keep-alive connection keeps being served: valid requests are answered in
order, bad ones get their status and a closed connection, and nothing disturbs the other client."""

from __future__ import annotations

import pytest

from test_http_corpus import EXPECT, NAMES, harness

pytestmark = pytest.mark.ringserve_only("uvicorn answers many smuggling vectors with 200")


@pytest.fixture(scope="module")
def corpus_server(serve):
    return serve("tests.apps.combined:app", "--no-access-log")


# A valid websocket upgrade becomes a websocket session (tests/test_websocket.py), not HTTP.
REAL = [n for n in NAMES if not any(e[0] == "request" and e[-1] == b"websocket" for e in EXPECT[n])]


@pytest.mark.parametrize("name", REAL)
def test_corpus_file_on_a_real_server(corpus_server, name):
    expected = EXPECT[name]
    # A request whose body ends in a protocol error is answered by the error, not by the app.
    requests, current = [], None
    for event in expected:
        if event[0] == "request":
            current = event
        elif event[0] == "end" and current is not None:
            requests.append(current)
            current = None
    with corpus_server.connect() as bystander, corpus_server.connect() as conn:
        bystander.request("GET", "/echo?before=1")
        assert bystander.read_response().status == 200
        conn.send(harness.load_http(name))
        for request in requests:
            resp = conn.read_response(request[1].decode())
            assert resp.status == 200, f"{name}: {resp.status} for {request[:3]}"
        last = expected[-1]
        if last[0] == "error":
            resp = conn.read_response()
            assert resp.status == last[1], f"{name}: want {last[1]}, got {resp.status}"
            closed, _ = conn.wait_closed(3.0)
            assert closed, f"{name}: the connection stayed open after {last[1]}"
        elif last[0] == "close":
            closed, rest = conn.wait_closed(3.0)
            assert closed and rest == b"", f"{name}: want a close, got {rest[:80]!r}"
        else:
            conn.request("GET", "/echo?after=corpus")
            assert conn.read_response().json()["query_string"] == "after=corpus"
        bystander.request("GET", "/echo?after=1")
        assert bystander.read_response().json()["query_string"] == "after=1"


def test_server_survived_the_corpus(corpus_server):
    with corpus_server.client() as client:
        assert client.get("/echo").status_code == 200
    assert "Unexpected error" not in corpus_server.output()
    assert "Traceback" not in corpus_server.output(), corpus_server.output()[-3000:]
