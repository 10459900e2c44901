"""``imagerouter new-provider NAME``: scaffold a provider package that passes the kit."""

from __future__ import annotations

import click

from imagerouter.cli import main
from imagerouter.scaffold import ScaffoldError, create_provider_package

__all__ = ["new_provider"]


@main.command("new-provider")
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
    click.echo(f"created {target}:")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(target)}")
    click.echo(
        "\nnext:\n"
        f"  cd {target}\n"
        "  pip install -e '.[test]' && pytest    # the conformance kit passes out of the box\n"
        "  then write the provider's wire format at each TODO(wire format), keeping pytest green"
    )
