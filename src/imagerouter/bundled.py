"""Finding a file by the name of a bundled one: the one resolver of scenario names and paths
for the farm, the simulator and the load tests (``docs/scenarios.md``: which tool reads which).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imagerouter.errors import ConfigError

__all__ = ["Bundled", "Resolved", "resolve_bundled"]


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
