"""Checks of the TLS files a configuration names, done the way the connection will use them.

Readable is not enough: a CA bundle that is not PEM, or a client key that does not match
its certificate, would fail only at the first connection, maybe hours later. Loading
them into an :class:`ssl.SSLContext` now (what aiohttp and amqp do later)
finds that at start, and names the option.
"""

from __future__ import annotations

import ssl

from k2hr3_osnl.rabbit import seam


def problems(
    group: str,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    names: tuple[str, str, str] = ("ca_file", "cert_file", "key_file"),
) -> list[str]:
    """``[group] option: what is wrong`` for each file that cannot be used."""
    found: list[str] = []
    ca_name, cert_name, key_name = names
    for name, path in ((ca_name, ca_file), (cert_name, cert_file), (key_name, key_file)):
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as error:
                found.append(f"[{group}] {name}: {path} is not readable ({error.strerror})")
    if found:
        return found
    if ca_file:
        try:
            ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, ValueError) as error:
            found.append(f"[{group}] {ca_name}: {ca_file} holds no PEM certificate ({error})")
    if cert_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            # An encrypted key would make OpenSSL prompt on the terminal: fail instead.
            context.load_cert_chain(cert_file, key_file or None, password=_no_password)
        except (ssl.SSLError, ValueError) as error:
            what = f"{cert_file} and {key_file}" if key_file else cert_file
            found.append(
                f"[{group}] {cert_name}: {what}: not a PEM certificate with its "
                f"matching private key ({error})"
            )
    return found


def ssl_versions() -> frozenset[str]:
    """The ``[oslo_messaging_rabbit] ssl_version`` values the rabbit driver accepts.

    Read from the driver itself, so the check never disagrees with it; empty (no check)
    if a future oslo.messaging keeps them elsewhere.
    """
    return seam.ssl_protocols()


def _no_password() -> bytes:
    raise ValueError("the private key is encrypted; k2hr3-osnl needs an unencrypted key")
