"""The catalog as rows: one renderer for ``imagerouter models`` (rich table) and its
``--markdown`` form, which the README's catalog table is pasted from (a test keeps them equal)."""

from __future__ import annotations

from imagerouter.catalog import Catalog, CatalogModel, ModelProvider

__all__ = ["COLUMNS", "markdown_table", "rows"]

COLUMNS = (
    "model",
    "credits low/std/high (video: per second)",
    "providers in order (model id, $ per image or second)",
    "sizes (video: seconds, resolutions, ratios)",
    "max n",
    "formats",
)


def _provider(entry: ModelProvider, per: str = "") -> str:
    cost = "?" if entry.cost_usd is None else f"${entry.cost_usd:g}{per}"
    if entry.audio_cost_usd is not None:
        cost += f" (${entry.audio_cost_usd:g}{per} with audio)"
    optional = ", optional" if entry.optional else ""
    return f"{entry.provider} `{entry.model}` {cost}{optional}"


def _row(name: str, model: CatalogModel) -> tuple[str, ...]:
    providers = " → ".join(
        _provider(entry, "" if model.kind == "image" else "/s") for entry in model.providers
    )
    if model.video is not None and model.video_credits is not None:
        prices = model.video_credits
        credits = ", ".join(f"{c}/s {res}" for res, c in prices.per_second.items())
        if prices.audio_per_second:
            credits += f", +{prices.audio_per_second}/s audio"
        return (name, credits, providers, model.video.summary(), "1", "mp4")
    assert model.credits is not None
    credits, caps = model.credits, model.capabilities
    return (
        name,
        f"{credits.low}/{credits.standard}/{credits.high}",
        providers,
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
