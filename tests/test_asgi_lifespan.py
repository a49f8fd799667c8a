"""Lifespan (startup, state, shutdown) and the process lifecycle around it: graceful stop, bad start-up."""

from __future__ import annotations

import signal
import socket

import pytest

pytestmark = pytest.mark.timeout(30)

LIFESPAN_APP = "tests.apps.lifespan:app"
APP = "tests.apps.combined:app"


def test_startup_state_and_shutdown(start_server, tmp_path):
    log = tmp_path / "lifespan.log"
    server = start_server(LIFESPAN_APP, env={"LIFESPAN_LOG": str(log)})
    # Ready means startup completed: the app's startup ran (and took 0.2 s) before the ready line.
    assert log.read_text() == "startup\n"
    with server.client() as client:
        first = client.get("/state").json()
        second = client.get("/state").json()
    assert first == {"token": "from-startup", "hits": 1, "leaked": False}
    # Each request gets a shallow copy of the state: the list is shared, a key set on a copy is not.
    assert second == {"token": "from-startup", "hits": 2, "leaked": False}
    server.stop()
    assert log.read_text() == "startup\nshutdown\n"
    assert not server.exit_problems()


def test_startup_failure_exits_non_zero(run_server):
    result = run_server(LIFESPAN_APP, env={"LIFESPAN_FAIL": "database unreachable"})
    output = result.stdout + result.stderr
    assert result.returncode not in (0, None), output
    assert "database unreachable" in output
    assert not any(line.lower().find("running on") >= 0 for line in output.splitlines()), output


def test_sigterm_lets_the_in_flight_request_finish(start_server):
    server = start_server(APP)
    with server.connect() as busy:
        busy.request("GET", "/slow?delay=1&tag=last")
        head = busy.read_head()
        server.terminate()
        resp = busy.read_body(head)
        assert resp.body == b"started last\ndone last\n"
        closed, rest = busy.wait_closed(5)
        assert closed and rest == b"", "the connection was kept open after a graceful shutdown"
    assert server.stop() in (0, -signal.SIGTERM)
    with pytest.raises(OSError):  # nobody is listening any more
        socket.create_connection((server.host, server.port), timeout=1).close()
    assert not server.exit_problems()


def test_sigterm_closes_idle_keep_alive_connections(start_server):
    server = start_server(APP)
    with server.connect() as idle:
        idle.request("GET", "/echo")
        idle.read_response()
        server.terminate()
        closed, rest = idle.wait_closed(5)
        assert closed and rest == b""
    assert server.stop() in (0, -signal.SIGTERM)
    assert not server.exit_problems()
