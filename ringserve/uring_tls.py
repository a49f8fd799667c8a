"""TLS on the ring: OpenSSL (Python's ssl, memory BIOs) between the ring and the HTTP layer.

Theory of operation
-------------------
- Ciphertext arrives by the ring's receive into `incoming`; `sslobj.read()` yields the
  plaintext that Connection.data_received() gets. Writes go through `sslobj.write()`,
  and `outgoing`'s ciphertext goes out by the ring's send. No socket call is made by
  OpenSSL or on the loop thread: the ring moves every byte.
- HANDSHAKE: until the handshake ends (or `--timeout-tls-handshake`, the connection's
  deadline) nothing reaches HTTP. A plain-HTTP request gets a plain 400 (as nginx
  does), other failures the alert OpenSSL wrote, then a close.
- kTLS (ktls.py), when the worker has it: during the handshake each receive is
  single-shot, so no ciphertext past the handshake is taken from the socket. At its
  end the connection is SWITCHING: it sends OpenSSL's last flight, and when that send
  completes installs the keys with the record sequence numbers counted by RecordScan over
  every byte each side sent (TLS 1.3 sending: the records of the final flight, i.e.
  session tickets; TLS 1.2: the records after each side's ChangeCipherSpec, which a
  resumed handshake sends in the server's FIRST flight). It then becomes a
  KTLSTxConnection (the kernel encrypts; OpenSSL still decrypts, TLS 1.3) or a
  KTLSConnection (both directions, TLS 1.2): same slots, other methods.
- Close: close_notify after the queued output (OpenSSL's, or an alert record through
  kTLS); abort() sends nothing.
"""

from __future__ import annotations

import errno
import logging
import ssl
from typing import Any

from ringserve.connection import LINGER_S, Connection, monotonic
from ringserve.ktls import TLS_1_3, TLS_RX, TLS_TX, RecordScan
from ringserve.tls import ConnectionTLS
from ringserve.uring import RECV_ARMED, RECV_OFF, RingConnection

logger = logging.getLogger("ringserve.error")

HANDSHAKE, SWITCHING, OPEN, FAILED = 0, 1, 2, 3
READ_SIZE = 64 * 1024
_METHOD_START = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_plain_buffer = bytearray(READ_SIZE)
_plain_view = memoryview(_plain_buffer)
PLAIN_HTTP_400 = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 47\r\n\r\n"
    b"The plain HTTP request was sent to HTTPS port.\n"
)


class TLSRingConnection(RingConnection):
    """TLS in userspace (OpenSSL), every byte through the ring."""

    __slots__ = ("sslobj", "incoming", "outgoing", "phase", "rx_scan", "tx_scan", "held", "offload",
                 "tx_seq", "sniff")

    def __init__(self, server: Any, key: int, fd: int, client: Any, sockname: Any) -> None:
        super().__init__(server, key, fd, client, sockname)
        settings = server.tls
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = settings.context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.scheme = "https"
        self.phase = HANDSHAKE
        self.deadline = monotonic() + settings.handshake_timeout
        watch = settings.ktls is not None
        self.rx_scan: RecordScan | None = RecordScan() if watch else None
        self.tx_scan: RecordScan | None = RecordScan() if watch else None
        self.held = b""
        self.offload: Any = None
        self.tx_seq = 0
        self.sniff: bytes | None = b""  # the first bytes, until they are known to be TLS (then None)

    # -- receiving -----------------------------------------------------------------

    def arm_recv(self) -> None:
        if self.phase == SWITCHING:
            return  # the socket's next bytes may be the kernel's to decrypt
        self.recv_state = RECV_ARMED
        multishot = 0 if self.rx_scan is not None and self.phase == HANDSHAKE else self.server.backend.multishot_recv
        self.ring.recv(self.fd, self.ud_recv, multishot)

    def data_received(self, data: Any) -> None:
        if self.lingering or self.phase == FAILED:
            return
        if self.phase == HANDSHAKE:
            if self.sniff is not None and self._sniffed_plain_http(data):
                return
            if self.rx_scan is not None:
                self.rx_scan.feed(data)
            self.incoming.write(data)
            self._handshake()
            return
        self.incoming.write(data)
        self._decrypt(None)

    def _decrypt(self, keep: list | None) -> None:
        """Hand all the plaintext OpenSSL can give now to HTTP (or to `keep`, copied); EOF or a
        TLS error ends the connection. The plaintext is read into one buffer per worker and
        passed as a view, like the ring's receive buffers (nothing downstream keeps it)."""
        buf = _plain_buffer
        view = _plain_view
        sslobj = self.sslobj
        read = sslobj.read
        incoming = self.incoming
        try:
            while not self.closed:
                n = read(READ_SIZE, buf)
                if not n:
                    self._after_read()
                    self.close_notified()
                    return
                if keep is None:
                    Connection.data_received(self, view[:n])
                else:
                    keep.append(bytes(view[:n]))
                if not incoming.pending and not sslobj.pending():
                    break  # all used up: spare the SSLWantReadError of one more read
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            logger.debug("TLS error from %s: %s", self.client, exc)
            self.abort()
            return
        if not self.closed:
            self._after_read()

    def _after_read(self) -> None:
        """Reading can make OpenSSL write (a KeyUpdate answer, an alert): send it."""
        if self.outgoing.pending:
            self._send_outgoing()

    # -- the handshake ---------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._send_outgoing()
            return
        except ssl.SSLError as exc:
            self._handshake_failed(exc)
            return
        except OSError as exc:  # SSLEOFError and friends are SSLError; anything else too
            self._handshake_failed(exc)
            return
        self._handshake_done()

    def _sniffed_plain_http(self, data: Any) -> bool:
        """A TLS connection starts with a handshake record (0x16); one that starts with a capital
        letter is a plain-HTTP request: answer it with a plain 400 (as nginx does) once its method
        is known (a HEAD answer has no body), and close. False once the bytes look like TLS."""
        sniff = self.sniff
        if not sniff and data[0] not in _METHOD_START:
            self.sniff = None
            return False
        sniff += bytes(data[:16])
        if b" " not in sniff and len(sniff) < 16:
            self.sniff = sniff
            return True
        self.phase = FAILED
        response = PLAIN_HTTP_400
        if sniff.startswith(b"HEAD "):
            response = response[:response.index(b"\r\n\r\n") + 4]
        RingConnection.write(self, response)
        self.linger = True  # read what else it sends, so the 400 is not lost to a reset
        RingConnection.close(self)
        return True

    def _handshake_failed(self, exc: Exception) -> None:
        self.phase = FAILED
        logger.debug("TLS handshake with %s failed: %s", self.client, exc)
        self._send_outgoing()  # OpenSSL's alert, if it wrote one
        RingConnection.close(self)

    def _handshake_done(self) -> None:
        server = self.server
        settings = server.tls
        self.tls = ConnectionTLS(settings, self.sslobj)
        self.extensions = self.tls.extensions(server.shared.extensions)
        self.deadline = monotonic() + server.head_timeout
        ktls = settings.ktls
        offload = ktls.offload(self.sslobj) if ktls is not None else None
        scan = self.tx_scan
        before = scan.records if scan is not None else 0
        self._send_outgoing()  # the last flight (TLS 1.3: session tickets), ahead of any answer below
        last = scan.records if scan is not None else 0
        self.phase = OPEN
        kept: list[bytes] = []
        self._decrypt(kept)  # application data that came right behind the client's Finished
        if self.closed:
            return
        plain = b"".join(kept)
        if offload is not None and offload.version == TLS_1_3:
            # the records under the application keys: the last flight's. Anything OpenSSL wrote
            # after it (a KeyUpdate's answer) moved to keys the kernel would not have.
            self.tx_seq = last - before
            if scan.records != last:
                offload = None
        elif offload is not None:
            self.tx_seq = scan.after_ccs
        if offload is None:
            self.rx_scan = self.tx_scan = None
            if plain:
                Connection.data_received(self, plain)
            return
        self.offload = offload
        self.held = plain
        self.phase = SWITCHING
        if self.sending is None:
            self._switch()

    def send_done(self, res: int) -> None:
        RingConnection.send_done(self, res)
        if self.phase == SWITCHING and self.sending is None and not self.closed:
            self._switch()

    def _switch(self) -> None:
        """The handshake's last bytes are out: hand the keys to the kernel."""
        offload, self.offload = self.offload, None
        lib = self.server.tls.ktls.lib
        fd = self.fd
        tx = rx = False
        if lib.rs_ktls_attach(fd) == 0:
            info = offload.tx(self.tx_seq)
            tx = lib.rs_ktls_set(fd, TLS_TX, info, len(info)) == 0
            scan = self.rx_scan
            if (tx and offload.can_rx and scan.at_boundary and not self.incoming.pending
                    and not self.sslobj.pending()):
                info = offload.rx(scan.after_ccs)
                rx = lib.rs_ktls_set(fd, TLS_RX, info, len(info)) == 0
        del offload
        self.rx_scan = self.tx_scan = None
        self.phase = OPEN
        if tx:
            self.tls.ktls = {"tx": True, "rx": rx}
            self.extensions = self.tls.extensions(self.server.shared.extensions)
            self.sender = self.ring.send_partial
            self.msg_sender = self.ring.sendmsg_partial
            self.__class__ = KTLSConnection if rx else KTLSTxConnection
        held, self.held = self.held, b""
        if self.want_read and self.recv_state == RECV_OFF:
            self.arm_recv()
        if held:
            Connection.data_received(self, held)

    # -- sending -------------------------------------------------------------------

    def _send_outgoing(self) -> None:
        data = self.outgoing.read()
        if data:
            if self.tx_scan is not None:  # until kTLS takes over: count what the kernel follows
                self.tx_scan.feed(data)
            RingConnection.write(self, data)

    def write(self, data: bytes) -> None:
        if self.closed or self.close_after:
            return
        self.sslobj.write(data)
        self._send_outgoing()

    def write_parts(self, parts: list[bytes]) -> None:
        if self.closed or self.close_after:
            return
        for part in parts:
            self.sslobj.write(part)
        self._send_outgoing()

    sendfile = Connection.copy_file  # userspace TLS cannot splice: read, encrypt and send

    # -- closing -----------------------------------------------------------------------

    def close_notified(self) -> None:
        """The peer sent close_notify: an idle connection answers with its own and closes (RFC
        8446 6.1); one with a request in flight ends as on EOF."""
        if self.upgraded is None and self.cycle is None and not self.lingering:
            self.close()
        else:
            self.peer_closed()

    def close_idle(self) -> None:
        """Idle past keep-alive (or drained at shutdown): end with close_notify, not a bare FIN;
        LINGER_S later, a close still waiting for its output is cut. A handshake that ran out of
        time is cut at once."""
        if self.close_after or self.phase != OPEN:
            self.abort()
        else:
            self.deadline = monotonic() + LINGER_S
            self.close()

    def close(self) -> None:
        if self.closed or self.close_after:
            return
        if self.phase == OPEN:
            self._close_notify()
        RingConnection.close(self)

    def _close_notify(self) -> None:
        try:
            self.sslobj.unwrap()
        except (ssl.SSLError, OSError):
            pass  # it waits for the peer's close_notify, which we do not
        self._send_outgoing()


class KTLSTxConnection(TLSRingConnection):
    """The kernel encrypts; OpenSSL still decrypts what the ring receives (TLS 1.3)."""

    __slots__ = ()

    write = RingConnection.write
    write_parts = RingConnection.write_parts
    send_done = RingConnection.send_done  # past SWITCHING: no handshake check per send
    sendfile = RingConnection.sendfile  # splice: encrypted by the kernel, no copy through Python

    def _after_read(self) -> None:
        if self.outgoing.pending:
            # OpenSSL answered something (a KeyUpdate) with its own, now stale, write keys;
            # the kernel cannot follow: end the connection rather than corrupt it.
            logger.debug("TLS peer %s asked for a key update under kTLS; closing", self.client)
            self.outgoing.read()
            self.abort()

    def _close_notify(self) -> None:
        pass  # sent by _finish_close, after the queued output

    def _finish_close(self) -> None:
        if not self.lingering:
            self.server.tls.ktls.lib.rs_ktls_alert(self.fd, 1, 0)  # warning, close_notify
        RingConnection._finish_close(self)


class KTLSConnection(KTLSTxConnection):
    """Both directions in the kernel (TLS 1.2): the ring carries plaintext only. A non-data
    record (the peer's close_notify, or another alert) ends the receive with -EIO."""

    __slots__ = ()

    data_received = Connection.data_received

    def recv_ended(self, res: int) -> None:
        if res == -errno.EIO and not self.closed:
            self.recv_state = RECV_OFF
            self.close_notified()
            return
        RingConnection.recv_ended(self, res)
