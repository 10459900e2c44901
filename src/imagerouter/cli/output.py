"""Where every command writes: ``console`` (stdout), ``err_console`` (stderr), and ``fail``.

The commands report a problem the same way: ``error: …`` on stderr, then exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

__all__ = ["console", "content_type", "err_console", "fail", "not_imagerouter"]

console = Console()
err_console = Console(stderr=True)


def fail(problem: object) -> NoReturn:
    """Print ``error: problem`` on stderr and exit with status 2.

    The problem is printed as text, never read as rich markup, so that a hint such as
    ``pip install 'imagerouter-framework[loadtest]'`` keeps its brackets, and on one line (the
    terminal wraps it, rich does not cut it at 80 columns), so that it can be copied whole.
    """
    err_console.print(f"[red]error:[/red] {escape(str(problem))}", soft_wrap=True)
    sys.exit(2)


def content_type(headers: Mapping[str, str]) -> str:
    """An answer's media type, lower case, without its parameters ("" when it names none)."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


def not_imagerouter(url: object, request: str, status: int, headers: Mapping[str, str]) -> str:
    """Why an answer is none an imagerouter server gives (an HTML page, another API's error):
    the URL, the request, its status and content type, never the body."""
    kind = content_type(headers) or "no content type"
    return (
        f"{url} did not answer as an imagerouter server: {request} gave {status} ({kind}); "
        "is --url right?"
    )
