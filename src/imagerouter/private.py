"""Files that hold secrets are the server user's alone: directories 0700, files 0600; URLs
that hold a password show it as ``***`` (:func:`redact_url`).

The data directory holds the SQLite database (API key hashes, webhook signing secrets, the
ledger) and the media signing key. Each is created private, and one found looser (made by an
older version, or by hand) is tightened when the server or a command opens it, with one
warning naming it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file", "redact_url", "tighten"]

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def tighten(path: Path, mode: int) -> bool:
    """Drop the group and other bits of an existing ``path`` that ``mode`` does not allow;
    True when it had to (logged once, as the next look finds it tight)."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    loose = current & 0o077 & ~mode
    if not loose:
        return False
    os.chmod(path, current & ~loose)
    log.warning(
        "%s was mode %s, readable beyond its owner; tightened to %s",
        path,
        oct(current),
        oct(current & ~loose),
    )
    return True


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter: created 0700 (its missing parents as
    usual), or tightened to 0700 when it exists with group or other bits."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        # mkdir's mode passes through the umask, which may not grant even the owner's bits
        os.chmod(path, DIR_MODE)
    else:
        tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """``path`` as a file only its owner can read: created empty with mode 0600 when missing
    (so nothing is ever written to it while it is looser), tightened when it exists."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(path, FILE_MODE)
    else:
        os.close(fd)
    return path


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: a store's or Redis's URL as errors,
    logs and status pages show it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
