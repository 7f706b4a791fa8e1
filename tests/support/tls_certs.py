"""A throw-away PKI made with the ``openssl`` command: a CA, a server and a client certificate.

The server certificate is for ``localhost`` and ``127.0.0.1``; the client one is what
k2hr3-osnl presents to RabbitMQ or K2HR3. EC keys, so that making them takes
milliseconds.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLIENT_CN = "k2hr3-osnl-client"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, require_client_cert: bool = True) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.load_verify_locations(self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _issue(
    directory: Path, name: str, subject: str, extensions: str, days: int = 2
) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    ext = directory / f"{name}.ext"
    ext.write_text(
        extensions + "\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid,issuer\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", f"{name}.csr", "-subj", subject, cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", str(days), "-out", cert, "-extfile", ext, cwd=directory,
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=k2hr3-osnl test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory,
    )  # fmt: skip
    server_cert, server_key = _issue(
        directory,
        "server",
        "/CN=localhost",
        "subjectAltName = DNS:localhost, IP:127.0.0.1\nextendedKeyUsage = serverAuth",
    )
    client_cert, client_key = _issue(
        directory, "client", f"/CN={CLIENT_CN}", "extendedKeyUsage = clientAuth"
    )
    return Pki(directory / "ca.pem", server_cert, server_key, client_cert, client_key)


def client_certificate(directory: Path, name: str, cn: str, days: int = 2) -> tuple[Path, Path]:
    """Another client certificate from the CA of ``make_pki(directory)``: ``(cert, key)``.

    ``days=-1`` makes one that expired yesterday.
    """
    return _issue(directory, name, f"/CN={cn}", "extendedKeyUsage = clientAuth", days)
