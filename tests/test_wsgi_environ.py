"""WSGI: the PEP 3333 environ, against ringserve (both I/O backends) and gunicorn as the oracle.

Each test runs on the raw app and on the same app inside wsgiref.validate.validator; a validator
complaint fails the request, and the module checks the log for any that slipped through.
"""

from __future__ import annotations

import pytest

from wsgi_fixtures import COMPLAINTS, wsgi_fixtures

pytestmark = pytest.mark.timeout(30)

server_kind, server = wsgi_fixtures(COMPLAINTS + ("AssertionError",))


def environ(server, target: str, headers=None, method: str = "GET", body: bytes = b"", **kwargs) -> dict:
    with server.connect() as conn:
        conn.request(method, target, headers, body, **kwargs)
        resp = conn.read_response(method)
        assert resp.status == 200, resp
        data = resp.json()
        data["_client_port"] = conn.local_port
        return data


def test_required_keys(server):
    env = environ(server, "/environ/x?a=1&b=%20")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ/x"
    assert env["QUERY_STRING"] == "a=1&b=%20"  # as received
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(env["_client_port"])
    assert env["HTTP_HOST"] == "test"
    assert "CONTENT_TYPE" not in env and "CONTENT_LENGTH" not in env
    wsgi = env["wsgi"]
    assert wsgi["version"] == [1, 0]
    assert wsgi["url_scheme"] == "http"
    assert wsgi["run_once"] is False
    assert wsgi["input_terminated"] is True
    assert wsgi["file_wrapper"] and wsgi["errors"]
    server.wait_for_output("environ viewed")  # wsgi.errors reaches the server's log


def test_empty_query_and_http10(server):
    env = environ(server, "/environ", version="HTTP/1.0", host=None)
    assert env["QUERY_STRING"] == ""
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env


def test_path_info_is_percent_decoded_latin1(server):
    env = environ(server, "/environ/a%20b/%C3%A9/%2F?q=%C3%A9")
    # PEP 3333: the bytes after %-decoding, each as one latin-1 character (not UTF-8 decoded).
    assert env["PATH_INFO"] == "/environ/a b/\xc3\xa9//"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ/a b/é//"
    assert env["QUERY_STRING"] == "q=%C3%A9"


def test_content_type_and_length_have_no_http_prefix(server):
    env = environ(server, "/environ", {"Content-Type": "text/plain; charset=utf-8"}, method="POST", body=b"hello")
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_repeated_headers_are_joined(server):
    env = environ(server, "/environ", [("X-Dup", "1"), ("x-dup", "2"), ("X-Dup", "3"), ("X-Other-Name", "v")])
    assert [v.strip() for v in env["HTTP_X_DUP"].split(",")] == ["1", "2", "3"]
    assert env["HTTP_X_OTHER_NAME"] == "v"


@pytest.mark.ringserve_only("gunicorn joins repeated headers with ',' (RFC 9110 allows either)")
def test_repeated_headers_are_joined_with_comma_space(server):
    env = environ(server, "/environ", [("X-Dup", "1"), ("x-dup", "2")])
    assert env["HTTP_X_DUP"] == "1, 2"


def test_header_with_underscore_is_dropped(server):
    # X_Forwarded_For would alias X-Forwarded-For as HTTP_X_FORWARDED_FOR: dropped (gunicorn, nginx).
    env = environ(server, "/environ", [("X_Spoof", "evil"), ("X-Real", "ok")])
    assert "HTTP_X_SPOOF" not in env
    assert env["HTTP_X_REAL"] == "ok"


def test_header_values_are_latin1(server):
    env = environ(server, "/environ", [("X-Latin", "caf\xe9")])
    assert env["HTTP_X_LATIN"] == "caf\xe9"


def test_script_name_from_root_path(serve):
    server = serve("tests.apps.wsgi_app:validated", "--root-path", "/api")
    env = environ(server, "/api/environ/x?y=1")
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/environ/x"
    assert env["QUERY_STRING"] == "y=1"


@pytest.mark.ringserve_only("gunicorn refuses a path outside SCRIPT_NAME; ringserve takes it as stripped by a proxy")
def test_root_path_already_stripped_by_a_proxy(serve):
    server = serve("tests.apps.wsgi_app:validated", "--root-path", "/api")
    env = environ(server, "/environ/x")
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/environ/x"


def test_forwarded_proto_sets_url_scheme(server):
    # Both trust 127.0.0.1 by default (--forwarded-allow-ips / forwarded_allow_ips).
    env = environ(server, "/environ", {"X-Forwarded-Proto": "https"})
    assert env["wsgi"]["url_scheme"] == "https"


@pytest.mark.ringserve_only("gunicorn leaves REMOTE_ADDR alone; ringserve applies X-Forwarded-For like uvicorn")
def test_forwarded_for_sets_remote_addr(server):
    env = environ(server, "/environ", {"X-Forwarded-For": "203.0.113.7"})
    assert env["REMOTE_ADDR"] == "203.0.113.7"


@pytest.mark.ringserve_only("a gunicorn flag of another name")
def test_no_proxy_headers_keeps_scheme(serve):
    server = serve("tests.apps.wsgi_app:validated", "--no-proxy-headers")
    env = environ(server, "/environ", {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"})
    assert env["wsgi"]["url_scheme"] == "http"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.ringserve_only("gunicorn hands a websocket upgrade to a WSGI app as a plain request")
def test_websocket_upgrade_to_a_wsgi_app_is_refused(server):
    """A WSGI app cannot speak websocket: a clean 400 and a closed connection, not a hung socket."""
    with server.connect() as conn:
        conn.request("GET", "/environ", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert conn.read_response().status == 400
        assert conn.wait_closed(3)[0]
    env = environ(server, "/environ", {"Upgrade": "h2c", "Connection": "Upgrade"})
    assert env["HTTP_UPGRADE"] == "h2c", "other upgrades are plain requests the app may ignore"


@pytest.mark.ringserve_only("startup log line")
def test_interface_is_logged(server):
    server.wait_for_output(r"Interface: WSGI \(detected\)")
