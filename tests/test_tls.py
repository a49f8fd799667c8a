"""HTTPS: TLS termination in the server, with real clients (httpx, curl, websockets, the ssl module on raw
sockets), against ringserve (both I/O backends) and uvicorn as the oracle.

The certificates come from tests/helpers/certs.py (trustme): clients trust only the root CA and the server's
certificate is issued by an intermediate, so a server that does not send its whole chain fails every test.
What uvicorn does not provide (the ASGI TLS extension, the WSGI SSL_* environ, ringserve's handshake timeout
and its 400 answer to plain HTTP) is marked ringserve-only or asserted for the ringserve kinds only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import RINGSERVE_KINDS, RawConnection, build_request
from helpers.certs import make_tls_files, normalise_pem
from websockets.sync.client import connect as ws_connect

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.tls_app:app"
WSGI_APP = "tests.apps.wsgi_app:app"
MiB = 1024 * 1024
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
TLS_VERSION_IDS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}  # the wire version, as the ASGI TLS extension has it
CURL = shutil.which("curl")
NO_TLS_EXTENSION = "uvicorn has no ASGI tls extension"
NOT_WSGI = "WSGI over TLS: uvicorn is not the oracle for the WSGI environ"


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(serve, tls_files):
    return serve(APP, *tls_files.server_args())


@pytest.fixture(scope="module")
def mtls_server(serve, tls_files):
    return serve(APP, *tls_files.mtls_args(ssl.CERT_REQUIRED))


@pytest.fixture(scope="module")
def ctx(tls_files) -> ssl.SSLContext:
    return tls_files.client_context()


def pinned(tls_files, version: ssl.TLSVersion, client_cert: bool = False) -> ssl.SSLContext:
    """A client context that speaks exactly this TLS version."""
    return tls_files.client_context(client_cert=client_cert, min_version=version, max_version=version)


def get_json(server, ctx: ssl.SSLContext | None, target: str = "/tls") -> dict:
    with server.client(**({"verify": ctx} if ctx else {})) as client:
        resp = client.get(target)
    assert resp.status_code == 200, resp.text
    return resp.json()


def assert_serving(server, ctx) -> None:
    """The server is up and answers a new HTTPS client (after something that could have hurt it)."""
    assert server.alive, "the server died"
    assert get_json(server, ctx, "/tls?still=serving")["scheme"] == "https"


def cipher_suite_id(name: str) -> int:
    """IANA code of an OpenSSL cipher name (as ssl.SSLSocket.cipher() reports it)."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.set_ciphers("ALL")
    ids = {c["name"]: c["id"] & 0xFFFF for c in probe.get_ciphers()}
    assert name in ids, f"cipher {name!r} not known to this OpenSSL"
    return ids[name]


def client_hello(ctx: ssl.SSLContext) -> bytes:
    """The bytes of a real ClientHello (TLS records) that `ctx` would send."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def refusal(server, ctx) -> str:
    """Connect with ctx and send a GET; returns how the server refused. Fails if a response came back."""
    try:
        conn = server.connect(tls=ctx)
    except (ssl.SSLError, ConnectionError) as exc:
        return f"handshake failed: {exc!r}"
    with conn:
        try:
            conn.request("GET", "/tls")
            data = conn.read_until_closed()  # TimeoutError: the server kept the connection open
        except (ssl.SSLError, ConnectionError) as exc:
            return f"connection failed after the handshake: {exc!r}"
    assert data == b"", f"a client without a certificate got a response: {data[:300]!r}"
    return "closed"


def reset_on_close(conn) -> None:
    """Make close() send a RST instead of a FIN."""
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class BioClient:
    """A TLS client over memory BIOs, so the test decides how its ciphertext goes out: `step` bytes per TCP
    segment (records arrive split across reads), or all that is pending in one send; and when (whether) it
    sends close_notify."""

    def __init__(self, server, ctx: ssl.SSLContext, step: int = 0, flush_finished: bool = True):
        self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server.host)
        self.step = step
        self.eof = False
        self._until(self.tls.do_handshake, flush=flush_finished)  # False: the Finished goes with the next write

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _flush(self) -> None:
        data = self.outgoing.read()
        step = self.step or len(data) or 1
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            if self.step:
                time.sleep(0.001)

    def _until(self, op, *args, flush: bool = True):
        while True:
            try:
                result = op(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
                continue
            if flush:
                self._flush()
            return result

    def send(self, data: bytes) -> None:
        self._until(self.tls.write, data)

    def recv(self) -> bytes:
        """Some plaintext; b"" once the server sent close_notify."""
        if self.eof:
            return b""
        data = self._until(self.tls.read, 65536)
        self.eof = not data
        return data

    def read_response(self) -> tuple[bytes, bytes]:
        """(head, body) of a Content-Length response."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = self.recv()
            assert data, f"closed before a whole response head: {buf!r}"
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
        length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
        while len(body) < length:
            data = self.recv()
            assert data, "closed in the body"
            body += data
        return head, body

    def close_notify(self) -> None:
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:  # sent; the answer is the server's to give
            pass
        self._flush()

    def wait_closed(self, timeout: float) -> bool:
        """True if the TCP connection ends (EOF or reset) within `timeout` (whatever came before)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while self.sock.recv(65536):
                if time.monotonic() > deadline:
                    return False
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True


# --------------------------------------------------------------------------- requests over TLS


def test_https_get(server, ctx):
    with server.client(verify=ctx) as client:
        resp = client.get("/tls/hello?x=1")
    assert resp.status_code == 200
    assert resp.http_version == "HTTP/1.1"
    assert resp.headers["content-type"] == "application/json"
    data = resp.json()
    assert data["type"] == "http"
    assert data["scheme"] == "https"
    assert data["server"] == ["127.0.0.1", server.port]


def test_keep_alive_reuses_the_tls_connection(server, ctx):
    with server.connect(tls=ctx) as conn:
        for i in range(3):
            conn.request("GET", f"/tls?i={i}")
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.header("connection") != "close"
            # The same TLS connection carried every request: the server saw the same client port.
            assert resp.json()["client"] == ["127.0.0.1", conn.local_port]
        assert conn.is_open()
    with server.client(verify=ctx) as client:
        ports = {tuple(client.get(f"/tls?i={i}").json()["client"]) for i in range(4)}
    assert len(ports) == 1, f"httpx's requests came on {len(ports)} connections: {ports}"


def test_pipelined_requests_over_tls_answered_in_order(server, ctx):
    body = bytes(range(256)) * 400  # 100 KiB: several TLS records
    with server.connect(tls=ctx) as conn:
        conn.send(build_request("GET", "/tls?n=1") + build_request("POST", "/upload?n=2", body=body)
                  + build_request("GET", "/tls?n=3"))
        first, second, third = (conn.read_response() for _ in range(3))
        assert first.json()["scheme"] == "https"
        assert second.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        assert third.json()["scheme"] == "https"
        assert conn.is_open()


def test_request_in_one_byte_tls_records(server, ctx):
    # Every byte of the request is its own TLS record (and TCP segment).
    with server.connect(tls=ctx) as conn:
        conn.send_slowly(build_request("POST", "/upload", body=b"hello"), delay=0.001)
        assert conn.read_response().json() == {"size": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
def test_tls_records_split_across_tcp_segments(server, tls_files, version):
    # The handshake and the request arrive 7 bytes per TCP segment: no record comes in one read.
    with BioClient(server, pinned(tls_files, version), step=7) as client:
        client.send(build_request("POST", "/upload?dribbled=1", body=b"x" * 3000))
        head, body = client.read_response()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body) == {"size": 3000, "sha256": hashlib.sha256(b"x" * 3000).hexdigest()}


def test_request_in_the_same_segment_as_the_client_finished(server, tls_files):
    # TLS 1.3: the client's Finished and its first request reach the server in one read.
    with BioClient(server, pinned(tls_files, TLS13), flush_finished=False) as client:
        client.send(build_request("GET", "/tls?with=finished"))
        head, body = client.read_response()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["scheme"] == "https"


def test_many_pipelined_requests_over_tls(server, ctx):
    n = 64
    with server.connect(tls=ctx) as conn:
        conn.send(b"".join(build_request("GET", f"/tls?n={i}") for i in range(n)))
        for i in range(n):
            resp = conn.read_response()
            assert resp.status == 200 and resp.json()["scheme"] == "https", i
        assert conn.is_open()


def test_concurrent_tls_clients(server, ctx):
    def one(i: int) -> list[str]:
        with server.client(verify=ctx) as client:  # a connection (and handshake) per client
            return [client.get(f"/tls?c={i}&r={r}").json()["scheme"] for r in range(3)]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(48)))
    assert results == [["https"] * 3] * 48


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
def test_session_resumption(server, tls_files, version):
    ctx = pinned(tls_files, version)
    with server.connect(tls=ctx) as conn:
        conn.request("GET", "/tls")
        assert conn.read_response().status == 200  # TLS 1.3: the tickets come after the handshake
        session = conn.sock.session
    assert session is not None
    sock = socket.create_connection((server.host, server.port), timeout=5)
    with RawConnection(ctx.wrap_socket(sock, server_hostname=server.host, session=session)) as conn:
        assert conn.sock.session_reused, "the server did not resume the TLS session"
        conn.request("GET", "/tls?resumed=1")
        assert conn.read_response().json()["scheme"] == "https"


def test_alpn_never_selects_h2(server, tls_files):
    ctx = tls_files.client_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # what browsers and curl offer
    with server.connect(tls=ctx) as conn:
        assert conn.sock.selected_alpn_protocol() in (None, "http/1.1")
        conn.request("GET", "/tls")
        assert conn.read_response().json()["scheme"] == "https"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_upload(server, ctx, framing):
    body = os.urandom(8 * MiB)
    content = body if framing == "content-length" else (body[i:i + MiB] for i in range(0, len(body), MiB))
    with server.client(verify=ctx, timeout=20) as client:
        resp = client.post("/upload", content=content)
    assert resp.status_code == 200
    assert resp.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_large_download(server, ctx):
    size = 16 * MiB
    with server.client(verify=ctx, timeout=20) as client:
        resp = client.get(f"/big?size={size}")
    assert resp.status_code == 200
    assert len(resp.content) == size
    assert hashlib.sha256(resp.content).hexdigest() == resp.headers["x-sha256"]


def test_large_download_to_a_client_that_stops_reading(server, ctx):
    # The server fills the socket buffers and has to wait (TLS data pending) until the client reads again.
    size = 8 * MiB
    with server.connect(tls=ctx, rcvbuf=32 * 1024, timeout=10) as conn:
        conn.request("GET", f"/big?size={size}")
        time.sleep(0.5)
        resp = conn.read_response()
        assert len(resp.body) == size
        assert hashlib.sha256(resp.body).hexdigest() == resp.header("x-sha256")
        conn.request("GET", "/tls?after=big")
        assert conn.read_response().json()["scheme"] == "https"


def test_connection_close_is_a_clean_tls_close(server, tls_files):
    # A strict client (no OP_IGNORE_UNEXPECTED_EOF) sees the server end the connection with close_notify,
    # not a bare TCP FIN (which it would report as a truncation attack).
    ctx = tls_files.client_context()
    assert not ctx.options & getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    with server.connect(tls=ctx) as conn:
        conn.request("GET", "/tls?last=1", {"Connection": "close"})
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.header("connection") == "close"
        try:
            rest = conn.read_until_closed()
        except ssl.SSLEOFError as exc:
            pytest.fail(f"the server closed without close_notify: {exc!r}")
        assert rest == b""


def test_idle_connection_closed_after_the_client_close_notify(server, ctx):
    # The client says it is done (close_notify) on an idle keep-alive connection: the server closes it now,
    # not at the keep-alive timeout (5 s).
    with BioClient(server, ctx) as client:
        client.send(build_request("GET", "/tls"))
        assert client.read_response()[0].startswith(b"HTTP/1.1 200 ")
        client.close_notify()
        assert client.wait_closed(2.5), "the connection outlived the client's close_notify"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "big.bin"
    path.write_bytes(os.urandom(3 * MiB + 12345))  # several of any chunk size, and not a multiple of one
    return path


@pytest.mark.parametrize("reader", ["eager", "stalled"])
def test_file_response_over_tls(server, ctx, server_kind, big_file, reader):
    # http.response.pathsend: a server that splices files cannot splice into TLS; the bytes must still arrive.
    data = big_file.read_bytes()
    with server.connect(tls=ctx, rcvbuf=32 * 1024 if reader == "stalled" else None, timeout=10) as conn:
        conn.request("GET", f"/pathsend?path={big_file}")
        if reader == "stalled":
            time.sleep(0.5)
        resp = conn.read_response()
        assert resp.status == 200
        if server_kind in RINGSERVE_KINDS:
            assert resp.header("x-pathsend") == "1"  # ringserve offers pathsend (uvicorn: the app's fallback)
        assert len(resp.body) == len(data) and resp.body == data
        conn.request("GET", "/tls?after=file")
        assert conn.read_response().json()["scheme"] == "https"


# --------------------------------------------------------------------------- the ASGI tls extension


@pytest.mark.ringserve_only(NO_TLS_EXTENSION)
@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
def test_tls_extension_matches_the_connection(server, tls_files, version):
    with server.connect(tls=pinned(tls_files, version)) as conn:
        conn.request("GET", "/tls")
        data = conn.read_response().json()
        cipher_name, _, _ = conn.sock.cipher()
        protocol = conn.sock.version()
    assert "tls" in data["extensions"]
    tls = data["tls"]
    assert data["tls_types"] == {
        "server_cert": "str", "client_cert_chain": data["tls_types"]["client_cert_chain"],
        "client_cert_name": "NoneType", "client_cert_error": "NoneType", "tls_version": "int", "cipher_suite": "int",
    }
    assert data["tls_types"]["client_cert_chain"] in ("list", "tuple")
    assert protocol == version.name.replace("v1_", "v1.")  # the client got what it asked for
    assert tls["tls_version"] == TLS_VERSION_IDS[protocol]
    assert tls["cipher_suite"] == cipher_suite_id(cipher_name), cipher_name
    assert normalise_pem(tls["server_cert"]) == tls_files.server_leaf_pem  # the leaf, not the intermediate
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None


def test_plain_http_has_no_tls_extension(serve):
    data = get_json(serve(APP), None)
    assert data["scheme"] == "http"
    assert "tls" not in data["extensions"]


# --------------------------------------------------------------------------- mutual TLS


def test_mtls_client_with_certificate_is_served(mtls_server, tls_files):
    data = get_json(mtls_server, tls_files.client_context(client_cert=True))
    assert data["scheme"] == "https"


@pytest.mark.ringserve_only(NO_TLS_EXTENSION)
@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
def test_mtls_extension_shows_the_client_certificate(mtls_server, tls_files, version):
    tls = get_json(mtls_server, pinned(tls_files, version, client_cert=True))["tls"]
    assert tls["client_cert_name"] == tls_files.client_subject  # RFC 4514, most specific RDN first
    chain = tls["client_cert_chain"]
    assert chain and normalise_pem(chain[0]) == tls_files.client_leaf_pem
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == TLS_VERSION_IDS[version.name.replace("v1_", "v1.")]


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
def test_mtls_client_without_certificate_is_refused(mtls_server, tls_files, version):
    # Refused, one way or another (TLS 1.2: in the handshake; TLS 1.3: after it, with an alert)...
    assert refusal(mtls_server, pinned(tls_files, version))
    # ... because of the missing certificate: the same client with one is served.
    assert get_json(mtls_server, pinned(tls_files, version, client_cert=True))["scheme"] == "https"


def test_mtls_client_with_an_untrusted_certificate_is_refused(mtls_server, tls_files, tmp_path):
    import trustme

    other = trustme.CA().issue_cert("intruder@example.org")
    other.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "intruder.pem"))
    ctx = tls_files.client_context()
    ctx.load_cert_chain(str(tmp_path / "intruder.pem"))
    assert refusal(mtls_server, ctx)
    assert get_json(mtls_server, tls_files.client_context(client_cert=True))["scheme"] == "https"


def test_optional_client_certificate(serve, tls_files, server_kind):
    server = serve(APP, *tls_files.mtls_args(ssl.CERT_OPTIONAL))
    without = get_json(server, tls_files.client_context())
    with_cert = get_json(server, tls_files.client_context(client_cert=True))
    assert without["scheme"] == with_cert["scheme"] == "https"
    if server_kind in RINGSERVE_KINDS:  # the tls extension (uvicorn has none)
        assert without["tls"]["client_cert_chain"] == []
        assert without["tls"]["client_cert_name"] is None
        assert without["tls"]["client_cert_error"] is None
        assert with_cert["tls"]["client_cert_name"] == tls_files.client_subject


# --------------------------------------------------------------------------- broken and hostile clients


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE", "OPTIONS"])
def test_plain_http_request_to_the_tls_port(server, server_kind, ctx, method):
    with server.connect() as conn:
        conn.request(method, "/tls?plain=1", body=b"a body" if method == "POST" else b"")
        if server_kind == "ringserve":  # like nginx: a 400 that says what happened (uvicorn and asyncio's TLS just close)
            resp = conn.read_response(method)
            assert resp.status == 400
            assert resp.header("connection") == "close"
            if method != "HEAD":
                text = resp.body.decode("latin-1").lower()
                assert "http" in text and "https" in text, resp.body
        closed, data = conn.wait_closed(5)
        assert closed, "the server kept a plain-HTTP connection open on the TLS port"
        assert data == b"", f"more than one response (a body after a HEAD response?): {data[:200]!r}"
    assert_serving(server, ctx)


@pytest.mark.ringserve_only("uvicorn closes without an answer")
@pytest.mark.uring_only("--io asyncio hands TLS to asyncio's transport, which closes without an answer as uvicorn")
def test_plain_http_request_to_the_tls_port_sent_slowly(server, ctx):
    with server.connect() as conn:
        conn.send_slowly(build_request("GET", "/tls?plain=slowly"), delay=0.001)
        assert conn.read_response().status == 400
        assert conn.wait_closed(5)[0]
    assert_serving(server, ctx)


@pytest.mark.parametrize("garbage", [
    pytest.param(bytes(range(256)), id="not-a-tls-record"),
    pytest.param(b"\x16\x03\x01\x00\x08" + b"\x01\x00\x00\x04" + b"\xff" * 4, id="broken-client-hello"),
    pytest.param(b"\x16\x03\x01\x00\x08" + b"\xee\x00\x00\x04" + b"\x00" * 4, id="unknown-handshake-message"),
])
def test_garbage_instead_of_a_client_hello(server, ctx, garbage):
    with server.connect() as conn:
        conn.send(garbage)
        closed, data = conn.wait_closed(5)
    assert closed, "the server kept the connection open after garbage"
    assert data == b"" or data[0] == 0x15, f"not a TLS alert: {data[:100]!r}"  # nothing, or an alert record
    assert_serving(server, ctx)


@pytest.mark.parametrize("sent", ["nothing", "5-bytes", "half-hello", "whole-hello"])
@pytest.mark.parametrize("close", ["fin", "rst"])
def test_client_that_leaves_mid_handshake(server, ctx, sent, close):
    hello = client_hello(ctx)
    part = {"nothing": b"", "5-bytes": hello[:5], "half-hello": hello[:len(hello) // 2], "whole-hello": hello}[sent]
    with server.connect() as conn:
        if part:
            conn.send(part)
        if sent == "whole-hello":
            conn._fill()  # wait for the server's first flight, then leave without answering
        if close == "rst":
            reset_on_close(conn)
    assert_serving(server, ctx)


def test_stalled_handshakes_do_not_block_other_clients(server, ctx):
    hello = client_hello(ctx)
    with server.connect() as silent, server.connect() as stalled:
        stalled.send(hello[:len(hello) // 2])
        for _ in range(3):
            assert_serving(server, ctx)
        assert stalled.is_open() and silent.is_open()


@pytest.mark.ringserve_only("--timeout-tls-handshake is ringserve's (uvicorn: asyncio's fixed 60 s)")
@pytest.mark.parametrize("sent", ["nothing", "half-hello"])
def test_stalled_handshake_closed_after_the_timeout(serve, tls_files, ctx, sent):
    server = serve(APP, *tls_files.server_args("--timeout-tls-handshake", "1"))
    hello = client_hello(ctx)
    with server.connect() as conn:
        start = time.monotonic()
        if sent == "half-hello":
            conn.send(hello[:len(hello) // 2])
        closed, _ = conn.wait_closed(6)
        elapsed = time.monotonic() - start
    assert closed, "a stalled handshake was not closed within 6 s (--timeout-tls-handshake 1)"
    assert 0.5 <= elapsed <= 5, f"closed after {elapsed:.2f}s (--timeout-tls-handshake 1)"
    assert_serving(server, ctx)


@pytest.mark.ringserve_only("--timeout-tls-handshake is ringserve's")
def test_handshake_timeout_does_not_apply_after_the_handshake(serve, tls_files, ctx):
    server = serve(APP, *tls_files.server_args("--timeout-tls-handshake", "1"))
    with server.connect(tls=ctx) as conn:
        assert conn.is_open(2.0), "an idle connection was closed by the handshake timeout after its handshake"
        conn.request("GET", "/tls?late=1")
        assert conn.read_response().json()["scheme"] == "https"


# --------------------------------------------------------------------------- keys, certificates, CLI


def test_encrypted_key_with_password(serve, tls_files, ctx):
    server = serve(APP, *tls_files.server_args(encrypted=True))
    assert get_json(server, ctx)["scheme"] == "https"


def test_key_in_the_certfile(serve, tls_files, ctx, tmp_path_factory):
    combined = tmp_path_factory.mktemp("combined") / "cert-and-key.pem"
    combined.write_text(tls_files.key.read_text() + tls_files.cert.read_text())
    server = serve(APP, "--ssl-certfile", str(combined))
    assert get_json(server, ctx)["scheme"] == "https"


def test_ssl_ciphers(serve, tls_files, server_kind):
    server = serve(APP, *tls_files.server_args("--ssl-ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305"))
    with server.connect(tls=pinned(tls_files, TLS12)) as conn:
        assert conn.sock.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"
        conn.request("GET", "/tls")
        data = conn.read_response().json()
    if server_kind in RINGSERVE_KINDS:
        assert data["tls"]["cipher_suite"] == 0xCCA9  # TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    no_chacha = pinned(tls_files, TLS12)
    no_chacha.set_ciphers("ECDHE+AESGCM")
    assert refusal(server, no_chacha).startswith("handshake failed")


def test_encrypted_key_with_wrong_password_exits(run_server, tls_files, server_kind):
    result = run_server(APP, "--ssl-certfile", str(tls_files.cert), "--ssl-keyfile", str(tls_files.key_encrypted),
                        "--ssl-keyfile-password", "wrong password", timeout=15)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    if server_kind in RINGSERVE_KINDS:
        assert "password" in output.lower() or "decrypt" in output.lower(), output
        assert "Traceback" not in output, output


def test_encrypted_key_without_password_exits(run_server, tls_files, server_kind):
    # Nothing to prompt on (no terminal, stdin is /dev/null): exit with a message, never wait for a password.
    result = run_server(APP, "--ssl-certfile", str(tls_files.cert), "--ssl-keyfile", str(tls_files.key_encrypted),
                        timeout=15)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    if server_kind in RINGSERVE_KINDS:
        assert "--ssl-keyfile-password" in output, output
        assert "Traceback" not in output, output


@pytest.mark.ringserve_only("the error message is ringserve's")
def test_missing_certfile_exits_naming_the_file(run_server, tls_files, tmp_path):
    missing = tmp_path / "no-such-cert.pem"
    result = run_server(APP, "--ssl-certfile", str(missing), "--ssl-keyfile", str(tls_files.key), timeout=15)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert str(missing) in output, output
    assert "Traceback" not in output, output


@pytest.mark.ringserve_only("uvicorn does not check that --ssl-keyfile comes with --ssl-certfile")
def test_keyfile_without_certfile_exits(run_server, tls_files):
    result = run_server(APP, "--ssl-keyfile", str(tls_files.key), timeout=15)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "--ssl-certfile" in output, output
    assert "Traceback" not in output, output


# --------------------------------------------------------------------------- shutdown


def test_graceful_shutdown_with_tls_connections(start_server, tls_files, ctx):
    server = start_server(APP, *tls_files.server_args())
    with server.connect(tls=ctx) as idle, server.connect(tls=ctx, timeout=10) as busy:
        idle.request("GET", "/tls?idle=1")
        assert idle.read_response().status == 200
        busy.request("GET", "/slow?delay=1&tag=shutdown")
        server.wait_for_output("slow-start shutdown")
        start = time.monotonic()
        server.terminate()
        resp = busy.read_response()  # the request in flight is answered
        assert resp.status == 200 and resp.json()["scheme"] == "https"
        assert idle.wait_closed(5)[0], "an idle TLS connection was not closed by the shutdown"
    server.proc.wait(8)
    assert time.monotonic() - start < 5, f"shutdown took {time.monotonic() - start:.1f}s"


@pytest.mark.ringserve_only("uvicorn's process stays (until asyncio's 60 s handshake timeout) after draining a request "
                            "while a connection is mid-handshake")
def test_shutdown_does_not_wait_for_handshakes(start_server, tls_files, ctx):
    server = start_server(APP, *tls_files.server_args())
    hello = client_hello(ctx)
    with server.connect(tls=ctx, timeout=10) as busy, server.connect() as stalled, server.connect() as silent:
        stalled.send(hello[:len(hello) // 2])
        busy.request("GET", "/slow?delay=1&tag=handshakes")
        server.wait_for_output("slow-start handshakes")
        start = time.monotonic()
        server.terminate()
        assert busy.read_response().status == 200
        for conn in (stalled, silent):
            assert conn.wait_closed(5)[0], "a connection in its handshake kept the shutdown waiting"
    server.proc.wait(8)
    assert time.monotonic() - start < 5, f"shutdown took {time.monotonic() - start:.1f}s (handshake timeout: 10 s)"


# --------------------------------------------------------------------------- curl


def curl(server, tls_files, *flags: str, target: str = "/tls") -> subprocess.CompletedProcess:
    return subprocess.run(
        [CURL, "--silent", "--show-error", "--noproxy", "*", "--max-time", "10", "--cacert", str(tls_files.ca),
         "--write-out", "\n%{http_code} %{http_version}", *flags, server.url + target],
        check=False, capture_output=True, text=True, timeout=15,
    )


@pytest.mark.skipif(not CURL, reason="curl is not installed")
@pytest.mark.parametrize("flags, protocol", [
    ((), None),
    (("--http1.1",), None),
    (("--tlsv1.2", "--tls-max", "1.2"), "TLSv1.2"),
    (("--tlsv1.3",), "TLSv1.3"),
], ids=["default", "http1.1", "tls1.2", "tls1.3"])
def test_curl(server, tls_files, server_kind, flags, protocol):
    result = curl(server, tls_files, *flags)
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    assert status == "200 1.1"  # ALPN (curl offers h2) did not pick a protocol the server does not speak
    data = json.loads(body)
    assert data["scheme"] == "https"
    if protocol and server_kind in RINGSERVE_KINDS:
        assert data["tls"]["tls_version"] == TLS_VERSION_IDS[protocol]


@pytest.mark.skipif(not CURL, reason="curl is not installed")
def test_curl_mtls(mtls_server, tls_files):
    served = curl(mtls_server, tls_files, "--cert", str(tls_files.client_cert), "--key", str(tls_files.client_key))
    assert served.returncode == 0, served.stderr
    assert served.stdout.endswith("\n200 1.1")
    refused = curl(mtls_server, tls_files)
    assert refused.returncode != 0 and refused.stdout.endswith("\n000 0"), refused


# --------------------------------------------------------------------------- websocket over TLS


def test_websocket_over_tls(server, ctx, server_kind):
    url = f"wss://{server.host}:{server.port}/ws?x=1"
    with ws_connect(url, ssl=ctx, open_timeout=5, close_timeout=5, proxy=None) as ws:
        data = json.loads(ws.recv(timeout=5))
        assert data["type"] == "websocket"
        assert data["scheme"] == "wss"
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        payload = os.urandom(256 * 1024)
        ws.send(payload)
        assert ws.recv(timeout=5) == payload
    if server_kind in RINGSERVE_KINDS:  # the tls extension is in the websocket scope too
        assert data["tls"]["tls_version"] in TLS_VERSION_IDS.values()


# --------------------------------------------------------------------------- WSGI over TLS


@pytest.fixture(scope="module")
def wsgi_server(serve, tls_files):
    return serve(WSGI_APP, *tls_files.server_args())


def wsgi_environ(server, ctx) -> tuple[dict, str, tuple]:
    """(environ, the client's view of the protocol version, its cipher())"""
    with server.connect(tls=ctx) as conn:
        conn.request("GET", "/environ")
        resp = conn.read_response()
        assert resp.status == 200, resp
        return resp.json(), conn.sock.version(), conn.sock.cipher()


@pytest.mark.ringserve_only(NOT_WSGI)
@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
def test_wsgi_environ_over_tls(wsgi_server, tls_files, version):
    env, protocol, cipher = wsgi_environ(wsgi_server, pinned(tls_files, version))
    assert env["wsgi"]["url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["SSL_PROTOCOL"] == protocol
    assert env["SSL_CIPHER"] == cipher[0]
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_S_DN" not in env and "SSL_CLIENT_CERT" not in env
    assert env["SERVER_PORT"] == str(wsgi_server.port)


@pytest.mark.ringserve_only(NOT_WSGI)
def test_wsgi_environ_with_client_certificate(serve, tls_files):
    server = serve(WSGI_APP, *tls_files.mtls_args(ssl.CERT_REQUIRED))
    env, _, _ = wsgi_environ(server, tls_files.client_context(client_cert=True))
    assert env["wsgi"]["url_scheme"] == "https"
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == tls_files.client_subject
    assert normalise_pem(env["SSL_CLIENT_CERT"]) == tls_files.client_leaf_pem
    assert refusal(server, tls_files.client_context())


@pytest.mark.ringserve_only(NOT_WSGI)
def test_wsgi_large_upload_and_download_over_tls(wsgi_server, ctx):
    body = os.urandom(8 * MiB)
    with wsgi_server.client(verify=ctx, timeout=20) as client:
        up = client.post("/upload", content=body)
        down = client.get(f"/big?size={8 * MiB}")
    assert up.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert len(down.content) == 8 * MiB
    assert hashlib.sha256(down.content).hexdigest() == down.headers["x-sha256"]


@pytest.mark.ringserve_only(NOT_WSGI)
@pytest.mark.parametrize("offset", [0, 1000])
def test_wsgi_file_wrapper_over_tls(wsgi_server, ctx, big_file, offset):
    data = big_file.read_bytes()[offset:]
    with wsgi_server.client(verify=ctx, timeout=20) as client:
        resp = client.get("/file", params={"path": str(big_file), "offset": offset, "cl": len(data)})
    assert resp.status_code == 200
    assert resp.content == data


@pytest.mark.ringserve_only(NOT_WSGI)
@pytest.mark.uring_only("--io asyncio hands TLS to asyncio's transport, which closes without an answer as uvicorn")
def test_wsgi_plain_http_to_the_tls_port(wsgi_server, ctx):
    with wsgi_server.connect() as conn:
        conn.request("GET", "/environ")
        assert conn.read_response().status == 400
        assert conn.wait_closed(5)[0]
    assert wsgi_environ(wsgi_server, ctx)[0]["HTTPS"] == "on"
