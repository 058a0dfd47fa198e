"""The manifest: file digests, chain heads and report metadata, optionally signed with Ed25519.

The signature covers the canonical JSON of the manifest without its ``signature`` block. The
block embeds the signer's public key (PEM) so a verifier can check the signature alone, and
``verify(..., pubkey=...)`` additionally insists that this key is the trusted one.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .chain import VerifyReport, canonical
from .errors import ReportError

MANIFEST_FORMAT = "sagalens-report-manifest/1"
MANIFEST_SUFFIX = ".manifest.json"


def signed_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers."""
    return canonical({k: v for k, v in manifest.items() if k != "signature"}).encode("utf-8")


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM bytes (unencrypted PKCS#8)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ReportError(f"signing key is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ReportError("signing key must be an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ReportError(f"public key is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ReportError("public key must be an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def sign_manifest(manifest: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The manifest with a ``signature`` block added."""
    signature = key.sign(signed_bytes(manifest))
    return {
        **manifest,
        "signature": {
            "algorithm": "Ed25519",
            "public_key": public_pem(key.public_key()),
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }


def check_signature(
    manifest: Mapping[str, Any], trusted: Ed25519PublicKey | None = None
) -> VerifyReport:
    """Check the signature block, and that it was made with ``trusted`` when one is given."""
    report = VerifyReport()
    block = manifest.get("signature")
    if not block:
        if trusted is not None:
            report.problems.append("manifest is not signed but a trusted public key was given")
        else:
            report.warnings.append(
                "manifest is not signed: its digests are only as safe as the manifest itself"
            )
        return report
    try:
        if block.get("algorithm") != "Ed25519":
            raise ValueError(f"unsupported algorithm {block.get('algorithm')!r}")
        embedded = load_public_key(str(block["public_key"]).encode("ascii"))
        value = base64.b64decode(str(block["value"]), validate=True)
    except (ReportError, ValueError, KeyError, TypeError) as exc:
        report.problems.append(f"signature invalid: unreadable signature block ({exc})")
        return report
    key = embedded
    if trusted is not None:
        if public_pem(trusted) != public_pem(embedded):
            report.problems.append(
                "signature invalid: signed with a key other than the trusted key"
            )
        key = trusted
    try:
        key.verify(value, signed_bytes(manifest))
    except InvalidSignature:
        report.problems.append("signature invalid: manifest was altered after signing")
        return report
    report.checked.append(
        "Ed25519 signature of the manifest"
        + (" with the trusted key" if trusted else " (embedded key)")
    )
    return report
