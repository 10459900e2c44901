"""``imagerouter new-provider``: a ready provider package from a template.

The package has the plugin, its farm adapter, the conformance test, a README and a
``pyproject.toml`` with the ``imagerouter`` entry point; it passes the conformance kit as
created, against its own farm adapter. Only the provider's wire format is left to write, at
the lines marked ``TODO(wire format)``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

__all__ = ["TEMPLATE_FILES", "ScaffoldError", "create_provider_package", "normalize_name", "render"]

#: Template file → path in the new package (``{module}`` is the plugin's module name).
TEMPLATE_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "plugin.py.tmpl": "{module}.py",
    "farm.py.tmpl": "{module}_farm.py",
    "tests/test_conformance.py.tmpl": "tests/test_conformance.py",
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
#: Ids the built-in plugins and farm adapters already use.
TAKEN = frozenset({"openai", "fal", "wavespeed", "replicate"})


class ScaffoldError(ValueError):
    """The name or the target directory cannot be used; nothing was written."""


def normalize_name(name: str) -> str:
    """The provider id for ``name``: lower case, ``-`` as ``_``; ScaffoldError if unusable."""
    provider_id = name.strip().lower().replace("-", "_")
    if not _NAME.match(provider_id):
        raise ScaffoldError(
            f"provider name {name!r} must start with a letter and hold only letters, digits, "
            "'-' or '_' (at most 20)"
        )
    if provider_id in TAKEN:
        raise ScaffoldError(f"provider id {provider_id!r} is taken by a built-in plugin")
    return provider_id


def _placeholders(provider_id: str) -> dict[str, str]:
    words = provider_id.split("_")
    return {
        "name": provider_id,
        "module": f"imagerouter_{provider_id}",
        "dist": f"imagerouter-{provider_id.replace('_', '-')}",
        "Class": "".join(word.capitalize() for word in words if word),
        "Title": " ".join(word.capitalize() for word in words if word),
        "ENV": provider_id.upper(),
        "host": provider_id.replace("_", "-"),
    }


def render(name: str) -> dict[str, str]:
    """Every file of the package for provider ``name``: relative path → text."""
    values = _placeholders(normalize_name(name))
    template = resources.files("imagerouter.scaffold").joinpath("template")
    files = {}
    for source, target in TEMPLATE_FILES.items():
        text = template.joinpath(source).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        files[target.format(module=values["module"])] = text
    return files


def create_provider_package(name: str, parent: str | Path = ".") -> Path:
    """Write the package for provider ``name`` into ``parent/imagerouter-<name>``.

    Raises ScaffoldError (writing nothing) for a bad name or a directory that already exists
    and is not empty. Returns the package directory.
    """
    files = render(name)
    target = Path(parent) / _placeholders(normalize_name(name))["dist"]
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty; nothing was written")
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
