"""One table from error class to HTTP status: complete, documented, and what the API answers."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import imagerouter
from imagerouter.errors import ImageRouterError, UnknownModel
from imagerouter.jobs.errors import InsufficientCredits, JobNotFound
from imagerouter.server.errors import ERROR_STATUS, api_error, status_for

README = Path(__file__).resolve().parents[2] / "README.md"
NOT_CORE = (".simulate", ".testing", ".cli", ".scaffold", ".__main__")


def core_error_classes() -> set[type[ImageRouterError]]:
    """Every ImageRouterError subclass the core defines (every core module imported)."""
    for module in pkgutil.walk_packages(imagerouter.__path__, "imagerouter."):
        if not any(part in module.name for part in NOT_CORE):
            importlib.import_module(module.name)
    found: set[type[ImageRouterError]] = set()
    stack: list[type[ImageRouterError]] = [ImageRouterError]
    while stack:
        cls = stack.pop()
        if cls.__module__.startswith("imagerouter.") and not any(
            part in cls.__module__ for part in NOT_CORE
        ):
            found.add(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_every_error_class_of_the_core_has_its_status_in_the_table() -> None:
    missing = sorted(
        f"{cls.__module__}.{cls.__name__}" for cls in core_error_classes() - set(ERROR_STATUS)
    )
    assert missing == []


def test_every_status_of_the_table_is_documented_in_the_readme() -> None:
    errors = README.read_text().split("- **Errors** are `{")[1].split("- **Credits**")[0]
    documented = {int(code) for code in re.findall(r"`(\d{3})`", errors)}
    assert set(ERROR_STATUS.values()) <= documented


def test_a_subclass_takes_its_nearest_listed_ancestors_status() -> None:
    class StaleCursor(JobNotFound):
        pass

    assert status_for(StaleCursor) == 404
    assert status_for(ImageRouterError) == 500


def test_the_answer_carries_the_status_and_the_errors_own_code() -> None:
    error = api_error(UnknownModel("gpt-9", ["gpt-image-2"]), field="model")
    assert (error.status, error.body()["error"]["code"], error.field) == (
        400,
        "unknown_model",
        "model",
    )
    short = api_error(InsufficientCredits(balance=3, price=26), extra={"balance": 3})
    assert (short.status, short.body()["error"]["balance"]) == (402, 3)
