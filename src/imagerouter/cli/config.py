"""``imagerouter models`` and ``imagerouter check-config``: what a configuration says."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from imagerouter.catalog import load_catalog
from imagerouter.cli.options import config_option
from imagerouter.cli.output import console, fail
from imagerouter.config import load_settings
from imagerouter.errors import ConfigError, ImageRouterError

__all__ = ["check_config", "models"]


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(config_path: str | None, as_json: bool) -> None:
    """List the catalog's models, their providers in order, and prices."""
    try:
        catalog = load_catalog(load_settings(config_path).catalog)
    except ConfigError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(catalog.model_dump(mode="json"), indent=2))
        return
    table = Table(title="Models")
    for column in ("model", "policy", "providers (in order)", "credits low/std/high"):
        table.add_column(column)
    for name, model in catalog.models.items():
        credits = model.credits
        table.add_row(
            name,
            model.policy,
            " → ".join(f"{p.provider}:{p.model}" for p in model.providers),
            f"{credits.low}/{credits.standard}/{credits.high}",
        )
    console.print(table)
    for alias, target in catalog.aliases.items():
        console.print(f"alias {alias} → {target}")


@click.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Build the router from the config (as 'serve' would) and report any problem."""
    from imagerouter.router import Router

    try:
        router = Router.from_config(config_path)
    except ImageRouterError as exc:
        fail(exc)
    summary: dict[str, Any] = {name: i.provider.base_url for name, i in router.instances.items()}
    console.print(f"config OK; provider instances: {summary}")
