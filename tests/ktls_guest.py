"""Kernel TLS end to end: run on a kernel WITH the tls module (tests/test_ktls.py runs it in a VM).

Not named test_*: the host suite does not collect it; tests/test_ktls.py runs
``python -m pytest tests/ktls_guest.py`` in the kTLS VM (or on the host, when the host kernel has kTLS)
and reports each test below. On a kernel without kTLS the whole module skips.

Proof that the kernel does the TLS, never a log line:
- getsockopt(SOL_TLS, TLS_TX / TLS_RX) on the *server's* socket of the connection: the test takes a copy
  of that descriptor with pidfd_open + pidfd_getfd (the fd found by the connection's socket inode,
  /proc/net/tcp -> /proc/<pid>/fd). The first 4 bytes are the TLS version and the kernel cipher type;
  EBUSY means the ULP is attached but that direction stays in userspace (TLS 1.3 receive).
- /proc/net/tls_stat counters (TlsTxSw/TlsRxSw per install, TlsCurrTxSw/TlsCurrRxSw while open).
  The client is Python's ssl without SSL_OP_ENABLE_KTLS, so every count is the server's.
- the ``ringserve.ktls`` ASGI scope extension, as the app (tests/apps/ktls_app.py) reports it.
- pathsend over kTLS TX goes file -> pipe -> socket by splice: the serving process holds a pipe for the
  connection and does not read() the file (/proc/<pid>/io rchar; with --ktls off it does, as the contrast).

Cases: TLS 1.2 (AES-128-GCM, AES-256-GCM, CHACHA20-POLY1305) and TLS 1.3 (the three suites) offload and
multi-MiB upload/download by sha256; pathsend by splice; close_notify both ways (client unwrap(), server
`connection: close`, keep-alive timeout, SIGTERM); pipelining; --ktls off; a clean exit on SIGTERM.
The client reads with suppress_ragged_eofs=False: a TCP close without close_notify is an SSLEOFError.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.certs import make_tls_files
from helpers.ktls import kernel_tls_missing, tls_stat

_missing = kernel_tls_missing()
if _missing:
    pytest.skip(f"needs a kernel with kTLS: {_missing}", allow_module_level=True)

pytestmark = pytest.mark.timeout(150)  # TCG emulation is slow

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.apps.ktls_app:app"
MiB = 1024 * 1024
UPLOAD = 3 * MiB
DOWNLOAD = 3 * MiB
FILE_SIZE = 4 * MiB
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
IO_TIMEOUT = 60.0

SOL_TLS, TLS_TX, TLS_RX = 282, 1, 2
TLS12_WIRE, TLS13_WIRE = 0x0303, 0x0304
AES_GCM_128, AES_GCM_256, CHACHA20_POLY1305 = 51, 52, 54
TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
VERSIONS = {"tls12": TLS12, "tls13": TLS13}
# trustme's keys are ECDSA, hence the ECDSA suites for TLS 1.2
TLS12_CIPHERS = {
    "aes128gcm": ("ECDHE-ECDSA-AES128-GCM-SHA256", AES_GCM_128),
    "aes256gcm": ("ECDHE-ECDSA-AES256-GCM-SHA384", AES_GCM_256),
    "chacha20": ("ECDHE-ECDSA-CHACHA20-POLY1305", CHACHA20_POLY1305),
}
TLS13_SUITES = {
    "aes128gcm": ("TLS_AES_128_GCM_SHA256", AES_GCM_128),
    "aes256gcm": ("TLS_AES_256_GCM_SHA384", AES_GCM_256),
    "chacha20": ("TLS_CHACHA20_POLY1305_SHA256", CHACHA20_POLY1305),
}
KERNEL_CIPHER = {name: kind for name, kind in [*TLS12_CIPHERS.values(), *TLS13_SUITES.values()]}
STATS_RE = re.compile(r"ring stats at exit:(.*)$", re.MULTILINE)


# --------------------------------------------------------------------------- the server's socket


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438


def _syscall(*args: int) -> int:
    ret = _libc.syscall(*(ctypes.c_long(a) for a in args))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def steal_fd(pid: int, fd: int) -> int:
    """A duplicate, in this process, of descriptor `fd` of process `pid` (pidfd_open + pidfd_getfd)."""
    pidfd = _syscall(SYS_PIDFD_OPEN, pid, 0)
    try:
        return _syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)


def socket_inode(local_port: int, remote_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if (int(fields[1].rsplit(":", 1)[1], 16) == local_port
                    and int(fields[2].rsplit(":", 1)[1], 16) == remote_port and int(fields[9])):
                return int(fields[9])
    return None


def server_fd(pid: int, server_port: int, client_port: int) -> int:
    """The descriptor number, in the server process, of the server end of this connection."""
    deadline = time.monotonic() + 5
    while True:
        inode = socket_inode(server_port, client_port)
        if inode is not None:
            target = f"socket:[{inode}]"
            for name in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{name}") == target:
                        return int(name)
                except FileNotFoundError:
                    pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no socket of pid {pid} for 127.0.0.1:{server_port} <- :{client_port} "
                                 f"(inode {inode})")
        time.sleep(0.05)


def ktls_state(pid: int, fd: int, direction: int) -> tuple[int, int]:
    """getsockopt(SOL_TLS, direction, 4) on the server's socket: (version, kernel cipher type).
    Raises OSError (EBUSY: ULP attached, direction not offloaded; ENOPROTOOPT: no ULP)."""
    dup = steal_fd(pid, fd)
    with socket.socket(fileno=dup) as sock:  # closing the copy leaves the server's socket alone
        raw = sock.getsockopt(SOL_TLS, direction, 4)
    return struct.unpack("=HH", raw)


def tls_errno(pid: int, fd: int, direction: int) -> int:
    try:
        state = ktls_state(pid, fd, direction)
    except OSError as exc:
        return exc.errno
    raise AssertionError(f"getsockopt(SOL_TLS, {direction}) succeeded: {state}")


def pipes_of(pid: int) -> int:
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{name}").startswith("pipe:")
        except FileNotFoundError:
            pass
    return count


def rchar(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


# --------------------------------------------------------------------------- server process


class GuestServer:
    """ringserve on a socket this test bound (--fd N); output collected by a reader thread."""

    def __init__(self, *args: str):
        self.args = args
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.stopped = False
        self.eof = False

    def start(self) -> GuestServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RINGSERVE_", "PYTEST_"))}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ringserve", APP, "--fd", str(sock.fileno()), *self.args],
                cwd=ROOT, env=env, pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            sock.close()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(r"(?i)running on", BOOT_TIMEOUT)
        return self

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        self.proc.stdout.close()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    break
                self.cond.wait(min(left, 0.5))
        raise AssertionError(f"no server output matching {pattern!r} within {timeout}s "
                             f"(exit code {self.proc.poll()})\n--- server output ---\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM and wait; SIGKILL (and fail) if it does not exit."""
        if not self.stopped:
            self.stopped = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"server did not exit within {STOP_TIMEOUT}s of SIGTERM\n{self.output()}")
            with self.cond:  # let the reader collect the last lines
                self.cond.wait_for(lambda: self.eof, 5)
        return self.proc.returncode

    def exit_problems(self) -> list[str]:
        problems = []
        if self.proc.returncode not in (0, -signal.SIGTERM):
            problems.append(f"exit code {self.proc.returncode} after SIGTERM")
        matches = STATS_RE.findall(self.output())
        if not matches:
            problems.append("no 'ring stats at exit:' line")
        else:
            stats = dict(tok.split("=", 1) for tok in matches[-1].split() if "=" in tok)
            bad = {k: stats.get(k) for k in ("inflight_ops", "bufs_out", "conns") if stats.get(k) != "0"}
            if bad:
                problems.append(f"ring not clean at exit (want 0): {bad}; all: {stats}")
        return problems


# --------------------------------------------------------------------------- client


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> dict:
        assert self.headers.get("content-type") == "application/json", self
        return json.loads(self.body)


def build(method: str, target: str, body: bytes = b"", headers: tuple[str, ...] = ()) -> bytes:
    head = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Client:
    """HTTP/1.1 over Python's ssl on a blocking socket. suppress_ragged_eofs=False, so reading a clean
    end (the peer's close_notify) returns b"" while a TCP close without close_notify raises SSLEOFError."""

    def __init__(self, port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False,
                                        session=session)
        except BaseException:
            raw.close()
            raise
        self.server_port = port
        self.local_port = self.sock.getsockname()[1]
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise AssertionError(f"connection closed (close_notify) mid-response; buffered {self.buf[:200]!r}")
        self.buf += data

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        assert "content-length" in headers, f"response without content-length: {head!r}"
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(status, headers, body)

    def request(self, method: str, target: str, body: bytes = b"", headers: tuple[str, ...] = ()) -> Response:
        self.send(build(method, target, body, headers))
        resp = self.response()
        assert resp.status == 200, (resp, resp.body[:500])
        return resp

    def info(self, target: str = "/info", body: bytes = b"") -> dict:
        return self.request("POST" if body else "GET", target, body).json()

    def read_eof(self) -> None:
        """The server ended the connection: a clean TLS end (close_notify), then TCP EOF."""
        try:
            data = self.sock.recv(1)
        except ssl.SSLEOFError as exc:
            raise AssertionError(f"the server closed TCP without close_notify: {exc!r}") from None
        assert data == b"", f"expected the end of the connection, got {data!r}"


def pin_tls13_suite(ctx: ssl.SSLContext, suite: str) -> None:
    """Python 3.11 cannot choose TLS 1.3 suites: SSL_CTX_set_ciphersuites on the context's SSL_CTX*
    (PySSLContext: PyObject_HEAD, then SSL_CTX *ctx), in the libssl this process's ssl module uses."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "libssl" in line and line.split()[-1].startswith("/")}
    if len(paths) != 1:
        pytest.skip(f"cannot tell which libssl the ssl module uses: {sorted(paths)}")
    libssl = ctypes.CDLL(paths.pop())
    libssl.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if libssl.SSL_CTX_set_ciphersuites(ptr, suite.encode()) != 1:
        pytest.skip(f"SSL_CTX_set_ciphersuites({suite}) failed")
    offered = [c["name"] for c in ctx.get_ciphers() if c.get("protocol") == "TLSv1.3"]
    if offered != [suite]:
        pytest.skip(f"could not pin the TLS 1.3 suite {suite} (the context offers {offered})")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("ktls-certs"))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("ktls-files") / "blob.bin"
    data = os.urandom(FILE_SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def upload_body() -> bytes:
    return os.urandom(UPLOAD)


def _serve(certs, *args):
    server = GuestServer(*certs.server_args("--timeout-keep-alive", "60", *args)).start()
    yield server
    server.stop()
    problems = server.exit_problems()
    if problems:
        pytest.fail("server: " + "; ".join(problems) + "\n--- server output ---\n" + server.output(), pytrace=False)


@pytest.fixture(scope="module")
def server(certs):
    """ringserve --ktls on, shared by the tests; at teardown it must exit cleanly on SIGTERM."""
    yield from _serve(certs, "--ktls", "on")


@pytest.fixture(scope="module")
def server_off(certs):
    yield from _serve(certs, "--ktls", "off")


@pytest.fixture(autouse=True)
def _server_output_on_failure(request):
    """A failed test prints the output of the server(s) it used (junit system-out; the guest console)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        for name in ("server", "server_off", "shutdown_run"):
            value = request.node.funcargs.get(name)
            server = getattr(value, "server", value)
            if isinstance(server, GuestServer):
                print(f"--- {name} output (ringserve {' '.join(server.args)}) ---\n{server.output()}")


def client_context(certs, version: ssl.TLSVersion) -> ssl.SSLContext:
    """Exactly `version`; a TCP close without close_notify shows (OP_IGNORE_UNEXPECTED_EOF cleared)."""
    ctx = certs.client_context(min_version=version, max_version=version)
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


def ctx12(certs, cipher: str | None = None) -> ssl.SSLContext:
    ctx = client_context(certs, TLS12)
    if cipher:
        ctx.set_ciphers(cipher)
    return ctx


def ctx13(certs, suite: str | None = None) -> ssl.SSLContext:
    ctx = client_context(certs, TLS13)
    if suite:
        pin_tls13_suite(ctx, suite)
    return ctx


def wait_stat(name: str, value: int, timeout: float = 10.0) -> dict[str, int]:
    """Wait for a /proc/net/tls_stat counter to come down to `value` (closed connections' contexts freed)."""
    deadline = time.monotonic() + timeout
    while True:
        stat = tls_stat()
        if stat.get(name, 0) <= value or time.monotonic() > deadline:
            return stat
        time.sleep(0.05)


def quiet_stat() -> dict[str, int]:
    """tls_stat() once no kTLS socket is open (earlier tests' connections may still be closing), so that
    what the counters do next is this test's connection."""
    wait_stat("TlsCurrTxSw", 0)
    stat = wait_stat("TlsCurrRxSw", 0)
    assert stat.get("TlsCurrTxSw", 0) == stat.get("TlsCurrRxSw", 0) == 0, ("kTLS sockets still open", stat)
    return stat


def delta(after: dict, before: dict, name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def transfer(client: Client, body: bytes) -> None:
    """Keep-alive: upload `body` (hash checked by the app), download DOWNLOAD bytes (hash checked here)."""
    want = hashlib.sha256(body).hexdigest()
    got = client.info("/upload", body)
    assert (got["size"], got["sha256"]) == (len(body), want), "the upload arrived damaged"
    resp = client.request("GET", f"/big?size={DOWNLOAD}")
    assert len(resp.body) == DOWNLOAD
    assert hashlib.sha256(resp.body).hexdigest() == resp.headers["x-sha256"], "the download arrived damaged"


# --------------------------------------------------------------------------- tests: kTLS on


def test_startup_says_ktls_on(server):
    server.wait_for(r"kTLS: on", 1)


@pytest.mark.parametrize("name", TLS12_CIPHERS)
def test_tls12_offload(server, certs, name):
    """TLS 1.2: the server's socket has kernel TX and RX with this cipher; counters and the extension agree."""
    cipher, kind = TLS12_CIPHERS[name]
    before = quiet_stat()
    with Client(server.port, ctx12(certs, cipher)) as client:
        assert client.sock.version() == "TLSv1.2" and client.sock.cipher()[0] == cipher
        got = client.info()
        assert got["ktls"] == {"tx": True, "rx": True}, got
        assert got["tls_version"] == TLS12_WIRE, got
        fd = server_fd(got["pid"], server.port, client.local_port)
        assert ktls_state(got["pid"], fd, TLS_TX) == (TLS12_WIRE, kind)
        assert ktls_state(got["pid"], fd, TLS_RX) == (TLS12_WIRE, kind)
        during = tls_stat()
        assert client.info()["ktls"] == {"tx": True, "rx": True}  # the kernel decrypted this request
    assert delta(during, before, "TlsTxSw") == 1, (before, during)
    assert delta(during, before, "TlsRxSw") == 1, (before, during)
    assert delta(during, before, "TlsCurrTxSw") >= 1 and delta(during, before, "TlsCurrRxSw") >= 1, (before, during)
    after = wait_stat("TlsCurrTxSw", 0)
    assert after.get("TlsCurrTxSw", 0) == 0, ("the kTLS context outlived the connection", before, after)
    assert delta(after, before, "TlsDecryptError") == 0, (before, after)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_websocket_over_ktls(server, certs, version):
    """A wss connection is offloaded like any other, and its scope says so too."""
    from websockets.sync.client import connect

    ctx = ctx12(certs) if version == "1.2" else ctx13(certs)
    with connect(f"wss://127.0.0.1:{server.port}/ws", ssl=ctx, open_timeout=IO_TIMEOUT,
                 close_timeout=IO_TIMEOUT, proxy=None) as ws:
        got = json.loads(ws.recv(timeout=IO_TIMEOUT))
        assert got["ktls"] == {"tx": True, "rx": version == "1.2"}, got
        ws.send("through the kernel")
        assert ws.recv(timeout=IO_TIMEOUT) == "through the kernel"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumed_session_offload(server, certs, version):
    """Session resumption: in TLS 1.2's abbreviated handshake the server's ChangeCipherSpec and Finished
    go out in its FIRST flight, not its last; the kernel must go on from the record after that
    Finished, or the client's first decrypt fails (bad_record_mac) and a GCM nonce is used twice."""
    ctx = ctx12(certs) if version == "1.2" else ctx13(certs)
    with Client(server.port, ctx) as first:
        assert first.info()["ktls"]["tx"]
        session = first.sock.session
    assert session is not None
    with Client(server.port, ctx, session=session) as client:
        assert client.sock.session_reused, "the client did not resume: the test proves nothing"
        got = client.info()  # the first record the kernel encrypted
        want = {"tx": True, "rx": version == "1.2"}
        assert got["ktls"] == want, got
        transfer(client, b"r" * (1 << 20))
        assert client.info()["ktls"] == want


@pytest.mark.parametrize("name", TLS12_CIPHERS)
def test_tls12_upload_download(server, certs, upload_body, name):
    cipher, kind = TLS12_CIPHERS[name]
    with Client(server.port, ctx12(certs, cipher)) as client:
        got = client.info()
        assert got["ktls"] == {"tx": True, "rx": True}, got
        transfer(client, upload_body)
        assert client.info()["ktls"] == {"tx": True, "rx": True}
        fd = server_fd(got["pid"], server.port, client.local_port)
        assert ktls_state(got["pid"], fd, TLS_RX) == (TLS12_WIRE, kind)


@pytest.mark.parametrize("name", TLS13_SUITES)
def test_tls13_offload(server, certs, name):
    """TLS 1.3: kernel TX (version 0x0304); RX stays in OpenSSL (getsockopt TLS_RX: EBUSY)."""
    suite, kind = TLS13_SUITES[name]
    ctx = ctx13(certs, suite)
    before = quiet_stat()
    with Client(server.port, ctx) as client:
        assert client.sock.version() == "TLSv1.3" and client.sock.cipher()[0] == suite
        got = client.info()
        assert got["ktls"] == {"tx": True, "rx": False}, got
        assert got["tls_version"] == TLS13_WIRE, got
        fd = server_fd(got["pid"], server.port, client.local_port)
        assert ktls_state(got["pid"], fd, TLS_TX) == (TLS13_WIRE, kind)
        err = tls_errno(got["pid"], fd, TLS_RX)
        assert err == errno.EBUSY, f"getsockopt(TLS_RX): {errno.errorcode.get(err)}, want EBUSY"
        during = tls_stat()
        assert client.info()["ktls"] == {"tx": True, "rx": False}
    assert delta(during, before, "TlsTxSw") == 1, (before, during)
    assert delta(during, before, "TlsRxSw") == 0, (before, during)
    assert delta(during, before, "TlsCurrTxSw") >= 1, (before, during)
    after = wait_stat("TlsCurrTxSw", 0)
    assert after.get("TlsCurrTxSw", 0) == 0, ("the kTLS context outlived the connection", before, after)


@pytest.mark.parametrize("name", ["default", "chacha20"])
def test_tls13_upload_download(server, certs, upload_body, name):
    ctx = ctx13(certs, TLS13_SUITES[name][0] if name in TLS13_SUITES else None)
    with Client(server.port, ctx) as client:
        got = client.info()
        assert got["ktls"] == {"tx": True, "rx": False}, got
        transfer(client, upload_body)
        assert client.info()["ktls"] == {"tx": True, "rx": False}
        fd = server_fd(got["pid"], server.port, client.local_port)
        assert ktls_state(got["pid"], fd, TLS_TX)[0] == TLS13_WIRE


@pytest.mark.parametrize("version", VERSIONS)
def test_pathsend_splice(server, certs, data_file, version):
    """http.response.pathsend over kTLS TX: the file goes out by splice (the kernel encrypts), intact."""
    path, digest = data_file
    ctx = client_context(certs, VERSIONS[version])
    with Client(server.port, ctx) as client:
        pid = client.info()["pid"]
        fd = server_fd(pid, server.port, client.local_port)
        assert ktls_state(pid, fd, TLS_TX)[0] == (TLS12_WIRE if version == "tls12" else TLS13_WIRE)
        pipes, read_before = pipes_of(pid), rchar(pid)
        resp = client.request("GET", f"/pathsend?path={path}")
        read = rchar(pid) - read_before
        assert resp.headers.get("x-pathsend") == "1", resp.headers
        assert len(resp.body) == FILE_SIZE
        assert hashlib.sha256(resp.body).hexdigest() == digest, "the file arrived damaged"
        assert pipes_of(pid) > pipes, "no splice pipe for the connection"
        assert read < FILE_SIZE // 4, f"the server read() {read} bytes for a {FILE_SIZE}-byte file (no splice?)"
        # the connection stays usable after a spliced body
        resp = client.request("GET", f"/pathsend?path={path}")
        assert hashlib.sha256(resp.body).hexdigest() == digest
        assert client.info()["ktls"]["tx"] is True


@pytest.mark.parametrize("version", VERSIONS)
def test_client_close_notify(server, certs, version):
    """The client ends with close_notify: the server answers with its own (through kTLS) and closes."""
    with Client(server.port, client_context(certs, VERSIONS[version])) as client:
        assert client.info()["ktls"]["tx"] is True
        try:
            raw = client.sock.unwrap()  # sends close_notify, then waits for the server's
        except ssl.SSLError as exc:
            raise AssertionError(f"no close_notify from the server after ours: {exc!r}") from None
        with raw:
            raw.settimeout(IO_TIMEOUT)
            assert raw.recv(1) == b"", "the server kept the TCP connection open after close_notify"


@pytest.mark.parametrize("version", VERSIONS)
def test_server_close_notify(server, certs, version):
    """`connection: close`: after the response the server sends close_notify, then closes."""
    with Client(server.port, client_context(certs, VERSIONS[version])) as client:
        assert client.info()["ktls"]["tx"] is True
        client.send(build("GET", "/info?last", headers=("connection: close",)))
        resp = client.response()
        assert resp.status == 200 and resp.headers.get("connection") == "close", resp
        assert resp.json()["ktls"]["tx"] is True
        client.read_eof()


@pytest.mark.parametrize("version", VERSIONS)
def test_pipelined(server, certs, version):
    """Three requests in one write, on a kTLS connection, answered in order."""
    body = os.urandom(100_000)
    with Client(server.port, client_context(certs, VERSIONS[version])) as client:
        first = client.info()
        rx = version == "tls12"
        assert first["ktls"] == {"tx": True, "rx": rx}
        client.send(build("GET", "/info?n=1") + build("POST", "/upload?n=2", body)
                    + build("GET", "/big?size=300000"))
        one, two, three = client.response(), client.response(), client.response()
        assert one.status == two.status == three.status == 200
        assert one.json()["ktls"] == {"tx": True, "rx": rx}
        got = two.json()
        assert (got["size"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
        assert len(three.body) == 300000
        assert hashlib.sha256(three.body).hexdigest() == three.headers["x-sha256"]
        assert client.buf == b""
    # and right after the handshake: the first requests may reach the server before the keys are installed
    with Client(server.port, client_context(certs, VERSIONS[version])) as client:
        client.send(build("GET", "/info?n=1") + build("POST", "/upload?n=2", body) + build("GET", "/info?n=3"))
        one, two, three = client.response(), client.response(), client.response()
        assert one.json()["ktls"] == three.json()["ktls"] == {"tx": True, "rx": rx}
        assert two.json()["sha256"] == hashlib.sha256(body).hexdigest()


# --------------------------------------------------------------------------- tests: --ktls off


def test_ktls_off_startup(server_off):
    server_off.wait_for(r"kTLS: off \(--ktls off\)", 1)


@pytest.mark.parametrize("version", VERSIONS)
def test_ktls_off_userspace(server_off, certs, data_file, version):
    """--ktls off: no ULP on the server's socket, no counters move, no extension; everything still works."""
    path, digest = data_file
    before = tls_stat()
    with Client(server_off.port, client_context(certs, VERSIONS[version])) as client:
        got = client.info()
        assert got["ktls"] is None, got
        fd = server_fd(got["pid"], server_off.port, client.local_port)
        for direction in (TLS_TX, TLS_RX):
            err = tls_errno(got["pid"], fd, direction)
            assert err in (errno.ENOPROTOOPT, errno.EOPNOTSUPP), errno.errorcode.get(err)
        body = os.urandom(MiB)
        up = client.info("/upload", body)
        assert (up["size"], up["sha256"]) == (MiB, hashlib.sha256(body).hexdigest())
        resp = client.request("GET", f"/big?size={MiB}")
        assert hashlib.sha256(resp.body).hexdigest() == resp.headers["x-sha256"]
        pipes, read_before = pipes_of(got["pid"]), rchar(got["pid"])
        resp = client.request("GET", f"/pathsend?path={path}")
        read = rchar(got["pid"]) - read_before
        assert hashlib.sha256(resp.body).hexdigest() == digest
        # userspace TLS reads the file to encrypt it (the contrast to test_pathsend_splice)
        assert read >= FILE_SIZE and pipes_of(got["pid"]) == pipes, (read, pipes)
        client.send(build("GET", "/info?last", headers=("connection: close",)))
        assert client.response().json()["ktls"] is None
        client.read_eof()
    after = tls_stat()
    for name in ("TlsTxSw", "TlsRxSw"):
        assert delta(after, before, name) == 0, (name, before, after)


# --------------------------------------------------------------------------- tests: closing idle, SIGTERM


KEEPALIVE_S = 3


@dataclass
class ShutdownRun:
    server: GuestServer
    keepalive_close: dict[str, str] = field(default_factory=dict)  # version -> what the idle client saw
    sigterm_close: dict[str, str] = field(default_factory=dict)


def _ending(client: Client) -> str:
    try:
        client.read_eof()
        return "close_notify"
    except (AssertionError, OSError) as exc:
        return str(exc)


@pytest.fixture(scope="module")
def shutdown_run(certs, data_file):
    """A fresh --ktls on server (--timeout-keep-alive 3). First an idle kTLS connection per TLS version is
    left to time out; then one per version does a request and a spliced file and is idle when SIGTERM
    arrives. Records what the clients saw and the exit."""
    server = GuestServer(*certs.server_args("--timeout-keep-alive", str(KEEPALIVE_S), "--ktls", "on")).start()
    run = ShutdownRun(server)
    clients: list[Client] = []
    try:
        idle = {}
        for version, tls_version in VERSIONS.items():
            client = idle[version] = Client(server.port, client_context(certs, tls_version))
            clients.append(client)
            assert client.info()["ktls"]["tx"] is True
        for version, client in idle.items():
            run.keepalive_close[version] = _ending(client)
        busy = {}
        for version, tls_version in VERSIONS.items():
            client = busy[version] = Client(server.port, client_context(certs, tls_version))
            clients.append(client)
            assert client.info()["ktls"]["tx"] is True
            resp = client.request("GET", f"/pathsend?path={data_file[0]}")
            assert hashlib.sha256(resp.body).hexdigest() == data_file[1]
        server.proc.send_signal(signal.SIGTERM)
        for version, client in busy.items():
            run.sigterm_close[version] = _ending(client)
        server.stop()
        yield run
    finally:
        for client in clients:
            client.close()
        server.stop()


def test_keepalive_timeout_close_notify(shutdown_run):
    """An idle kTLS connection closed by --timeout-keep-alive ends with close_notify (as uvicorn's do)."""
    want = {version: "close_notify" for version in VERSIONS}
    assert shutdown_run.keepalive_close == want


def test_sigterm_clean_exit(shutdown_run):
    """SIGTERM with idle kTLS connections (after spliced files): exit 0, ring stats all zero."""
    problems = shutdown_run.server.exit_problems()
    assert not problems, "; ".join(problems) + "\n--- server output ---\n" + shutdown_run.server.output()


def test_sigterm_closes_idle_connections_with_close_notify(shutdown_run):
    want = {version: "close_notify" for version in VERSIONS}
    assert shutdown_run.sigterm_close == want
