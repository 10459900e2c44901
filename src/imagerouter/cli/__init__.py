"""The ``imagerouter`` command: the group, and the commands of the modules beside this one.

Each module defines its commands with ``click.command``/``click.group`` and never imports this
one; here they are added to :func:`main`. The farm, the load tests and the simulator are
imported by their commands when they run, never at import: the core must not depend on them,
and ``imagerouter --help`` should not wait for them. Nor does loading the commands import any
extra's modules: a command that needs an extra checks it first with
:func:`imagerouter.extras.require`, and a missing one ends the command here, as one line
naming the pip install that fixes it.
"""

from __future__ import annotations

from typing import Any

import click

from imagerouter.cli import (
    config,
    db,
    demo,
    farm,
    generate,
    loadtest,
    provider,
    server,
    simulate,
    status,
)
from imagerouter.cli.output import fail
from imagerouter.errors import MissingExtra

__all__ = ["main"]


class _Commands(click.Group):
    """The ``imagerouter`` group: a command that needs a missing extra fails with the
    ``pip install 'imagerouter-framework[…]'`` that fixes it, status 2, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MissingExtra as exc:
            fail(exc)


@click.group(cls=_Commands)
@click.version_option(package_name="imagerouter-framework")
def main() -> None:
    """Route image-generation requests across providers, with failover and a mock farm."""


main.add_command(demo.demo)
main.add_command(farm.farm)
main.add_command(config.models)
main.add_command(config.check_config)
main.add_command(provider.plugins)
main.add_command(provider.new_provider)
main.add_command(server.serve)
main.add_command(server.keys)
main.add_command(server.credits)
main.add_command(db.db)
main.add_command(simulate.simulate)
main.add_command(loadtest.loadtest)
main.add_command(status.status)
main.add_command(generate.generate)
