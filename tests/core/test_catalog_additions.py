"""A catalog file adds a provider to a shipped model (``add_providers``) without restating
it, and a mistake there names the file and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from imagerouter import load_catalog
from imagerouter.errors import ConfigError

ACME = """
[[models."flux-dev".add_providers]]
provider = "acme"
model = "acme/flux-dev"
cost_usd = 0.02
optional = true
"""


def catalog_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-catalog.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_added_providers_come_after_the_models_own_and_nothing_else_changes(
    tmp_path: Path,
) -> None:
    shipped = load_catalog().models["flux-dev"]
    extended = load_catalog(catalog_file(tmp_path, ACME)).models["flux-dev"]
    assert extended.providers[:-1] == shipped.providers
    acme = extended.providers[-1]
    assert (acme.provider, acme.model, acme.cost_usd, acme.optional) == (
        "acme",
        "acme/flux-dev",
        0.02,
        True,
    )
    assert extended.model_dump(exclude={"providers"}) == shipped.model_dump(exclude={"providers"})


MISTAKES = {
    "no such model": (
        '[[models."flux-nope".add_providers]]\nprovider = "acme"\nmodel = "m"\n',
        "models.flux-nope.add_providers",
        "no model 'flux-nope' to add providers to",
    ),
    "mixed with a whole model": (
        '[models."flux-dev"]\ncredits = { low = 1, standard = 1, high = 1 }\n'
        '[[models."flux-dev".add_providers]]\nprovider = "acme"\nmodel = "m"\n',
        "models.flux-dev",
        "stands alone",
    ),
    "a provider already there": (
        '[[models."flux-dev".add_providers]]\nprovider = "fal"\nmodel = "m"\n',
        "models.flux-dev.add_providers",
        "'fal' already serves flux-dev",
    ),
    "a bad entry": (
        '[[models."flux-dev".add_providers]]\nprovider = "acme"\n',
        "models.flux-dev.add_providers[0].model",
        "Field required",
    ),
}


@pytest.mark.parametrize("case", MISTAKES)
def test_a_mistake_names_the_file_and_the_field(tmp_path: Path, case: str) -> None:
    text, field, reason = MISTAKES[case]
    with pytest.raises(ConfigError) as raised:
        load_catalog(catalog_file(tmp_path, text))
    message = str(raised.value)
    assert "my-catalog.toml" in message
    assert field in message
    assert reason in message
