"""``imagerouter plugins`` and ``imagerouter new-provider NAME``: the provider plugins loaded,
and a new provider package scaffolded to pass the kit."""

from __future__ import annotations

import sys

import click
from rich.markup import escape
from rich.table import Table

from imagerouter.cli.options import config_option
from imagerouter.cli.output import console, err_console, fail
from imagerouter.config import load_settings
from imagerouter.errors import ConfigError
from imagerouter.plugins import load_plugins
from imagerouter.scaffold import ScaffoldError, create_provider_package

__all__ = ["new_provider", "plugins"]

plugins_dir_option = click.option(
    "--plugins-dir", type=click.Path(file_okay=False), help="Directory of drop-in plugin files."
)


@click.command()
@config_option
@plugins_dir_option
def plugins(config_path: str | None, plugins_dir: str | None) -> None:
    """List loaded plugins, the providers they register, and any that failed to load (then
    exit 1)."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        fail(exc)
    loaded = load_plugins(plugins_dir=plugins_dir or settings.plugins_dir, log_problems=False)
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
        err_console.print(f"[yellow]skipped[/yellow] {escape(str(problem))}", soft_wrap=True)
    if loaded.problems:
        sys.exit(1)


@click.command("new-provider")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to create the imagerouter-NAME package directory.",
)
def new_provider(name: str, parent: str) -> None:
    """Create a provider plugin package (plugin, farm adapter, conformance test, README)."""
    try:
        target = create_provider_package(name, parent)
    except ScaffoldError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:  # a directory it may not write in: one line, not a traceback
        fail(f"--dir {parent}: {exc.strerror or exc}")
    click.echo(f"created {target}:")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(target)}")
    click.echo(
        "\nnext:\n"
        f"  cd {target}\n"
        "  pip install -e '.[test]' && pytest    # the conformance kit passes out of the box\n"
        "  then write the provider's wire format at each TODO(wire format), keeping pytest green"
    )
