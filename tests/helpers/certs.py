"""Certificates for the TLS tests, made with trustme and written to files (servers take file paths).

One root CA. The server certificate (127.0.0.1 and localhost) is issued by an intermediate CA, and the
server's cert file holds the leaf and then the intermediate, so a client that trusts only the root is
served only if the server sends the whole chain. The client certificate (for mTLS) is issued by the root,
so ``--ssl-ca-certs ca.pem`` verifies it. The server key is also written encrypted, for
``--ssl-keyfile-password``.

    files = make_tls_files(tmp_dir)
    server = serve(app, *files.server_args())
    ctx = files.client_context(client_cert=True, max_version=ssl.TLSVersion.TLSv1_2)
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

PASSWORD = "correct horse battery staple"
CLIENT_NAME = "ringserve test client"
_PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class TLSFiles:
    ca: Path  # the root CA certificate: what clients (and --ssl-ca-certs) trust
    cert: Path  # server leaf + intermediate CA, PEM
    key: Path  # server key, PEM, unencrypted
    key_encrypted: Path  # the same key encrypted with PASSWORD
    client_cert: Path  # client leaf, issued by the root
    client_key: Path
    password: str = PASSWORD

    def server_args(self, *extra: str, encrypted: bool = False) -> tuple[str, ...]:
        """The flags that make a server speak TLS with these files (plus `extra`)."""
        key = ["--ssl-keyfile", str(self.key_encrypted), "--ssl-keyfile-password", self.password] if encrypted \
            else ["--ssl-keyfile", str(self.key)]
        return ("--ssl-certfile", str(self.cert), *key, *extra)

    def mtls_args(self, cert_reqs: int = ssl.CERT_REQUIRED, *extra: str) -> tuple[str, ...]:
        return self.server_args("--ssl-ca-certs", str(self.ca), "--ssl-cert-reqs", str(int(cert_reqs)), *extra)

    def client_context(self, *, client_cert: bool = False, min_version: ssl.TLSVersion | None = None,
                       max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A verifying client context that trusts only the root CA (optionally with the client cert)."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if client_cert:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx

    @property
    def server_leaf_pem(self) -> str:
        return pem_certs(self.cert.read_text())[0]

    @property
    def client_leaf_pem(self) -> str:
        return pem_certs(self.client_cert.read_text())[0]

    @property
    def client_subject(self) -> str:
        """The client certificate's subject as an RFC 4514 string (most specific RDN first)."""
        return x509.load_pem_x509_certificate(self.client_cert.read_bytes()).subject.rfc4514_string()


def pem_certs(text: str) -> list[str]:
    """The certificates in a PEM text, each normalised (base64 re-wrapped, no surrounding whitespace)."""
    return [normalise_pem(m.group(0)) for m in _PEM_RE.finditer(text)]


def normalise_pem(pem: str) -> str:
    body = "".join(pem.replace("-----BEGIN CERTIFICATE-----", "").replace("-----END CERTIFICATE-----", "").split())
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(body[i:i + 64] for i in range(0, len(body), 64)) \
        + "\n-----END CERTIFICATE-----"


def make_tls_files(directory: Path) -> TLSFiles:
    directory.mkdir(parents=True, exist_ok=True)
    root = trustme.CA(organization_name="ringserve tests")
    intermediate = root.create_child_ca()
    server = intermediate.issue_cert("127.0.0.1", "localhost")
    client = root.issue_cert("client@example.org", common_name=CLIENT_NAME, organization_name="ringserve tests",
                             organization_unit_name="mtls")

    files = TLSFiles(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        key_encrypted=directory / "server-encrypted.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    root.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files.key))
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    files.key_encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    ))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    return files
