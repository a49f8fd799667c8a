"""WebSocket echo throughput and memory per connection (issue 4): a quick, noisy comparison, not run.py.

  bench/.venv/bin/python bench/ws_bench.py echo   [--seconds 3] [--conns 64] [--window 16] [--size 64]
  bench/.venv/bin/python bench/ws_bench.py memory [--conns 1000]
  ... [--only ringserve-uring uvicorn-wsproto ...]

echo: every server runs bench/apps/ws_echo.py, one worker pinned to CPU 1 (bench/servers.py); the client
(this process, uvloop, pinned to CPU 0) opens --conns websockets without extensions and keeps --window
binary messages of --size bytes in flight on each: pre-masked frames out, bytes counted in (the echo of a
frame has a known length), so the client does almost no work per message. 1 s warm-up, then --seconds
measured. Messages/s = echoed messages / seconds.

memory: on a fresh server, RSS of the server's process tree before and after --conns websockets (the
`websockets` client) each echo one 4 KiB text message and stay open; KiB per connection = the difference
/ conns. Run once with permessage-deflate offered and once without: the difference is what compression
costs per connection. `ringserve-zlib-default` is ringserve with wsproto's own zlib settings (15-bit
windows, memLevel 8) instead of ringserve's (12 / 5), to show what those save.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import HOST, Running, Server, rss_kib, stop_all

TARGET = "ws_echo:app"
ROOT = Path(__file__).resolve().parent.parent
RINGSERVE = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from ringserve.cli import main; sys.exit(main())"
ZLIB_DEFAULT = RINGSERVE.replace("from ringserve.cli", "import ringserve.ws as w; w.DEFLATE_WINDOW_BITS = 15; "
                                 "w.DEFLATE_MEM_LEVEL = 8; from ringserve.cli")


def _ringserve(io: str, *extra: str, code: str = RINGSERVE):
    """ringserve from this checkout (bench/.venv may hold an older install)."""
    def build(target, interface, port):
        return ["python", "-c", code, target, "--host", HOST, "--port", str(port), "--no-access-log", "--io", io,
                *extra]

    return build


def _uvicorn(ws: str):
    def build(target, interface, port):
        return ["uvicorn", target, "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                "--ws", ws, "--no-access-log", "--log-level", "warning"]

    return build


def _granian(target, interface, port):
    return ["granian", "--interface", "asgi", "--host", HOST, "--port", str(port), "--workers", "1", "--http", "1",
            "--loop", "uvloop", "--backpressure", "20000", "--no-access-log", "--log-level", "warning", target]


SERVERS = {
    "ringserve-uring": Server("ringserve-uring", ("asgi",), _ringserve("uring")),
    "ringserve-asyncio": Server("ringserve-asyncio", ("asgi",), _ringserve("asyncio")),
    "ringserve-zlib-default": Server("ringserve-zlib-default", ("asgi",), _ringserve("uring", code=ZLIB_DEFAULT)),
    "uvicorn-wsproto": Server("uvicorn-wsproto", ("asgi",), _uvicorn("wsproto")),
    "uvicorn-websockets": Server("uvicorn-websockets", ("asgi",), _uvicorn("websockets")),
    "granian": Server("granian", ("asgi",), _granian),
}
ECHO_SERVERS = ["ringserve-uring", "ringserve-asyncio", "uvicorn-wsproto", "uvicorn-websockets", "granian"]
MEMORY_SERVERS = ["ringserve-uring", "ringserve-zlib-default", "uvicorn-wsproto", "uvicorn-websockets", "granian"]


def start(name: str, logdir: Path) -> Running:
    running = Running(SERVERS[name], TARGET, "asgi", logdir / f"{name}.log")
    running.wait_ready("GET", "/", None)
    return running


# --- echo throughput ----------------------------------------------------------------------------------


def client_frame(payload: bytes) -> bytes:
    """One masked binary frame (the client side of the protocol, pre-built once)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class EchoClient(asyncio.Protocol):
    def __init__(self, frame: bytes, reply_len: int, window: int, opened: asyncio.Future):
        self.frame, self.reply_len, self.window, self.opened = frame, reply_len, window, opened
        self.head = b""
        self.received = 0  # echoed bytes after the handshake
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())

    def data_received(self, data):
        if not self.opened.done():
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(head[:80]))
                return
            self.opened.set_result(None)
            self.transport.write(self.frame * self.window)
        before = self.received // self.reply_len
        self.received += len(data)
        done = self.received // self.reply_len - before
        if done:
            self.transport.write(self.frame * done)

    def messages(self) -> int:
        return self.received // self.reply_len


async def echo_run(port: int, conns: int, window: int, size: int, seconds: float) -> float:
    loop = asyncio.get_running_loop()
    frame = client_frame(random.randbytes(size))
    reply_len = size + (2 if size < 126 else 4)
    clients = []
    for _ in range(conns):
        opened = loop.create_future()
        _, proto = await loop.create_connection(lambda o=opened: EchoClient(frame, reply_len, window, o), HOST, port)
        await asyncio.wait_for(opened, 10)
        clients.append(proto)
    await asyncio.sleep(1.0)  # warm-up
    first = sum(c.messages() for c in clients)
    await asyncio.sleep(seconds)
    total = sum(c.messages() for c in clients) - first
    for c in clients:
        c.transport.abort()
    return total / seconds


def echo(args, logdir: Path) -> None:
    print(f"# echo: {args.conns} connections x {args.window} in flight, {args.size}-byte binary messages, "
          f"{args.seconds:g} s after 1 s warm-up; server on CPU 1, client on CPU 0. NOISY: a quick run.")
    print("| server | messages/s |\n| --- | ---: |")
    for name in args.only or ECHO_SERVERS:
        running = start(name, logdir)
        try:
            rate = asyncio.run(echo_run(running.port, args.conns, args.window, args.size, args.seconds))
            print(f"| {name} | {rate:,.0f} |", flush=True)
        except Exception as exc:
            print(f"| {name} | failed: {exc!r} |", flush=True)
        finally:
            running.stop()


# --- memory per connection -------------------------------------------------------------------------------


async def open_many(port: int, conns: int, compression: str | None) -> list:
    from websockets.asyncio.client import connect

    words = [f"w{i}" for i in range(500)]
    rng = random.Random(1)
    text = " ".join(rng.choice(words) for _ in range(1000))[:4096]
    sem = asyncio.Semaphore(50)

    async def one():
        async with sem:
            ws = await connect(f"ws://{HOST}:{port}/ws", compression=compression, proxy=None,
                               ping_interval=None, open_timeout=30)
            await ws.send(text)
            assert await ws.recv() == text
            return ws

    return await asyncio.gather(*(one() for _ in range(conns)))


def memory(args, logdir: Path) -> None:
    print(f"# memory: KiB of server RSS per open websocket, {args.conns} connections, each echoed one 4 KiB "
          "text message (fresh server per row).")
    print("| server | deflate offered | no extension | deflate costs |\n| --- | ---: | ---: | ---: |")
    for name in args.only or MEMORY_SERVERS:
        per = {}
        for compression in ("deflate", None):
            running = start(name, logdir)
            try:
                async def measure(running=running, compression=compression):
                    warm = await open_many(running.port, 10, compression)  # first-use allocations
                    before = rss_kib(running.pids())
                    many = await open_many(running.port, args.conns, compression)
                    await asyncio.sleep(0.5)
                    after = rss_kib(running.pids())
                    for ws in warm + many:
                        await ws.close()
                    return (after - before) / args.conns

                per[compression] = asyncio.run(measure())
            except Exception as exc:
                per[compression] = float("nan")
                print(f"<!-- {name} {compression}: {exc!r} -->")
            finally:
                running.stop()
        d, n = per["deflate"], per[None]
        print(f"| {name} | {d:.1f} | {n:.1f} | {d - n:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("echo", "memory"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=None)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--only", nargs="*", choices=sorted(SERVERS))
    args = parser.parse_args()
    if args.conns is None:
        args.conns = 64 if args.what == "echo" else 1000
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        os.sched_setaffinity(0, {0})
    except OSError:
        pass
    logdir = Path(__file__).resolve().parent / "results" / "raw" / f"ws-{time.strftime('%Y%m%d-%H%M%S')}"
    logdir.mkdir(parents=True, exist_ok=True)
    try:
        echo(args, logdir) if args.what == "echo" else memory(args, logdir)
    finally:
        stop_all()


if __name__ == "__main__":
    main()
