"""WSGI on the server: interface selection, keep-alive and pipelining, limits, bad responses, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.wsgi_app:app"


@pytest.fixture(scope="module", params=("ringserve", "ringserve-asyncio", "gunicorn"))
def server_kind(request):
    if request.param == "gunicorn":
        pytest.importorskip("gunicorn", reason="the WSGI oracle: pip install gunicorn")
    return request.param


@pytest.fixture(scope="module")
def server(serve):
    return serve(APP)


def get(server, target: str):
    with server.connect() as conn:
        conn.request("GET", target)
        return conn.read_response()


# --------------------------------------------------------------------------- interface selection


@pytest.mark.ringserve_only("ringserve's --interface")
@pytest.mark.parametrize(("app", "args", "line"), [
    (APP, (), r"Interface: WSGI \(detected\)"),
    ("tests.apps.wsgi_app:validated", ("--interface", "wsgi"), r"Interface: WSGI \(--interface wsgi\)"),
    ("tests.apps.echo:app", (), r"Interface: ASGI \(detected\)"),
    ("tests.apps.echo:app", ("--interface", "asgi"), r"Interface: ASGI \(--interface asgi\)"),
])
def test_interface_is_chosen_and_logged(serve, app, args, line):
    server = serve(app, *args)
    server.wait_for_output(line)
    assert get(server, "/environ").status == 200


# --------------------------------------------------------------------------- connections


@pytest.mark.ringserve_only("gunicorn's sync worker closes the connection after each response")
def test_keep_alive_and_pipelining(server):
    with server.connect() as conn:
        conn.send(b"".join(conn.build("GET", f"/environ?i={i}") for i in range(5)))
        for i in range(5):
            resp = conn.read_response()
            assert resp.json()["QUERY_STRING"] == f"i={i}"
        conn.request("POST", "/body", None, b"x" * 1000)
        assert conn.read_response().json()["size"] == 1000
        assert conn.is_open()


@pytest.mark.ringserve_only("gunicorn's sync worker closes the connection after each response")
def test_unread_body_does_not_confuse_the_next_request(server):
    with server.connect() as conn:
        conn.request("POST", "/environ", None, b"y" * 300_000)  # /environ never reads wsgi.input
        assert conn.read_response().status == 200
        closed, _ = conn.wait_closed(0.5)
        if not closed:  # kept alive: the next request must be parsed after the unread body
            conn.request("GET", "/environ?after=1")
            assert conn.read_response().json()["QUERY_STRING"] == "after=1"


def test_body_over_the_limit_is_413(serve, server_kind):
    if server_kind == "gunicorn":
        pytest.skip("gunicorn has no request body limit")
    server = serve(APP, "--limit-request-body", "100000")
    with server.connect() as conn:
        conn.request("POST", "/upload", None, b"z" * 200_000)
        resp = conn.read_response()
    assert resp.status == 413
    with server.connect() as conn:  # the pool thread that was reading is free again
        conn.request("POST", "/upload", None, b"z" * 1000)
        assert conn.read_response().json()["size"] == 1000


# --------------------------------------------------------------------------- bad responses


def test_header_injection_is_refused_with_500(server):
    resp = get(server, "/bad?what=header")
    assert resp.status == 500
    assert resp.header("injected") is None


@pytest.mark.ringserve_only("gunicorn sends the head before it checks the block's type, then closes")
def test_str_block_is_500(server):
    assert get(server, "/bad?what=notbytes").status == 500


def test_close_that_raises_is_logged_after_the_response(server):
    resp = get(server, "/bad?what=close")
    assert resp.status == 200 and resp.body == b"closed badly"
    server.wait_for_output("close-raises")


# --------------------------------------------------------------------------- shutdown


def test_graceful_shutdown_finishes_the_request_in_flight(start_server):
    server = start_server(APP)
    result = {}

    def slow():
        result["resp"] = get(server, "/sleep?s=1")

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    server.terminate()
    thread.join(10)
    assert result["resp"].status == 200 and result["resp"].body == b"slept"
    assert server.stop() in (0, -15)


@pytest.mark.ringserve_only("ringserve's --timeout-graceful-shutdown (gunicorn: --graceful-timeout)")
def test_endless_response_is_stopped_at_the_graceful_timeout(start_server):
    """An app still streaming when the graceful timeout ends: its connection is closed, its thread
    stops at its next block (the iterable's close() is called) and the worker exits cleanly."""
    server = start_server(APP, "--timeout-graceful-shutdown", "1")
    with server.connect() as conn:
        conn.request("GET", "/endless?id=graceful-endless")
        assert conn.read_head().status == 200
        start = time.monotonic()
        server.terminate()
        closed, _ = conn.wait_closed(8)
        assert closed, "the endless response was not cut at the graceful timeout"
        assert server.stop() == 0
        assert 0.9 < time.monotonic() - start < 5
    output = server.output()
    assert "Graceful shutdown timed out" in output
    assert "Cancelled 1 task(s) still running" in output
    assert "still running application code at exit" not in output, output
