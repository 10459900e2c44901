"""The ``imagerouter`` command."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from imagerouter.catalog import load_catalog
from imagerouter.config import load_settings
from imagerouter.errors import ConfigError, ImageRouterError
from imagerouter.plugins import load_plugins

__all__ = ["main"]

console = Console()
err_console = Console(stderr=True)

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="Config TOML file."
)
plugins_dir_option = click.option(
    "--plugins-dir", type=click.Path(file_okay=False), help="Directory of drop-in plugin files."
)


def _fail(exc: ImageRouterError) -> None:
    err_console.print(f"[red]error:[/red] {exc}")
    sys.exit(2)


@click.group()
@click.version_option(package_name="imagerouter")
def main() -> None:
    """Route image-generation requests across providers, with failover and a mock farm."""


@main.command()
@click.option("--scenario", default="demo", show_default=True, help="Farm scenario name or file.")
@click.option("--jobs", default=40, show_default=True, help="How many jobs to run.")
@click.option("--interval", default=0.25, show_default=True, help="Seconds between job starts.")
def demo(scenario: str, jobs: int, interval: float) -> None:
    """Serve the API over the in-process farm, submit jobs as a client would, show the outcome."""
    from imagerouter.demo import print_report, run_demo

    try:
        report = asyncio.run(run_demo(scenario, jobs, interval))
    except ImageRouterError as exc:
        _fail(exc)
    print_report(report, console)


@main.command()
@click.option("--scenario", default=None, help="Scenario name (bundled) or TOML file.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=int)
@click.option(
    "--tls", is_flag=True, help="Serve HTTPS with a generated CA (for SDKs that need https)."
)
def farm(scenario: str | None, host: str, port: int, tls: bool) -> None:
    """Serve the mock provider farm (every loaded plugin's provider API) until interrupted."""
    from mockproviders import run_farm

    try:
        run_farm(scenario, host=host, port=port, tls=tls)
    except ImageRouterError as exc:
        _fail(exc)


@main.command()
@config_option
@plugins_dir_option
def plugins(config_path: str | None, plugins_dir: str | None) -> None:
    """List loaded plugins, the providers they register, and any that failed to load."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        _fail(exc)
    loaded = load_plugins(plugins_dir=plugins_dir or settings.plugins_dir)
    table = Table(title="Provider plugins")
    for column in ("provider", "plugin", "class", "key env var", "default base URL"):
        table.add_column(column)
    for provider_id, cls in sorted(loaded.providers.items()):
        table.add_row(
            provider_id,
            loaded.provider_origin[provider_id],
            cls.__name__,
            cls.key_env_var or "-",
            cls.default_base_url,
        )
    console.print(table)
    for problem in loaded.problems:
        err_console.print(f"[yellow]skipped[/yellow] {problem}")


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(config_path: str | None, as_json: bool) -> None:
    """List the catalog's models, their providers in order, and prices."""
    try:
        catalog = load_catalog(load_settings(config_path).catalog)
    except ConfigError as exc:
        _fail(exc)
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


@main.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Build the router from the config (as 'serve' would) and report any problem."""
    from imagerouter.router import Router

    try:
        router = Router.from_config(config_path)
    except ImageRouterError as exc:
        _fail(exc)
    summary: dict[str, Any] = {name: i.provider.base_url for name, i in router.instances.items()}
    console.print(f"config OK; provider instances: {summary}")


# Commands defined beside the features they drive register themselves on `main`.
from imagerouter import (  # noqa: E402, F401
    cli_db,
    cli_loadtest,
    cli_provider,
    cli_server,
    cli_simulate,
    cli_status,
)

if __name__ == "__main__":
    # Run as ``python -m imagerouter.cli``: the commands registered on ``imagerouter.cli.main``
    # (this file imported under its own name), not on this ``__main__`` copy's group.
    from imagerouter.cli import main as registered_main

    registered_main()
