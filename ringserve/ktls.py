"""Kernel TLS: after a userspace handshake, the kernel encrypts (and for TLS 1.2 decrypts).

Theory of operation
-------------------
- The handshake runs in OpenSSL through memory BIOs (uring_tls.py), so OpenSSL never
  sees the socket and cannot enable kTLS itself (its SSL_OP_ENABLE_KTLS works only
  with a socket BIO). Instead `KernelTLS.decide()` installs a keylog callback on the
  worker's SSL_CTX (core/tls.c), which keeps each connection's traffic secrets, and
  `KernelTLS.offload()` turns them into the kernel's `struct tls12_crypto_info_*`:
  TLS 1.3 keys by HKDF-Expand-Label (RFC 8446 7.3), TLS 1.2 keys by the PRF's key
  expansion (RFC 5246 6.3).
- Directions: TLS 1.2 offloads sending and receiving; TLS 1.3 only sending, as OpenSSL
  3.0 does: the kernel cannot follow a peer's KeyUpdate on receive without userspace
  help (docs/design.md), so TLS 1.3 records are still decrypted by OpenSSL, fed by the
  ring. Ciphers: AES-128-GCM, AES-256-GCM, CHACHA20-POLY1305; others stay in OpenSSL.
- Record sequence numbers are not exposed by OpenSSL: the connection counts the
  records that crossed the memory BIOs (`RecordScan`), see uring_tls.py.
- Python's ssl objects are handed to OpenSSL functions by pointer. `decide()` checks
  that the extension and the ssl module share one libssl and that the pointers it
  reads are the ones OpenSSL knows, and otherwise keeps TLS in userspace, saying why.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import socket
import ssl
import struct
from typing import Any

from ringserve.config import ConfigError

logger = logging.getLogger("ringserve.error")

TLS_TX, TLS_RX = 1, 2
TLS_1_2, TLS_1_3 = 0x0303, 0x0304
AES_GCM_128, AES_GCM_256, CHACHA20_POLY1305 = 51, 52, 54
_HEAD = object.__basicsize__  # PyObject_HEAD: where PySSLContext.ctx starts


def cipher_params(name: str) -> tuple[int, int, Any] | None:
    """(kernel cipher type, key length, hash) for an OpenSSL cipher name, or None."""
    upper = name.upper().replace("_", "-")
    if "CHACHA20-POLY1305" in upper:
        return CHACHA20_POLY1305, 32, hashlib.sha256
    if "AES128-GCM" in upper or "AES-128-GCM" in upper:
        return AES_GCM_128, 16, hashlib.sha256
    if "AES256-GCM" in upper or "AES-256-GCM" in upper:
        return AES_GCM_256, 32, hashlib.sha384
    return None


def hkdf_expand_label(secret: bytes, label: bytes, length: int, digest: Any) -> bytes:
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), digest).digest()
        out += block
        i += 1
    return out[:length]


def tls12_prf(secret: bytes, label: bytes, seed: bytes, length: int, digest: Any) -> bytes:
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, digest).digest()
        out += hmac.new(secret, a + seed, digest).digest()
    return out[:length]


def crypto_info(version: int, cipher: int, key: bytes, iv: bytes, seq: int) -> bytes:
    """struct tls12_crypto_info_{aes_gcm_128,aes_gcm_256,chacha20_poly1305} (linux/tls.h)."""
    rec_seq = seq.to_bytes(8, "big")
    head = struct.pack("=HH", version, cipher)
    if cipher == CHACHA20_POLY1305:
        return head + iv + key + rec_seq  # iv[12] key[32] rec_seq[8]
    if version == TLS_1_2:  # iv = the explicit nonce to start from, salt = the implicit part
        return head + rec_seq + key + iv + rec_seq
    return head + iv[4:] + key + iv[:4] + rec_seq  # TLS 1.3: iv[8] key salt[4] rec_seq


class Offload:
    """One connection's kernel keys, waiting for its record counts."""

    __slots__ = ("version", "cipher", "tx_key", "tx_iv", "rx_key", "rx_iv")

    def __init__(self, version: int, cipher: int, tx: tuple[bytes, bytes], rx: tuple[bytes, bytes] | None):
        self.version, self.cipher = version, cipher
        self.tx_key, self.tx_iv = tx
        self.rx_key, self.rx_iv = rx if rx else (b"", b"")

    @property
    def can_rx(self) -> bool:
        return bool(self.rx_key)

    def tx(self, seq: int) -> bytes:
        return crypto_info(self.version, self.cipher, self.tx_key, self.tx_iv, seq)

    def rx(self, seq: int) -> bytes:
        return crypto_info(self.version, self.cipher, self.rx_key, self.rx_iv, seq)


class KernelTLS:
    """The worker's kTLS: decided once at start-up, then asked once per handshake."""

    def __init__(self, lib: Any, ffi: Any, ctx_ptr: Any) -> None:
        self.lib, self.ffi, self.ctx_ptr = lib, ffi, ctx_ptr
        self.buf = ffi.new("char[]", 1024)
        self.random = ffi.new("unsigned char[]", 32)

    @classmethod
    def decide(cls, config: Any, context: ssl.SSLContext, backend: str) -> KernelTLS | None:
        mode = str(config.ktls)
        if mode == "off":
            logger.info("kTLS: off (--ktls off): OpenSSL encrypts in userspace.")
            return None
        ktls, reason = cls._try(context, backend)
        if ktls is not None:
            logger.info("kTLS: on - after the handshake the kernel encrypts (TLS 1.2 and 1.3) and "
                        "decrypts (TLS 1.2); AES-GCM and CHACHA20-POLY1305 suites.")
            return ktls
        if mode == "on":
            raise ConfigError(f"--ktls on, but kernel TLS is unavailable: {reason}")
        logger.info("kTLS: off (%s): OpenSSL encrypts in userspace.", reason)
        return None

    @classmethod
    def _try(cls, context: ssl.SSLContext, backend: str) -> tuple[KernelTLS | None, str]:
        if backend != "uring":
            return None, ("--io asyncio: asyncio's TLS transport keeps the keys in a memory BIO; "
                          "kTLS needs the io_uring backend")
        try:
            from ringserve.core._tls import ffi, lib
        except ImportError as exc:
            return None, f"the kTLS helpers are not built ({exc}); reinstall ringserve"
        if lib.rs_tls_openssl_version() != ssl.OPENSSL_VERSION_NUMBER or _libssl_copies() > 1:
            return None, (f"Python's ssl module uses {ssl.OPENSSL_VERSION}, not the libssl ringserve "
                          "was built with")
        ctx_ptr = ffi.cast("void **", id(context) + _HEAD)[0]
        if lib.rs_tls_ctx_options(ctx_ptr) != context.options:
            return None, "this Python's ssl objects are laid out differently than ringserve expects"
        ktls = cls(lib, ffi, ctx_ptr)
        probe = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
        if ktls.ssl_ptr(probe) is None:
            return None, "this Python's ssl objects are laid out differently than ringserve expects"
        err = _kernel_probe(lib)
        if err:
            return None, err
        if lib.rs_tls_watch(ctx_ptr) < 0:
            return None, "OpenSSL refused the keylog callback"
        return ktls, ""

    def ssl_ptr(self, sslobj: Any) -> Any:
        """The SSL* behind an ssl.SSLObject (PySSLSocket: PyObject_HEAD, Socket, ssl)."""
        inner = getattr(sslobj, "_sslobj", None)
        if inner is None:
            return None
        ptr = self.ffi.cast("void **", id(inner) + _HEAD + self.ffi.sizeof("void *"))[0]
        return ptr if self.lib.rs_tls_check(self.ctx_ptr, ptr) == 0 else None

    def offload(self, sslobj: Any) -> Offload | None:
        """The kernel keys for this finished handshake, or None when it must stay in OpenSSL."""
        ptr = self.ssl_ptr(sslobj)
        if ptr is None:
            return None
        n = self.lib.rs_tls_take(ptr, self.buf, len(self.buf))
        if n < 0:
            return None
        text = bytes(self.ffi.buffer(self.buf, n)).decode("ascii", "replace")
        self.ffi.memmove(self.buf, b"\0" * n, n)
        secrets = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                secrets[parts[0]] = (bytes.fromhex(parts[1]), bytes.fromhex(parts[2]))
        params = cipher_params((sslobj.cipher() or ("",))[0])
        if params is None:
            return None
        cipher, key_len, digest = params
        version = sslobj.version()
        if version == "TLSv1.3" and "SERVER_TRAFFIC_SECRET_0" in secrets:
            secret = secrets["SERVER_TRAFFIC_SECRET_0"][1]
            key = hkdf_expand_label(secret, b"key", key_len, digest)
            iv = hkdf_expand_label(secret, b"iv", 12, digest)
            return Offload(TLS_1_3, cipher, (key, iv), None)
        if version == "TLSv1.2" and "CLIENT_RANDOM" in secrets:
            client_random, master = secrets["CLIENT_RANDOM"]
            if self.lib.rs_tls_server_random(ptr, self.random) < 0:
                return None
            server_random = bytes(self.ffi.buffer(self.random, 32))
            iv_len = 12 if cipher == CHACHA20_POLY1305 else 4
            block = tls12_prf(master, b"key expansion", server_random + client_random,
                              2 * (key_len + iv_len), digest)
            client_key, server_key = block[:key_len], block[key_len:2 * key_len]
            client_iv = block[2 * key_len:2 * key_len + iv_len]
            server_iv = block[2 * key_len + iv_len:]
            return Offload(TLS_1_2, cipher, (server_key, server_iv), (client_key, client_iv))
        return None


def _libssl_copies() -> int:
    """How many different libssl files this process has mapped (2 would mean two OpenSSLs)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libssl" in line}
    except OSError:
        return 1
    return len({os.path.realpath(p) for p in paths})


def _kernel_probe(lib: Any) -> str:
    """'' when the kernel accepts the tls ULP on a loopback TCP connection, else the reason."""
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=2)
        peer, _ = listener.accept()
        with client, peer:
            err = lib.rs_ktls_attach(peer.fileno())
    except OSError as exc:
        return f"could not probe the kernel ({exc})"
    finally:
        listener.close()
    if err == 0:
        return ""
    if err == -errno.ENOENT:
        return "the kernel has no tls module (CONFIG_TLS); load it with 'modprobe tls'"
    return f"the kernel refused the tls ULP: {os.strerror(-err)}"


class RecordScan:
    """Counts TLS records in a byte stream, from its start: how many followed the last
    ChangeCipherSpec (TLS 1.2's sequence number) and whether the stream ends on a record
    boundary (the kernel can take over receiving only there)."""

    __slots__ = ("need", "head", "after_ccs", "records")

    def __init__(self) -> None:
        self.need = 0  # body bytes of the current record still to come
        self.head = b""  # a partial 5-byte record header
        self.after_ccs = 0
        self.records = 0

    def feed(self, data: Any) -> None:
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n:
            if self.need:
                step = min(self.need, n - i)
                self.need -= step
                i += step
                continue
            take = min(5 - len(self.head), n - i)
            self.head += bytes(view[i:i + take])
            i += take
            if len(self.head) < 5:
                break
            kind, length = self.head[0], int.from_bytes(self.head[3:5], "big")
            self.head = b""
            self.need = length
            self.records += 1
            if kind == 20:
                self.after_ccs = 0
            else:
                self.after_ccs += 1

    @property
    def at_boundary(self) -> bool:
        return self.need == 0 and not self.head
