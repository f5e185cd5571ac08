"""The operator's C2PA signing credentials (jobs.provenance): given, or made on first use.

Given: ATELIER_C2PA_KEY_FILE (a PEM private key: EC P-256/P-384/P-521, Ed25519 or RSA) and ATELIER_C2PA_CERT_FILE
(the PEM certificate chain, signing certificate first, then its CA certificates; c2pa refuses a self-signed
signing certificate). ATELIER_C2PA_TRUST_FILE optionally names the CA certificates `atelier verify` trusts;
by default it trusts the chain's last certificate.

Not given: on first use a local CA and an operator certificate it issues are written to `<data dir>/c2pa/`
(the key readable by its owner only) and used from then on; every process on the data folder shares them. Images
are always signed. Such a chain proves "this installation made it", not who runs it: an operator who wants the
latter configures a certificate from a CA people trust. The key is never logged or printed.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path

from jobs.provenance import Credentials

CA_FILE, CHAIN_FILE, KEY_FILE = "ca.pem", "chain.pem", "operator.key"
VALID_DAYS = 3650


def load_credentials(
    *, key_file: Path | None, cert_file: Path | None, trust_file: Path | None, local_dir: Path
) -> Credentials:
    """The configured key and chain, or the local ones in `local_dir` (made now when absent). ValueError when
    only one of the two files is configured, or a file holds no usable key or certificate."""
    if (key_file is None) != (cert_file is None):
        raise ValueError("set both ATELIER_C2PA_KEY_FILE and ATELIER_C2PA_CERT_FILE, or neither")
    if key_file is None or cert_file is None:
        _ensure_local(local_dir)
        key_file, cert_file, trust_file = local_dir / KEY_FILE, local_dir / CHAIN_FILE, local_dir / CA_FILE
    key_pem, chain_pem = Path(key_file).read_bytes(), Path(cert_file).read_bytes()
    alg = _algorithm(key_pem)
    last = _last_certificate(chain_pem)
    trust_pem = Path(trust_file).read_bytes() if trust_file else last
    return Credentials(chain_pem=chain_pem, key_pem=key_pem, trust_pem=trust_pem, alg=alg)


def load_trust(*, cert_file: Path | None, trust_file: Path | None, local_dir: Path) -> bytes | None:
    """The CA certificates a check trusts, as `load_credentials` would give them, without making anything:
    None on an installation that has not signed anything yet and has no certificate configured."""
    if trust_file is not None:
        return Path(trust_file).read_bytes()
    if cert_file is not None:
        return _last_certificate(Path(cert_file).read_bytes())
    local = local_dir / CA_FILE
    return local.read_bytes() if local.is_file() else None


def _algorithm(key_pem: bytes) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError("the C2PA key file holds no unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in algs:
            raise ValueError(f"C2PA signs with P-256, P-384 or P-521 EC keys, not {key.curve.name}")
        return algs[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ValueError("the C2PA key must be an EC, Ed25519 or RSA key")


def _last_certificate(chain_pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certificates = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise ValueError("the C2PA certificate file holds no PEM certificate chain") from None
    return certificates[-1].public_bytes(Encoding.PEM)


def _ensure_local(folder: Path) -> None:
    """Make the local CA and operator certificate once. Built in a temporary folder and renamed into place, so
    two processes starting at once end up using the same one (the loser's is dropped)."""
    if (folder / KEY_FILE).is_file():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".c2pa-", dir=folder.parent))
    try:
        ca_pem, chain_pem, key_pem = _local_chain()
        (staging / CA_FILE).write_bytes(ca_pem)
        (staging / CHAIN_FILE).write_bytes(chain_pem)
        descriptor = os.open(staging / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key_pem)
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / KEY_FILE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _local_chain() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, operator certificate + CA certificate, operator key), all PEM, EC P-256."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Atelier installation"),
            ]
        )

    def usage(*, sign_certificates: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not sign_certificates,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=sign_certificates,
            crl_sign=sign_certificates,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=VALID_DAYS)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Atelier local CA"))
        .issuer_name(name("Atelier local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    operator = (
        x509.CertificateBuilder()
        .subject_name(name("Atelier operator"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca_pem, operator.public_bytes(pem) + ca_pem, key_pem
