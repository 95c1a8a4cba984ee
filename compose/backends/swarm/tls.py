"""One certificate authority per swarm run: the agents accept only the run's runner.

The CA's key never leaves the runner's results folder; the agents get their own
certificate (valid for every engine's address) and the CA certificate as swarm secrets.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=2)


@dataclass(frozen=True)
class RunCertificates:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def client_cert(self) -> Path:
        return self.folder / "runner-cert.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "runner-key.pem"

    @property
    def agent_cert(self) -> Path:
        return self.folder / "agent-cert.pem"

    @property
    def agent_key(self) -> Path:
        return self.folder / "agent-key.pem"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _usage(cert_sign: bool) -> x509.KeyUsage:
    """Strict verifiers (urllib3 2, Python 3.13) want key usages stated."""
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue(folder: Path, run_id: str, agent_addresses: list[str]) -> RunCertificates:
    """A CA, a server certificate for the agents (every engine address as an IP name)
    and a client certificate for the runner, written into ``folder`` (mode 0700)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"p2plab run {run_id} CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + VALID_FOR)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_usage(cert_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    certs = RunCertificates(folder)

    def leaf(common: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName],
             cert_path: Path, key_path: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + VALID_FOR)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(_usage(cert_sign=False), critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)

    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf(f"p2plab run {run_id} agent", ExtendedKeyUsageOID.SERVER_AUTH,
         [x509.IPAddress(ipaddress.ip_address(a)) for a in agent_addresses],
         certs.agent_cert, certs.agent_key)
    leaf(f"p2plab run {run_id} runner", ExtendedKeyUsageOID.CLIENT_AUTH, [],
         certs.client_cert, certs.client_key)
    return certs
