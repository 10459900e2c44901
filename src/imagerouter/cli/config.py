"""``imagerouter models`` and ``imagerouter check-config``: what a configuration says."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table

from imagerouter.cli.catalog_table import COLUMNS, markdown_table, rows
from imagerouter.cli.options import config_option
from imagerouter.cli.output import console, err_console, fail
from imagerouter.config import Settings, load_settings
from imagerouter.errors import ConfigError, ImageRouterError

if TYPE_CHECKING:
    from imagerouter.plugins import Plugins
    from imagerouter.router import Router

__all__ = ["check_config", "models"]


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--markdown", "as_markdown", is_flag=True, help="Print a Markdown table (the README's)."
)
def models(config_path: str | None, as_json: bool, as_markdown: bool) -> None:
    """List the catalog's models: credits per tier, providers in order with their model ids
    and prices, and what each model can make (sizes, most images, formats)."""
    if as_json and as_markdown:
        fail("--json and --markdown are two formats of the same list: give one of them")
    settings, plugins = _load(config_path)
    # The catalog as serve would route it, so a catalog serve refuses is refused here with
    # check-config's words; the keys are the providers' business, not the catalog's
    environ = {**os.environ, **_stand_in_keys(settings, plugins)}
    catalog = _router_or_fail(settings, plugins, environ).catalog
    if as_json:
        click.echo(json.dumps(catalog.model_dump(mode="json"), indent=2))
        return
    if as_markdown:
        click.echo(markdown_table(catalog))
        return
    table = Table(title="Models")
    for column in COLUMNS:
        table.add_column(column)
    for cells in rows(catalog):
        table.add_row(*(cell.replace("`", "") for cell in cells))
    console.print(table)
    for alias, target in catalog.aliases.items():
        console.print(f"alias {alias} → {target}")


def _farm_keys(plugins: Any) -> dict[str, str]:
    """A stand-in key for every provider's key variable: the farm takes any."""
    return {cls.key_env_var: "farm-key" for cls in plugins.providers.values() if cls.key_env_var}


def _stand_in_keys(settings: Settings, plugins: Plugins) -> dict[str, str]:
    """A stand-in for every key variable a provider reads (its plugin's, and any the config
    names in ``api_key_env``): building the router to list its catalog needs no real key."""
    named = {p.api_key_env for p in settings.providers.values() if p.api_key_env}
    return _farm_keys(plugins) | dict.fromkeys(named, "farm-key")


def _print_problems(plugins: Plugins) -> None:
    """One ``not loaded:`` line on stderr per plugin problem."""
    for problem in plugins.problems:
        err_console.print(f"[red]not loaded:[/red] {escape(str(problem))}", soft_wrap=True)


def _require_configured_plugins(settings: Settings, plugins: Plugins) -> None:
    """Every enabled ``[providers.X]`` has its plugin's class loaded; else a ConfigError on
    ``providers.X.plugin`` saying why it is missing (a refused class, a plugin left out by
    ``IMAGEROUTER_LOAD_PLUGINS``, or none installed), every such provider in one error."""
    problems = [
        ConfigError(
            plugins.why_missing(plugin_id), file=settings.source, field=f"providers.{name}.plugin"
        )
        for name, provider in settings.providers.items()
        if provider.enabled and (plugin_id := provider.plugin or name) not in plugins.providers
    ]
    if len(problems) > 1:
        listed = "; ".join(f"{problem.field}: {problem.reason}" for problem in problems)
        raise ConfigError(f"{len(problems)} providers cannot start: {listed}", file=settings.source)
    if problems:
        raise problems[0]


def _load(config_path: str | None) -> tuple[Settings, Plugins]:
    """The config's router settings and the plugins it loads; a bad config is one line, exit 2."""
    from imagerouter.plugins import load_plugins

    try:
        settings = load_settings(config_path)
        return settings, load_plugins(plugins_dir=settings.plugins_dir, log_problems=False)
    except ImageRouterError as exc:
        fail(exc)


def _router_or_fail(settings: Settings, plugins: Plugins, environ: dict[str, str]) -> Router:
    """The router serve would build from ``settings``: every configured provider's plugin
    loaded, every catalog entry naming a known provider, keys (from ``environ``) and options
    given. Else the plugins that did not load (often the cause), the ConfigError, exit 2."""
    from imagerouter.router import Router

    try:
        _require_configured_plugins(settings, plugins)
        return Router.from_config(settings, plugins=plugins, environ=environ)
    except ImageRouterError as exc:
        _print_problems(plugins)
        fail(exc)


@click.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Build the router from the config (as 'serve' would), check its [server] table, and
    report any problem."""
    from imagerouter.server.settings import load_server_settings

    settings, plugins = _load(config_path)
    try:
        server = load_server_settings(config_path)  # what serve reads, env variables too
    except ImageRouterError as exc:
        fail(exc)
    environ = dict(os.environ)
    if server.farm is not None:
        # serve then points every provider at its in-process farm, with the farm's keys
        console.print(f"server.farm = {server.farm!r}: serve answers from the mock farm")
        environ |= _farm_keys(plugins)
    router = _router_or_fail(settings, plugins, environ)
    summary: dict[str, Any] = {name: i.provider.base_url for name, i in router.instances.items()}
    if plugins.problems:
        # the router built without them, but a plugin meant to serve is not serving: a CI
        # check of the config must not pass
        _print_problems(plugins)
        console.print(f"provider instances: {summary}")
        fail(f"{len(plugins.problems)} plugin(s) could not be loaded (above)")
    console.print(f"config OK; provider instances: {summary}")
    unserved = [name for name, m in router.catalog.models.items() if not router.candidates_for(m)]
    if unserved:
        # legitimate (providers turned off on purpose), but a submit for these is refused
        listed = ", ".join(unserved)
        refused = f"models no provider here serves (refused at submit): {listed}"
        console.print(refused, soft_wrap=True)
