"""Unguessable identifiers for jobs, accounts and API keys."""

from __future__ import annotations

import base64
import secrets

__all__ = ["new_id"]


def new_id(prefix: str, length: int = 20) -> str:
    """``prefix`` + ``_`` + ``length`` random lowercase base32 characters (5 bits each)."""
    raw = secrets.token_bytes((length * 5 + 7) // 8)
    return f"{prefix}_{base64.b32encode(raw).decode('ascii').lower()[:length]}"
