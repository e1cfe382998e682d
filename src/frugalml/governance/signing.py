"""Ed25519 signatures over canonical JSON: signed tree heads of the audit chain, server receipts.

Two kinds of key sign audit anchors:

- the **witness** key of the governance server (``make server``): it lives in the server's auth folder
  (mode 0600, owned by the account that runs the server); users only ever see its public key. Anchors it signed
  cannot be forged by anyone who merely writes to the project.
- the **local** key (``conf/local/audit_signing.key``, git-ignored, mode 0600), used when no server is
  configured. It catches edits by anyone who can write ``data/`` but not ``conf/local``; whoever holds it can
  re-sign. ``frugalml audit verify`` says which of the two vouches for a chain.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from frugalml.errors import AuditIntegrityError

SIGNATURE_FIELDS = ("sig", "signer")


def canonical(payload: dict[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, UTF-8, without the signature fields.

    Args:
        payload: A JSON object.

    Returns:
        Canonical JSON bytes.
    """
    body = {k: v for k, v in payload.items() if k not in SIGNATURE_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def public_key_text(key: Ed25519PublicKey) -> str:
    """A public key as base64 of its 32 raw bytes.

    Args:
        key: The public key.

    Returns:
        The text form.
    """
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def fingerprint_of(public_text: str) -> str:
    """16 hex digits of the SHA-256 of a public key (what anchors and docs name).

    Args:
        public_text: :func:`public_key_text` output.

    Returns:
        The fingerprint.
    """
    return hashlib.sha256(base64.b64decode(public_text)).hexdigest()[:16]


def load_public_key(public_text: str) -> Ed25519PublicKey:
    """Parse :func:`public_key_text` output.

    Args:
        public_text: base64 of 32 bytes.

    Returns:
        The key.

    Raises:
        AuditIntegrityError: Not a key.
    """
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(public_text, validate=True))
    except (ValueError, TypeError) as error:
        raise AuditIntegrityError(f"not an ed25519 public key: {error}") from None


class SigningKey:
    """A private ed25519 key with the name of its role (``local`` or ``witness``)."""

    def __init__(self, key: Ed25519PrivateKey, role: str) -> None:
        self._key = key
        self.role = role
        self.public_text = public_key_text(key.public_key())
        self.fingerprint = fingerprint_of(self.public_text)

    @classmethod
    def load_or_create(cls, path: str | Path, role: str) -> SigningKey:
        """Read the key at ``path``, creating it (mode 0600, folder 0700) when missing.

        Args:
            path: The key file (raw 32 bytes, base64).
            role: ``local`` or ``witness``.

        Returns:
            The key.

        Raises:
            AuditIntegrityError: The file exists but is not a key (never silently replaced).
        """
        path = Path(path)
        if path.exists():
            try:
                raw = base64.b64decode(path.read_text().strip(), validate=True)
                return cls(Ed25519PrivateKey.from_private_bytes(raw), role)
            except (ValueError, TypeError):
                raise AuditIntegrityError(f"the {role} signing key {path} is damaged; it is never replaced "
                                          "silently: restore it from a backup") from None  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())  # fmt: skip
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(base64.b64encode(raw).decode("ascii") + "\n")
        return cls(key, role)

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Sign a JSON object.

        Args:
            payload: The object (its ``sig``/``signer`` fields, if any, are replaced).

        Returns:
            The object with ``signer`` (``role:fingerprint``) and ``sig`` (base64).
        """
        body = {k: v for k, v in payload.items() if k not in SIGNATURE_FIELDS}
        signature = self._key.sign(canonical(body))
        return {**body, "signer": f"{self.role}:{self.fingerprint}", "sig": base64.b64encode(signature).decode()}


class TrustedKeys:
    """The public keys whose signatures are accepted, by fingerprint, with their role."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, Ed25519PublicKey]] = {}

    def add(self, role: str, public_text: str) -> None:
        """Trust a key.

        Args:
            role: ``local`` or ``witness``.
            public_text: The public key.
        """
        self.keys[fingerprint_of(public_text)] = (role, load_public_key(public_text))

    def roles(self) -> set[str]:
        """Roles of the trusted keys.

        Returns:
            E.g. ``{"witness"}``.
        """
        return {role for role, _ in self.keys.values()}

    def check(self, signed: Any, *, roles: set[str] | None = None) -> str | None:
        """Why a signed object is not acceptable, or None when it is.

        Args:
            signed: A parsed JSON value (anything: malformed input is reported, never raised).
            roles: Accept only keys of these roles (default: any trusted key).

        Returns:
            None, or the reason (malformed, unknown key, wrong role, bad signature).
        """
        if (
            not isinstance(signed, dict)
            or not isinstance(signed.get("sig"), str)
            or not isinstance(signed.get("signer"), str)
        ):
            return "not a signed object (no signer/sig)"
        role, _, fingerprint = signed["signer"].partition(":")
        known = self.keys.get(fingerprint)
        if known is None:
            return f"signed by an unknown key {signed['signer']!r}"
        if known[0] != role or (roles is not None and role not in roles):
            return f"signed by a {role or '?'} key where {sorted(roles or {known[0]})} is required"
        try:
            known[1].verify(base64.b64decode(signed["sig"], validate=True), canonical(signed))
        except (InvalidSignature, ValueError, TypeError):
            return "the signature does not match (forged or edited)"
        return None
