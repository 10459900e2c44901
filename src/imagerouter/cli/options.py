"""Options that several command groups share."""

from __future__ import annotations

import click

__all__ = ["config_option"]

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="Config TOML file."
)
