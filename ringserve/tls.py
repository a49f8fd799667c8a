"""TLS settings for a worker and what each TLS connection tells the application.

`TLSSettings.load(config)` builds the one ssl.SSLContext a worker serves with (uvicorn's
flags: certificate, key and its password, client-certificate checks, ciphers; ALPN
http/1.1; no renegotiation) and decides about kernel TLS (ringserve/ktls.py). Errors
become ConfigError naming the flag and the fix.

`ConnectionTLS` is one handshake's facts, computed once per connection: the ASGI `tls`
extension (https://asgi.readthedocs.io/en/latest/extensions.html#tls) and the WSGI
environ keys that mod_ssl and gunicorn users know (HTTPS, SSL_PROTOCOL, SSL_CIPHER,
SSL_CLIENT_*). The transports (uring_tls.TLSRingConnection, aio.StreamConnection)
create it after the handshake.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import Any

from ringserve.config import ConfigError

logger = logging.getLogger("ringserve.error")

TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# RFC 4514 short names for the attributes Python's getpeercert() spells out
_RDN_NAMES = {
    "commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
    "stateOrProvinceName": "ST", "localityName": "L", "streetAddress": "STREET",
    "domainComponent": "DC", "userId": "UID",
}


class TLSSettings:
    """What every TLS connection of this worker shares."""

    def __init__(self, context: ssl.SSLContext, server_cert: str | None, ktls: Any,
                 handshake_timeout: float) -> None:
        self.context = context
        self.server_cert = server_cert
        self.cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
        self.ktls = ktls  # ktls.KernelTLS, or None when TLS stays in OpenSSL
        self.handshake_timeout = handshake_timeout

    @classmethod
    def load(cls, config: Any, backend_name: str) -> TLSSettings | None:
        if config.ssl_certfile is None:
            return None
        context = create_context(config)
        from ringserve.ktls import KernelTLS

        ktls = KernelTLS.decide(config, context, backend_name)
        return cls(context, _first_cert(config.ssl_certfile), ktls, float(config.timeout_tls_handshake_s))


def create_context(config: Any) -> ssl.SSLContext:
    """The server's SSLContext from the --ssl-* options (uvicorn's semantics)."""
    for flag, path in (("--ssl-certfile", config.ssl_certfile), ("--ssl-keyfile", config.ssl_keyfile),
                       ("--ssl-ca-certs", config.ssl_ca_certs)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{flag} {path!r}: no such file. Pass the path of a PEM file.")
    protocol = config.ssl_version
    if protocol in (ssl.PROTOCOL_TLS, ssl.PROTOCOL_TLS_CLIENT):  # deprecated / client-only: the server flavour
        protocol = ssl.PROTOCOL_TLS_SERVER
    try:
        context = ssl.SSLContext(protocol)
    except ValueError:
        raise ConfigError(f"--ssl-version {config.ssl_version} is not a protocol this Python's ssl "
                          f"module knows; use {int(ssl.PROTOCOL_TLS_SERVER)} (PROTOCOL_TLS_SERVER).") from None
    password = config.ssl_keyfile_password
    if password is None:  # never OpenSSL's prompt on the terminal (or on a closed stdin)
        password = _no_password(config.ssl_keyfile or config.ssl_certfile)
    try:
        context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, password)
    except ssl.SSLError as exc:
        raise ConfigError(_key_problem(config, exc)) from None
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ca_certs:
        try:
            context.load_verify_locations(config.ssl_ca_certs)
        except ssl.SSLError as exc:
            raise ConfigError(f"--ssl-ca-certs {config.ssl_ca_certs!r}: no usable CA certificate "
                              f"in it ({exc.reason or exc}); pass PEM certificates.") from None
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise ConfigError(f"--ssl-ciphers {config.ssl_ciphers!r}: OpenSSL matches no cipher; "
                              "see 'openssl ciphers -v' for the names.") from None
    context.set_alpn_protocols(["http/1.1"])
    # Renegotiation is a DoS lever and would change keys under kTLS: refuse it.
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0x40000000)
    return context


def _no_password(path: str) -> Any:
    def ask() -> str:
        raise ConfigError(f"the private key in {path!r} is encrypted: pass its password with "
                          "--ssl-keyfile-password (or RINGSERVE_SSL_KEYFILE_PASSWORD).")
    return ask


def _key_problem(config: Any, exc: ssl.SSLError) -> str:
    if _first_cert(config.ssl_certfile) is None:
        return (f"--ssl-certfile {config.ssl_certfile!r}: no PEM certificate in it "
                "('-----BEGIN CERTIFICATE-----'); pass the server certificate in PEM.")
    reason = (exc.reason or "").upper()
    if "BAD_DECRYPT" in reason or ("PEM" in str(exc) and config.ssl_keyfile_password):
        return ("--ssl-keyfile-password does not decrypt the key in "
                f"{config.ssl_keyfile or config.ssl_certfile!r}: check the password.")
    if "KEY_VALUES_MISMATCH" in reason:
        return (f"the key {config.ssl_keyfile!r} does not belong to the certificate "
                f"{config.ssl_certfile!r}: pass the matching --ssl-keyfile.")
    if config.ssl_keyfile is None:
        return (f"--ssl-certfile {config.ssl_certfile!r}: no private key in it ({exc.reason or exc}); "
                "pass the key with --ssl-keyfile.")
    return (f"cannot load the certificate {config.ssl_certfile!r} with the key {config.ssl_keyfile!r}: "
            f"{exc.reason or exc}. Both must be PEM files (an encrypted key needs --ssl-keyfile-password).")


def _first_cert(path: str) -> str | None:
    with open(path, errors="replace") as f:
        text = f.read()
    start = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        return None
    return text[start:end + len("-----END CERTIFICATE-----")] + "\n"


class ConnectionTLS:
    """One finished handshake, as the application sees it."""

    __slots__ = ("asgi", "wsgi", "ktls")

    def __init__(self, settings: TLSSettings, sslobj: Any) -> None:
        version = sslobj.version() or ""
        cipher = (sslobj.cipher() or ("", "", 0))[0]
        der = sslobj.getpeercert(binary_form=True)
        chain = _peer_chain(sslobj, der)
        name = _rfc4514(sslobj.getpeercert().get("subject", ())) if der else None
        self.ktls: dict | None = None  # {"tx": True, "rx": bool} once the kernel took over
        self.asgi = {
            "server_cert": settings.server_cert,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": None,  # a certificate that fails the checks fails the handshake
            "tls_version": TLS_VERSIONS.get(version),
            "cipher_suite": settings.cipher_ids.get(cipher),
        }
        env = {"HTTPS": "on", "SSL_PROTOCOL": version, "SSL_CIPHER": cipher,
               "SSL_CLIENT_VERIFY": "SUCCESS" if der else "NONE"}
        if der:
            env["SSL_CLIENT_CERT"] = chain[0]
            env["SSL_CLIENT_S_DN"] = name or ""
        self.wsgi = env

    def extensions(self, base: dict) -> dict:
        """A scope's extensions (HTTP or websocket) over this connection."""
        ext = dict(base)
        ext["tls"] = self.asgi
        if self.ktls is not None:
            ext["ringserve.ktls"] = self.ktls
        return ext


def _peer_chain(sslobj: Any, der: bytes | None) -> list[str]:
    if not der:
        return []
    verified = getattr(sslobj, "get_verified_chain", None)  # Python 3.13+
    if verified is not None:
        try:
            return [ssl.DER_cert_to_PEM_cert(c.public_bytes(ssl._ssl.ENCODING_DER)) for c in verified()]
        except Exception:
            pass
    return [ssl.DER_cert_to_PEM_cert(der)]


def _rfc4514(subject: Any) -> str:
    """getpeercert()'s subject (RDNs in certificate order) as an RFC 4514 string (reversed)."""
    rdns = []
    for rdn in reversed(subject):
        rdns.append("+".join(f"{_RDN_NAMES.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(rdns)


def _escape(value: str) -> str:
    out = "".join("\\" + ch if ch in ',+"\\<>;=' else ch for ch in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out
