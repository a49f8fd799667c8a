"""What the app sees in scope: addresses, paths, headers, root_path, proxy headers, extensions."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.combined:app"


@pytest.fixture(scope="module")
def server(serve):
    return serve()


def echo(server, target: str, headers=None, **kwargs) -> dict:
    with server.connect() as conn:
        conn.request("GET", target, headers, **kwargs)
        resp = conn.read_response()
        assert resp.status == 200
        data = resp.json()
        data["_client_port"] = conn.local_port
        return data


def test_scope_contents(server):
    data = echo(server, "/echo/a%20b/%C3%A9?x=1&y=%20&z", headers=[("X-Dup", "1"), ("x-dup", "2"), ("X-Case", "V")])
    assert data["type"] == "http"
    assert data["asgi"]["version"] == "3.0"
    assert isinstance(data["asgi"].get("spec_version", "2.0"), str)
    assert data["http_version"] == "1.1"
    assert data["method"] == "GET"
    assert data["scheme"] == "http"
    assert data["path"] == "/echo/a b/é"  # percent-decoded, then UTF-8 decoded
    assert data["raw_path"] == "/echo/a%20b/%C3%A9"  # as received
    assert data["query_string"] == "x=1&y=%20&z"  # as received, without "?"
    assert data["root_path"] == ""
    # Lower-cased names, original order, duplicates kept.
    assert data["headers"] == [["host", "test"], ["x-dup", "1"], ["x-dup", "2"], ["x-case", "V"]]
    assert data["client"] == ["127.0.0.1", data["_client_port"]]
    assert data["server"] == ["127.0.0.1", server.port]
    assert data["has_state"], "scope['state'] missing (lifespan state is passed in every request scope)"


def test_header_values_keep_their_bytes(server):
    data = echo(server, "/echo", headers=[("X-Lead", " \t lead"), ("X-Latin", "caf\xe9")])
    headers = dict(map(tuple, data["headers"]))
    assert headers["x-lead"] == "lead"  # leading OWS is not part of the value
    assert headers["x-latin"] == "caf\xe9"  # obs-text byte 0xE9 reaches the app unchanged


@pytest.mark.ringserve_only("uvicorn (httptools) keeps trailing whitespace in header values (RFC 9110 5.5: excluded)")
def test_header_values_lose_trailing_whitespace(server):
    data = echo(server, "/echo", headers=[("X-Ws", " \t padded \t ")])
    assert dict(map(tuple, data["headers"]))["x-ws"] == "padded"


def test_encoded_slash_and_empty_query(server):
    data = echo(server, "/echo/a%2Fb?")
    assert data["path"] == "/echo/a/b"
    assert data["raw_path"] == "/echo/a%2Fb"
    assert data["query_string"] == ""


def test_absolute_form_target(server):
    # RFC 9112 3.2.2: a server MUST accept the absolute form; path and query come from the URL.
    data = echo(server, "http://example.com/echo/abs?q=1")
    assert data["path"] == "/echo/abs"
    assert data["query_string"] == "q=1"


def test_http10_scope(server):
    data = echo(server, "/echo", version="HTTP/1.0", host=None)
    assert data["http_version"] == "1.0"
    assert data["headers"] == []


def test_methods_and_body(server):
    with server.client() as client:
        for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            data = client.request(method, "/echo", content=b"payload").json()
            assert (data["method"], data["body"]) == (method, "payload")


def test_root_path(serve):
    server = serve(APP, "--root-path", "/api")
    data = echo(server, "/echo/x?q=1")
    assert data["root_path"] == "/api"
    # As in uvicorn (ASGI: path includes root_path): the proxy stripped /api, the app sees it again.
    assert data["path"] == "/api/echo/x"
    assert data["raw_path"].endswith("/echo/x")
    assert data["query_string"] == "q=1"


# --------------------------------------------------------------------------- proxy headers

XFF = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7"), ("X-Forwarded-Proto", "https")]


def test_proxy_headers_trusted_by_default_from_localhost(server):
    # uvicorn's defaults: --proxy-headers on, --forwarded-allow-ips 127.0.0.1.
    data = echo(server, "/echo", headers=XFF)
    assert data["client"][0] == "203.0.113.7"  # the nearest untrusted hop
    assert data["scheme"] == "https"


def test_proxy_headers_with_a_chain_of_trusted_proxies(serve):
    server = serve(APP, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,203.0.113.7")
    data = echo(server, "/echo", headers=XFF)
    assert data["client"][0] == "198.51.100.1"
    assert data["scheme"] == "https"


def test_proxy_headers_ignored_from_untrusted_peer(serve):
    server = serve(APP, "--proxy-headers", "--forwarded-allow-ips", "10.0.0.1")
    data = echo(server, "/echo", headers=XFF)
    assert data["client"] == ["127.0.0.1", data["_client_port"]]
    assert data["scheme"] == "http"


def test_no_proxy_headers(serve):
    server = serve(APP, "--no-proxy-headers")
    data = echo(server, "/echo", headers=XFF)
    assert data["client"] == ["127.0.0.1", data["_client_port"]]
    assert data["scheme"] == "http"


# --------------------------------------------------------------------------- pathsend


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pathsend") / "data.bin"
    path.write_bytes(os.urandom(1024 * 1024 + 7))
    return path


def test_pathsend_serves_the_file(server, data_file):
    with server.client() as client:
        resp = client.get("/pathsend", params={"path": str(data_file)})
    assert resp.status_code == 200
    assert resp.content == data_file.read_bytes()
    assert resp.headers["content-length"] == str(data_file.stat().st_size)


@pytest.mark.ringserve_only("uvicorn does not implement the http.response.pathsend extension")
def test_pathsend_is_advertised_and_used(server, data_file):
    assert "http.response.pathsend" in echo(server, "/echo")["extensions"]
    with server.connect() as conn:
        for _ in range(2):  # twice on one connection: the file body must end exactly where it should
            conn.request("GET", f"/pathsend?path={data_file}")
            resp = conn.read_response()
            assert resp.header("x-pathsend") == "1"
            assert resp.body == data_file.read_bytes()


@pytest.mark.ringserve_only("uvicorn does not implement the http.response.pathsend extension")
def test_clients_leaving_mid_file_never_leak_it_or_descriptors(server, tmp_path):
    """Clients that reset the connection while their file is being spliced. The splices still
    queued in the kernel look the socket and pipe up by number only when they start, so the
    server closes those only after the splices' completions: meanwhile new clients must get their
    own answers (never bytes of the abandoned file), and afterwards no descriptor may be left."""
    big = tmp_path / "big.bin"
    big.write_bytes(b"\xee" * (24 * 1024 * 1024))
    fds = f"/proc/{server.pid}/fd"
    with server.connect() as conn:  # warm up: the first pathsend creates nothing per server
        conn.request("GET", "/echo")
        conn.read_response()
    before = len(os.listdir(fds))
    for _ in range(20):
        waiting = [server.connect() for _ in range(3)]  # queued in the backlog behind the reset
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /pathsend?path={big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST with the file mid-splice
        for conn in waiting:
            with conn:
                conn.request("GET", "/echo")
                resp = conn.read_response()
                assert resp.status == 200 and b"\xee" not in resp.body
    deadline = time.monotonic() + 5
    while len(os.listdir(fds)) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir(fds)) <= before, sorted(os.readlink(f"{fds}/{n}") for n in os.listdir(fds))
