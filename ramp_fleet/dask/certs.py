"""Throw-away TLS material for a Dask cluster: a CA and one certificate it signed.

Dask's TLS is mutual: the scheduler, the workers and the clients each show a
certificate signed by the CA, and refuse peers that do not. For a cluster on
one machine (``ramp-fleet dask local --tls``, the tests) one certificate for
everybody is enough; a real cluster gets its certificates from the Pulumi
program (pulumi-tls).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TLSFiles:
    ca_file: Path
    cert: Path
    key: Path

    def as_config(self) -> dict[str, str]:
        """The ``dask_tls`` mapping of an event config."""
        return {"ca_file": str(self.ca_file), "cert": str(self.cert), "key": str(self.key)}

    def cli_options(self) -> list[str]:
        """The ``dask scheduler`` / ``dask worker`` options that use these files."""
        return ["--tls-ca-file", str(self.ca_file), "--tls-cert", str(self.cert),
                "--tls-key", str(self.key)]


def write_tls_files(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                    days: int = 30, prefix: str = "") -> TLSFiles:
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` (mode 600) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = new_ca("ramp-fleet dask CA", days)
    key, cert = ca.issue("ramp-fleet dask", hosts, days,
                         (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH))
    files = TLSFiles(folder / f"{prefix}ca.pem", folder / f"{prefix}cert.pem",
                     folder / f"{prefix}key.pem")
    files.ca_file.write_bytes(ca.cert_pem)
    files.cert.write_bytes(cert)
    write_private(files.key, key)
    return files


@dataclass(frozen=True)
class Authority:
    """A certificate authority held in memory: it signs, then is forgotten."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, hosts: tuple[str, ...], days: int,
              usages: tuple[x509.ObjectIdentifier, ...]) -> tuple[bytes, bytes]:
        """A new key and a certificate for it signed here, both PEM: ``(key, cert)``."""
        start, end = _validity(days)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def new_ca(common_name: str, days: int) -> Authority:
    start, end = _validity(days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert)


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (mode 600 from the start)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    path.chmod(0o600)
