"""Opaque bearer tokens (the bootstrap admin credential): made here, stored only as hashes.

Tokens carry 256 random bits, so a fast SHA-256 digest is a safe at-rest form (slow
password hashes guard low-entropy secrets). A token is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "new_token", "parse_bearer"]

TOKEN_PREFIX = "iotman_pat_"  # noqa: S105 - a public prefix, not a secret


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_bearer(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None when absent or of another scheme."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
