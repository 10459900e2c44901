"""docs/writing-a-provider.md stays true: the Replicate plugin shown is the one shipped, and
every kit check and fault is documented."""

from __future__ import annotations

import re
from pathlib import Path

from imagerouter_replicate import ReplicateProvider

from imagerouter.testing import FAULTS, Conformance

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "writing-a-provider.md").read_text()


def test_worked_example_is_the_shipped_replicate_plugin() -> None:
    """The doc's Replicate listing is plugins/imagerouter_replicate.py, byte for byte."""
    shown = re.search(
        r"<!-- replicate-plugin:start -->\n```python\n(.*?)```\n<!-- replicate-plugin:end -->",
        DOC,
        re.S,
    )
    assert shown, "the Replicate listing markers are missing"
    assert shown[1] == (ROOT / "plugins" / "imagerouter_replicate.py").read_text()


def test_every_check_and_fault_is_documented() -> None:
    """Each check name and each fault id appears in the doc's tables."""
    with Conformance(ReplicateProvider, "black-forest-labs/flux-dev") as kit:
        checks = [name for name in kit.check_names if not name.startswith("fault:")]
    for name in checks:
        assert f"| `{name}` (" in DOC, name
    for fault in FAULTS:
        assert f"| `{fault.id}` | {fault.description} | `{fault.expectation()}` |" in DOC
