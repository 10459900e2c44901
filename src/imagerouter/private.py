"""Files that hold secrets are the server user's alone: directories 0700, files 0600; URLs
that hold a password (in their user info or a query parameter) show it as ``***``
(:func:`redact_url`).

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
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "SECRET_PARAMS",
    "private_dir",
    "private_file",
    "redact_url",
    "tighten",
]

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


#: Query parameters whose value is a credential (names compared case-insensitively), as
#: libpq (``password``, ``sslpassword``), redis-py and many services name them.
SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "sslpassword",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "auth",
        "auth_token",
        "api_key",
        "apikey",
        "key",
    }
)
REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: the user info's, and the value of every
    query parameter that names a credential (:data:`SECRET_PARAMS`; the others, such as
    ``schema``, stay as they were). A store's or Redis's URL as errors, logs and status pages
    show it."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[": where a password ends cannot be told
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://…" if sep else "…"
    netloc = parts.netloc
    if parts.password is not None:
        # the host as written (an IPv6 literal keeps its brackets), after the last "@"
        netloc = f"{parts.username or ''}:{REDACTED}@{netloc.rpartition('@')[2]}"
    query = _redact_query(parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_query(query: str) -> str:
    """``query`` with the value of each credential parameter replaced, the rest untouched
    (not decoded and encoded again)."""
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if sep and value and unquote_plus(name).strip().lower() in SECRET_PARAMS:
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return "&".join(pairs)
