"""config/tls.py: TLS files checked at start the way the connection will load them.

Each problem is one line naming the section and the option, with the file; a missing
file is said as such (and nothing more is tried), a file that is not PEM, a key that
does not match its certificate, or an encrypted key (OpenSSL would prompt on the
terminal) each named before the first connection, not hours later.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.tls_certs import Pki, make_pki

from k2hr3_osnl.config import tls


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_ca_and_a_client_certificate_with_its_key_are_fine(pki: Pki) -> None:
    assert tls.problems("k2hr3", str(pki.ca), str(pki.client_cert), str(pki.client_key)) == []


def test_no_files_named_is_no_problem() -> None:
    assert tls.problems("k2hr3", None, None, None) == []
    assert tls.problems("k2hr3", "", "", "") == []


def test_a_certificate_holding_its_own_key_needs_no_key_file(pki: Pki, tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    both.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    assert tls.problems("k2hr3", None, str(both), None) == []


def test_each_missing_file_is_named_and_nothing_else_is_tried(tmp_path: Path) -> None:
    ca, cert, key = (str(tmp_path / name) for name in ("ca.pem", "client.pem", "client.key"))
    assert tls.problems("oslo_messaging_rabbit", ca, cert, key) == [
        f"[oslo_messaging_rabbit] ca_file: {ca} is not readable (No such file or directory)",
        f"[oslo_messaging_rabbit] cert_file: {cert} is not readable (No such file or directory)",
        f"[oslo_messaging_rabbit] key_file: {key} is not readable (No such file or directory)",
    ]


def test_the_options_go_by_the_names_the_section_gives_them(tmp_path: Path) -> None:
    ca = str(tmp_path / "ca.pem")
    names = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
    assert tls.problems("oslo_messaging_rabbit", ca, None, None, names) == [
        f"[oslo_messaging_rabbit] ssl_ca_file: {ca} is not readable (No such file or directory)"
    ]


def test_a_ca_file_that_is_not_pem_is_named(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    [problem] = tls.problems("k2hr3", str(ca), None, None)
    assert problem.startswith(f"[k2hr3] ca_file: {ca} holds no PEM certificate (")


def test_a_key_of_another_certificate_is_named_with_both_files(pki: Pki) -> None:
    [problem] = tls.problems("k2hr3", None, str(pki.client_cert), str(pki.server_key))
    assert problem.startswith(
        f"[k2hr3] cert_file: {pki.client_cert} and {pki.server_key}: not a PEM certificate "
        "with its matching private key ("
    )


def test_a_certificate_without_a_key_is_named_alone(pki: Pki) -> None:
    [problem] = tls.problems("k2hr3", None, str(pki.client_cert), None)
    assert problem.startswith(
        f"[k2hr3] cert_file: {pki.client_cert}: not a PEM certificate with its matching "
        "private key ("
    )


def test_an_encrypted_key_is_refused_rather_than_prompted_for(pki: Pki, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    command = ["openssl", "pkey", "-in", pki.client_key, "-aes256", "-passout", "pass:x"]
    subprocess.run([*command, "-out", encrypted], check=True, capture_output=True)
    [problem] = tls.problems("k2hr3", None, str(pki.client_cert), str(encrypted))
    assert "the private key is encrypted; k2hr3-osnl needs an unencrypted key" in problem
    assert problem.startswith(f"[k2hr3] cert_file: {pki.client_cert} and {encrypted}: ")
