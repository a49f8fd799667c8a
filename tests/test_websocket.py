"""WebSockets (issue 4) against real server processes, with a real client (the `websockets` library) and
raw sockets for what a polite client never does (fragments byte by byte, unanswered pings, not reading).

uvicorn runs as the oracle with `--ws wsproto` (the same framing library); where it deliberately differs
the test is ringserve_only and says how. The app is tests/apps/ws_app.py; its HTTP route /log?id=...
reports what the app saw (messages sent and received, the websocket.disconnect code and reason).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import resource
import struct
import threading
import time

import httpx
import pytest
from conftest import build_request
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.ws_app:app"
MiB = 1024 * 1024


# --------------------------------------------------------------------------- helpers


def ws_args(kind: str, *args: str) -> tuple[str, ...]:
    """Server flags for this kind: uvicorn gets --ws wsproto and its spelling of the boolean flag."""
    if kind != "uvicorn":
        return args
    out = ["--ws", "wsproto"]
    for arg in args:
        if arg == "--no-ws-per-message-deflate":
            out += ["--ws-per-message-deflate", "false"]
        else:
            out.append(arg)
    return tuple(out)


@pytest.fixture(scope="module")
def server(serve, server_kind):
    return serve(APP, *ws_args(server_kind))


def url(server, path: str) -> str:
    return f"ws://{server.host}:{server.port}{path}"


def ws_connect(server, path: str, **kwargs):
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("proxy", None)
    return connect(url(server, path), **kwargs)


def log(server, run: str) -> dict:
    return httpx.get(f"{server.url}/log", params={"id": run}, timeout=5).json()


def wait_log(server, run: str, check, timeout: float = 5.0) -> dict:
    """Poll /log until check(entry) holds (the app records after the client saw the effect)."""
    deadline = time.monotonic() + timeout
    while True:
        entry = log(server, run)
        if entry and check(entry):
            return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"/log?id={run} never matched: {entry}")
        time.sleep(0.02)


def closed_with(ws) -> tuple[int, str]:
    """Wait for the server to close `ws`; (code, reason) of the Close frame it sent."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=5)
    rcvd = info.value.rcvd
    assert rcvd is not None, f"no Close frame from the server ({info.value!r})"
    return rcvd.code, rcvd.reason


def handshake_headers(**extra: str) -> dict:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13"}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return {k: v for k, v in headers.items() if v is not None}


class RawWS:
    """A websocket over a blocking raw socket; wsproto (client side) frames what we send and parses
    what the server sends, so the test controls how and when bytes go out."""

    def __init__(self, server, path: str, rcvbuf: int | None = None):
        self.conn = server.connect(timeout=5, rcvbuf=rcvbuf)
        self.conn.request("GET", path, handshake_headers())
        head = self.conn.read_head()
        assert head.status == 101, head
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list = []
        self.early = len(self.conn.buf)  # bytes that came in with the 101 head
        if self.conn.buf:
            self.ws.receive_data(bytes(self.conn.buf))
            self.conn.buf.clear()

    def send(self, event, step: int | None = None) -> None:
        data = self.ws.send(event)
        if step:
            self.conn.send_slowly(data, step=step, delay=0)
        else:
            self.conn.send(data)

    def send_raw(self, data: bytes) -> None:
        self.conn.send(data)

    def event(self, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while not self.pending:
            self.pending.extend(self.ws.events())
            if self.pending:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no websocket event in time")
            self.conn.sock.settimeout(left)
            try:
                data = self.conn.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            self.ws.receive_data(data or None)
        return self.pending.pop(0)

    def close(self) -> None:
        self.conn.close()


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One masked client frame (for what wsproto would never send: a UTF-8 character split across
    fragments)."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# --------------------------------------------------------------------------- messages


def test_echo_text_and_binary(server):
    with ws_connect(server, "/echo") as ws:
        ws.send("hello, wörld")
        assert ws.recv(timeout=5) == "hello, wörld"
        ws.send(b"\x00\xffbinary")
        assert ws.recv(timeout=5) == b"\x00\xffbinary"
        for i in range(50):  # many in flight at once, order kept
            ws.send(f"m{i}")
        assert [ws.recv(timeout=5) for _ in range(50)] == [f"m{i}" for i in range(50)]


@pytest.mark.parametrize("size", [1, 8 * MiB])
def test_one_byte_and_8_mib_messages_both_ways(server, size):
    payload = os.urandom(size)
    text = "é" * (size // 2) if size > 1 else "x"
    with ws_connect(server, "/echo", max_size=None, compression=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=20) == payload
        ws.send(text)
        assert ws.recv(timeout=20) == text


def test_fragmented_message_from_a_raw_socket_byte_by_byte_with_a_ping_between(server):
    raw = RawWS(server, "/echo")
    try:
        raw.send(Message(data="hel", message_finished=False), step=1)
        raw.send(Ping(payload=b"mid-message"), step=1)
        raw.send(Message(data="lo ", message_finished=False), step=1)
        raw.send(Message(data="wörld"), step=1)
        pong = raw.event()
        assert isinstance(pong, Pong) and pong.payload == b"mid-message"
        echo = raw.event()
        assert isinstance(echo, TextMessage) and echo.message_finished and echo.data == "hello wörld"
        raw.send(Message(data=b"\x01\x02", message_finished=False))
        raw.send(Message(data=b"\x03"))
        echo = raw.event()
        assert isinstance(echo, BytesMessage) and echo.data == b"\x01\x02\x03"
        # a two-byte UTF-8 character split across two fragments
        raw.send_raw(frame(0x1, "ab\xc3".encode("latin-1"), fin=False) + frame(0x0, b"\xa9cd"))
        echo = raw.event()
        assert isinstance(echo, TextMessage) and echo.data == "ab\u00e9cd"
    finally:
        raw.close()


@pytest.mark.ringserve_only("uvicorn loses frames that arrive in the same packet as the upgrade request")
def test_frames_sent_with_the_handshake_are_not_lost(server):
    """A client that does not wait for the 101: its first frames arrive in the same packet as the
    request, behind the head (the HTTP layer's trailing data)."""
    with server.connect() as conn:
        conn.send(build_request("GET", "/echo", handshake_headers()) + frame(0x1, b"early bird")
                  + frame(0x2, b"\x00" * 70000))
        assert conn.read_head().status == 101
        ws = WSConnection(ConnectionType.CLIENT)
        ws.receive_data(bytes(conn.buf))
        got: list = []
        parts: list = []
        while len(got) < 2:
            for event in ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):  # wsproto hands over pieces
                    parts.append(event.data)
                    if event.message_finished:
                        got.append(parts[0][:0].join(parts))
                        parts = []
            if len(got) < 2:
                ws.receive_data(conn.sock.recv(65536) or None)
        assert got == ["early bird", b"\x00" * 70000]


def test_invalid_utf8_text_is_1007_for_the_app(server):
    raw = RawWS(server, "/echo?id=utf8")
    try:
        raw.send_raw(frame(0x1, b"\xff\xfe"))
        assert wait_log(server, "utf8", lambda e: e["disconnect"])["disconnect"][0] == 1007
    finally:
        raw.close()


@pytest.mark.ringserve_only("uvicorn drops the TCP connection without a Close frame (the client sees 1006)")
def test_invalid_utf8_text_gets_a_close_frame_with_1007(server):
    raw = RawWS(server, "/echo")
    try:
        raw.send_raw(frame(0x1, b"\xff\xfe"))
        event = raw.event()
        assert isinstance(event, CloseConnection) and event.code == 1007
        assert raw.conn.wait_closed(3)[0]
    finally:
        raw.close()


def test_client_ping_gets_a_pong(server):
    with ws_connect(server, "/echo") as ws:
        assert ws.ping(b"are you there").wait(5)
        ws.send("still works")
        assert ws.recv(timeout=5) == "still works"


def test_server_pings_and_drops_a_peer_that_never_answers(serve, server_kind):
    server = serve(APP, *ws_args(server_kind, "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.5"))
    with ws_connect(server, "/echo", ping_interval=None) as ws:  # the client answers pings itself
        time.sleep(1.5)
        ws.send("alive")
        assert ws.recv(timeout=5) == "alive"
    raw = RawWS(server, "/echo")  # never reads, so never answers
    try:
        start = time.monotonic()
        event = raw.event(timeout=5)
        assert isinstance(event, Ping)
        while isinstance(event, Ping):
            event = raw.event(timeout=5)
        assert isinstance(event, CloseConnection) and event.code == 1011, event
        assert time.monotonic() - start < 3
        closed, _ = raw.conn.wait_closed(3)
        assert closed
    finally:
        raw.close()


# --------------------------------------------------------------------------- closing


def test_client_close_code_and_reason_reach_the_app(server):
    with ws_connect(server, "/echo?id=client-close") as ws:
        ws.send("x")
        ws.recv(timeout=5)
        ws.close(4000, "bye now")
    entry = wait_log(server, "client-close", lambda e: e["disconnect"])
    assert entry["disconnect"] == [4000, "bye now"]


def test_app_close_code_and_reason_reach_the_client(server):
    with ws_connect(server, "/close?id=app-close&code=4001&reason=done+here") as ws:
        assert closed_with(ws) == (4001, "done here")
    assert wait_log(server, "app-close", lambda e: e["disconnect"])["disconnect"][0] == 4001


def test_close_before_accept_is_403(server):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server, "/reject")
    assert info.value.response.status_code == 403


def test_denial_response_extension(server):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server, "/deny")
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["x-denied"] == "yes"
    assert response.body == b"denied: no token"


def test_app_error_before_accept_is_500(server):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server, "/raise-before")
    assert info.value.response.status_code == 500


@pytest.mark.ringserve_only("uvicorn drops the TCP connection without a Close frame (the client sees 1006)")
def test_app_error_after_accept_closes_with_1011(server):
    with ws_connect(server, "/raise-after") as ws:
        assert closed_with(ws)[0] == 1011


@pytest.mark.ringserve_only("uvicorn drops the TCP connection without a Close frame (the client sees 1006)")
def test_app_returning_closes_with_1000(server):
    with ws_connect(server, "/return") as ws:
        assert closed_with(ws)[0] == 1000


@pytest.mark.ringserve_only("uvicorn reports a vanished client as 1005 (no status) instead of 1006")
def test_client_vanishing_is_1006_for_the_app(server):
    raw = RawWS(server, "/wait?id=vanish")
    raw.close()  # no Close frame
    assert wait_log(server, "vanish", lambda e: e["disconnect"])["disconnect"][0] == 1006


def test_oversize_message_closes_with_1009(serve, server_kind):
    server = serve(APP, *ws_args(server_kind, "--ws-max-size", "65536"))
    with ws_connect(server, "/echo", compression=None) as ws:
        ws.send(b"a" * 65536)  # at the limit: fine
        assert len(ws.recv(timeout=5)) == 65536
        ws.send(b"a" * 65537)
        assert closed_with(ws)[0] == 1009
    with ws_connect(server, "/echo") as ws:  # compressed: the limit counts inflated bytes
        ws.send("0" * (4 * MiB))
        assert closed_with(ws)[0] == 1009


# --------------------------------------------------------------------------- handshake


def test_scope(server):
    with ws_connect(server, "/scope?id=scope&choose=b", subprotocols=["a", "b"]) as ws:
        scope = json.loads(ws.recv(timeout=5))
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope" and scope["raw_path"] == "/scope"
    assert scope["query_string"] == "id=scope&choose=b"
    assert scope["http_version"] == "1.1"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["subprotocols"] == ["a", "b"]
    assert "websocket.http.response" in scope["extensions"]
    assert scope["has_state"] and not scope["has_method"]
    names = [name for name, _ in scope["headers"]]
    assert "sec-websocket-key" in names and "upgrade" in names
    assert scope["client"][0] == "127.0.0.1" and scope["server"][1] == server.port


@pytest.mark.parametrize("choose", ["superchat", None])
def test_subprotocol_choice(server, choose):
    path = "/echo" + (f"?choose={choose}" if choose else "")
    with ws_connect(server, path, subprotocols=["chat", "superchat"]) as ws:
        assert ws.subprotocol == choose
        assert ws.response.headers["x-ws-app"] == "ringserve-tests"  # accept's extra headers


def test_compression_negotiated_by_default(server):
    with ws_connect(server, "/echo", max_size=None) as ws:
        assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
        text = "compress me " * 100_000
        ws.send(text)
        assert ws.recv(timeout=10) == text
        for i in range(20):  # context takeover across messages
            ws.send(f"again {i} " * 100)
            assert ws.recv(timeout=5) == f"again {i} " * 100


def test_compression_off(serve, server_kind):
    server = serve(APP, *ws_args(server_kind, "--no-ws-per-message-deflate"))
    with ws_connect(server, "/echo") as ws:
        assert "sec-websocket-extensions" not in ws.response.headers
        ws.send("plain " * 1000)
        assert ws.recv(timeout=5) == "plain " * 1000


@pytest.mark.parametrize("headers, status", [
    ({"Sec_WebSocket_Key": None}, 400),
    ({"Sec_WebSocket_Version": "8"}, 426),
])
def test_invalid_handshake(server, headers, status):
    with server.connect() as conn:
        conn.request("GET", "/echo", handshake_headers(**headers))
        response = conn.read_response()
    assert response.status == status
    if status == 426:
        assert response.header("sec-websocket-version") == "13"


@pytest.mark.ringserve_only("uvicorn does not check that Sec-WebSocket-Key is base64 of 16 bytes")
def test_malformed_key_is_400(server):
    with server.connect() as conn:
        conn.request("GET", "/echo", handshake_headers(Sec_WebSocket_Key="not a key"))
        assert conn.read_response().status == 400


@pytest.mark.ringserve_only("uvicorn --ws none serves the upgrade request to the app as plain HTTP")
def test_ws_none_answers_400(serve, server_kind):
    server = serve(APP, "--ws", "none")
    with server.connect() as conn:
        conn.request("GET", "/echo", handshake_headers())
        assert conn.read_response().status == 400
    assert httpx.get(f"{server.url}/log", timeout=5).status_code == 200  # plain HTTP still served


@pytest.mark.ringserve_only("a WSGI app cannot speak websocket: ringserve answers 400 (uvicorn needs ASGI)")
def test_wsgi_app_answers_400(serve, server_kind):
    server = serve("tests.apps.wsgi_app:app", "--interface", "wsgi")
    with server.connect() as conn:
        conn.request("GET", "/environ", handshake_headers())
        response = conn.read_response()
    assert response.status == 400
    assert response.header("connection") == "close"


# --------------------------------------------------------------------------- backpressure


def test_slow_reading_client_parks_a_fast_sending_app(serve, server_kind):
    """The app sends 128 MiB as fast as send() lets it to a client that reads slowly: the app waits
    in send() and the server's memory stays flat."""
    server = serve(APP, *ws_args(server_kind))
    count, size = 2048, 64 * 1024
    baseline = server.rss_kb()
    raw = RawWS(server, f"/flood?id=slow-{server_kind}&count={count}&size={size}", rcvbuf=64 * 1024)
    run = f"slow-{server_kind}"
    try:
        time.sleep(1.0)  # not reading at all
        parked = log(server, run)["sent"]
        assert parked < 200, f"the app sent {parked} x 64 KiB to a client that reads nothing"
        peak, total, want = 0, raw.early, count * (size + 10)  # 10: header of a 64 KiB frame
        raw.conn.sock.settimeout(10)
        while total < want:
            data = raw.conn.sock.recv(64 * 1024)
            assert data, "closed early"
            total += len(data)
            if total % (4 * MiB) < len(data):
                peak = max(peak, server.rss_kb())
                time.sleep(0.005)
        assert total == want
        assert log(server, run)["sent"] == count
        growth = (peak - baseline) / 1024
        assert growth < 32, f"server RSS grew {growth:.1f} MiB while sending 128 MiB to a slow reader"
        raw.send(CloseConnection(code=1000))
    finally:
        raw.close()


def test_app_that_does_not_receive_stops_the_reading(serve, server_kind):
    """A client sends 64 MiB to an app that sleeps before receiving: the server stops reading, so
    the client's sends block (memory stays flat); when the app receives, everything arrives."""
    server = serve(APP, *ws_args(server_kind))
    run = f"sink-{server_kind}"
    raw = RawWS(server, f"/sink?id={run}&delay=2.5")
    one = raw.ws.send(Message(data=b"s" * (64 * 1024)))
    count = 1024
    sent = [0]
    baseline = server.rss_kb()

    def sender():
        try:
            for _ in range(count):
                raw.conn.sock.sendall(one)
                sent[0] += 1
        except OSError:
            pass

    raw.conn.sock.settimeout(20)
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        time.sleep(1.5)
        blocked_at = sent[0]
        assert thread.is_alive() and blocked_at < 512, f"{blocked_at} x 64 KiB accepted by an app that reads nothing"
        assert (server.rss_kb() - baseline) / 1024 < 32
        thread.join(15)
        assert sent[0] == count
        assert wait_log(server, run, lambda e: e["received"] == count, timeout=15)
        raw.send(CloseConnection(code=1000))
        assert wait_log(server, run, lambda e: e["disconnect"])["disconnect"][0] == 1000
    finally:
        raw.close()


# --------------------------------------------------------------------------- scale and shutdown


def test_a_thousand_concurrent_websockets(start_server, server_kind):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))  # the server inherits it
    server = start_server(APP, *ws_args(server_kind, "--backlog", "2048"))
    from websockets.asyncio.client import connect as aconnect

    n, rounds = 1000, 5
    uri = url(server, "/echo")

    async def main():
        handshakes = asyncio.Semaphore(100)
        all_open = asyncio.Event()
        opened = [0]

        async def one(i):
            async with handshakes:
                ws = await aconnect(uri, open_timeout=15, proxy=None, compression=None)
            opened[0] += 1
            if opened[0] == n:
                all_open.set()
            async with ws:
                await asyncio.wait_for(all_open.wait(), 15)
                for r in range(rounds):
                    await ws.send(f"{i}:{r}")
                    assert await asyncio.wait_for(ws.recv(), 10) == f"{i}:{r}"
                await ws.send(b"\x00" * 1000)
                assert await asyncio.wait_for(ws.recv(), 10) == b"\x00" * 1000

        await asyncio.gather(*(one(i) for i in range(n)))

    start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - start < 20


def test_shutdown_closes_open_websockets_with_1012(start_server, server_kind):
    server = start_server(APP, *ws_args(server_kind, "--timeout-graceful-shutdown", "10"))
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(ws_connect(server, f"/echo?id=down{i}")) for i in range(3)]
        for ws in clients:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
        start = time.monotonic()
        server.terminate()
        for ws in clients:
            assert closed_with(ws)[0] == 1012
        for i in range(3):
            server.wait_for_output(f"ws-disconnect down{i} 1012")
        server.proc.wait(5)
        assert time.monotonic() - start < 5, "the drain waited on open websockets"


# --------------------------------------------------------------------------- the handshake, sans I/O


def _request(method=b"GET", **headers):
    from ringserve.http import Request

    base = {"host": "a", "upgrade": "websocket", "connection": "Upgrade", "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}  # RFC 6455's example key
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    pairs = [(k.encode(), v.encode()) for k, v in base.items() if v is not None]
    return Request(method, b"/", b"/", b"", pairs, "1.1", True, False, b"websocket")


def test_read_handshake():
    from ringserve.ws import read_handshake

    status, key, protocols, offers = read_handshake(_request(
        sec_websocket_protocol="chat, super chat", sec_websocket_extensions="permessage-deflate; x=1, foo"))
    assert (status, key) == (0, b"dGhlIHNhbXBsZSBub25jZQ==")
    assert protocols == ["chat", "super chat"]
    assert offers == ["permessage-deflate; x=1", "foo"]
    assert read_handshake(_request(sec_websocket_version=None))[0] == 400
    assert read_handshake(_request(sec_websocket_version="8"))[0] == 426
    assert read_handshake(_request(method=b"POST"))[0] == 400
    assert read_handshake(_request(sec_websocket_key=None))[0] == 400
    assert read_handshake(_request(sec_websocket_key="c2hvcnQ="))[0] == 400  # base64, but not 16 bytes


@pytest.mark.parametrize("offers, reply", [
    ([], None),
    (["x-webkit-deflate-frame"], None),
    (["permessage-deflate"], b"permessage-deflate"),
    (["permessage-deflate; client_max_window_bits"], b"permessage-deflate; client_max_window_bits=12"),
    (["permessage-deflate; client_max_window_bits=15"], b"permessage-deflate; client_max_window_bits=15"),
    (["permessage-deflate; server_no_context_takeover"], b"permessage-deflate; server_no_context_takeover"),
    (["permessage-deflate; client_max_window_bits=abc"], None),  # malformed: no compression
    (["permessage-deflate; server_max_window_bits=20"], None),  # out of range: declined
])
def test_negotiate_deflate(offers, reply):
    from ringserve.ws import negotiate_deflate

    extensions, got = negotiate_deflate(offers)
    assert got == reply
    assert bool(extensions) == (reply is not None)


def test_deflate_round_trip_with_the_small_compressor():
    """What ringserve's compressor (4 KiB window, memLevel 5) sends, a stock client inflates."""
    from wsproto.extensions import PerMessageDeflate

    from ringserve.ws import negotiate_deflate

    extensions, reply = negotiate_deflate(["permessage-deflate; client_max_window_bits"])
    server = WSConnection(ConnectionType.SERVER, extensions)
    client_ext = PerMessageDeflate()
    client_ext.finalize(reply.decode())
    client = WSConnection(ConnectionType.CLIENT, [client_ext])
    text = "".join(f"line {i} of a compressible message\n" for i in range(5000))
    for _ in range(3):  # context takeover across messages
        wire = server.send(Message(data=text))
        assert len(wire) < len(text) // 10
        client.receive_data(wire)
        events = list(client.events())
        assert [type(e) for e in events] == [TextMessage] and events[0].data == text
        back = client.send(Message(data=text))
        server.receive_data(back)
        assert "".join(e.data for e in server.events()) == text
