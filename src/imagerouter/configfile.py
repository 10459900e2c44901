"""Reading TOML files into pydantic models, with errors that name the file, field and reason.

Shared by the config, the catalog and the mock farm's scenario files.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from imagerouter.errors import ConfigError

__all__ = ["field_path", "load_toml", "validate"]

ModelT = TypeVar("ModelT", bound=BaseModel)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is a ConfigError naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None


def field_path(loc: Sequence[str | int], prefix: str = "") -> str:
    """``("providers", "fal", "phases", 0, "at_s")`` → ``providers.fal.phases[0].at_s``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validate(
    model: type[ModelT], data: Any, *, file: str | None = None, prefix: str = ""
) -> ModelT:
    """Validate ``data`` as ``model``; the first problem becomes a ConfigError with its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [part for part in error["loc"] if not str(part).startswith("function-")]
        reason = error["msg"]
        if error["type"] == "extra_forbidden":
            reason = "unknown field"
        raise ConfigError(reason, file=file, field=field_path(loc, prefix) or None) from None
