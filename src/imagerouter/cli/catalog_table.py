"""The catalog as rows: one renderer for ``imagerouter models`` (rich table) and its
``--markdown`` form, which the README's catalog table is pasted from (a test keeps them equal)."""

from __future__ import annotations

from imagerouter.catalog import Catalog, CatalogModel, ModelProvider

__all__ = ["COLUMNS", "markdown_table", "rows"]

COLUMNS = (
    "model",
    "credits low/std/high",
    "providers in order (model id, $ per image)",
    "sizes",
    "max n",
    "formats",
)


def _provider(entry: ModelProvider) -> str:
    cost = "?" if entry.cost_usd is None else f"${entry.cost_usd:g}"
    optional = ", optional" if entry.optional else ""
    return f"{entry.provider} `{entry.model}` {cost}{optional}"


def _row(name: str, model: CatalogModel) -> tuple[str, ...]:
    credits, caps = model.credits, model.capabilities
    return (
        name,
        f"{credits.low}/{credits.standard}/{credits.high}",
        " → ".join(_provider(entry) for entry in model.providers),
        caps.size_summary(),
        str(caps.max_n),
        ", ".join(caps.output_formats),
    )


def rows(catalog: Catalog) -> list[tuple[str, ...]]:
    """One row per model, in catalog order, with the cells of :data:`COLUMNS`."""
    return [_row(name, model) for name, model in catalog.models.items()]


def markdown_table(catalog: Catalog) -> str:
    """The catalog as a Markdown table, then its aliases (no trailing newline)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(catalog)]
    if catalog.aliases:
        aliases = ", ".join(f"`{alias}` → `{target}`" for alias, target in catalog.aliases.items())
        lines += ["", f"Aliases: {aliases}."]
    return "\n".join(lines)
