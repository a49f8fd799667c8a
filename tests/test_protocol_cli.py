"""Start-up errors from the command line: a clear message and a non-zero exit, never a hang."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(30)


def test_missing_module(run_server):
    result = run_server("nosuchmodule:app", timeout=15)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "nosuchmodule" in output


def test_missing_attribute(run_server):
    result = run_server("tests.apps.echo:nosuchattr", timeout=15)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "nosuchattr" in output


def test_address_in_use(run_server):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_server("tests.apps.echo:app", "--host", "127.0.0.1", "--port", str(port), fd=False, timeout=15)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "127.0.0.1" in output and str(port) in output, output
    assert "in use" in output.lower(), output
