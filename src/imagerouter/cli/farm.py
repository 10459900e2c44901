"""``imagerouter farm``: the mock provider farm as a server of its own."""

from __future__ import annotations

import click

from imagerouter.cli.output import fail
from imagerouter.cli.params import PORT
from imagerouter.errors import ImageRouterError
from imagerouter.extras import require

__all__ = ["farm"]


@click.command()
@click.option("--scenario", default=None, help="Scenario name (bundled) or TOML file.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=PORT, help="0: any free port.")
@click.option(
    "--tls", is_flag=True, help="Serve HTTPS with a generated CA (for SDKs that need https)."
)
def farm(scenario: str | None, host: str, port: int, tls: bool) -> None:
    """Serve the mock provider farm (every loaded plugin's provider API) until interrupted."""
    require("farm", "imagerouter farm")
    from mockproviders import run_farm  # the farm is a dev/test tool, not core

    try:
        run_farm(scenario, host=host, port=port, tls=tls)
    except ImageRouterError as exc:
        fail(exc)
    except OSError as exc:  # the port is taken, the host cannot be resolved: as serve says it
        fail(exc)
