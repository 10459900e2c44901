"""Reading TOML files into pydantic models, with errors that name the file, field and reason;
and finding a file by the name of a bundled one.

Shared by the config, the catalog and the scenario files of the farm, the simulator and the
load tests (``docs/scenarios.md``: which tool reads which).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from imagerouter.errors import ConfigError

__all__ = ["Bundled", "Resolved", "field_path", "load_toml", "resolve_bundled", "validate"]

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


@dataclass(frozen=True, slots=True)
class Bundled:
    """Files one tool ships: what they are, the directory they live in, and the suffix that
    ends their names (``launch-week.loadtest.toml`` is bundled load-test scenario
    ``launch-week``)."""

    #: What a file holds, for messages: ``"farm scenario"``.
    what: str
    directory: Path
    suffix: str = ".toml"

    def names(self) -> list[str]:
        """The bundled names, sorted."""
        return sorted(
            p.name.removesuffix(self.suffix) for p in self.directory.glob(f"*{self.suffix}")
        )

    def path(self, name: str) -> Path:
        """Where the bundled file ``name`` would be."""
        return self.directory / f"{name}{self.suffix}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A file found by :func:`resolve_bundled`: its path, its name (the file name without the
    kind's suffix) and whether it is a bundled one."""

    path: Path
    name: str
    bundled: bool


def _name_of(file_name: str, bundles: Sequence[Bundled]) -> str:
    """``launch-week.loadtest.toml`` → ``launch-week``: the longest known suffix comes off."""
    for suffix in sorted({b.suffix for b in bundles} | {".toml"}, key=len, reverse=True):
        if file_name.endswith(suffix) and len(file_name) > len(suffix):
            return file_name.removesuffix(suffix)
    return file_name


def resolve_bundled(
    reference: str | os.PathLike[str],
    *bundles: Bundled,
    relative_to: str | os.PathLike[str] | None = None,
) -> Resolved:
    """The file ``reference`` names: the one resolver of scenario names and paths.

    In order: a path (it has a ``/`` or ends in ``.toml``) relative to ``relative_to`` (the
    directory of the file that holds the reference), when that file exists; an existing file;
    then a bare name (with or without its suffix) in each of ``bundles`` in turn.

    Raises:
        ConfigError: naming the reference and listing every bundled name.
    """
    text = os.fspath(reference)
    if relative_to is not None and ("/" in text or text.endswith(".toml")):
        beside = Path(relative_to) / text
        if beside.is_file():
            return Resolved(beside, _name_of(beside.name, bundles), bundled=False)
    path = Path(text)
    if path.is_file():
        return Resolved(path, _name_of(path.name, bundles), bundled=False)
    if path.parent == Path():
        name = _name_of(path.name, bundles)
        for bundle in bundles:
            if bundle.path(name).is_file():
                return Resolved(bundle.path(name), name, bundled=True)
    what = " or ".join(bundle.what for bundle in bundles)
    known = sorted({name for bundle in bundles for name in bundle.names()})
    raise ConfigError(
        f"no such {what} file, and no bundled scenario of that name (bundled: {', '.join(known)})",
        file=text,
    )
