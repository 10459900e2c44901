"""``imagerouter status``: a running server's providers in the terminal, once or live.

The table comes from ``GET /v1/providers`` (any API key). Given the admin key instead, it comes
from ``GET /v1/admin/snapshot``, which adds what the dashboard shows: time to the next breaker
probe, and the last minute's success rate, p95 latency and jobs/s. It asks over httpx: the
``client`` extra.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from imagerouter.cli.output import console, content_type, fail, not_imagerouter
from imagerouter.cli.params import server_url_option
from imagerouter.extras import require

if TYPE_CHECKING:
    import httpx

__all__ = ["fetch_rows", "provider_table", "shared_state_caption", "status"]

_BREAKER_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


class StatusError(Exception):
    """The server could not be asked, or refused: the message says why and what to do."""


def _get(client: httpx.Client, path: str, key: str | None) -> httpx.Response:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        return client.get(path, headers=headers)
    except httpx.TransportError as exc:
        raise StatusError(
            f"cannot reach {client.base_url}: {exc or type(exc).__name__} "
            "(is `imagerouter serve` running there?)"
        ) from None


def _from_providers(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for entry in data:
        breaker, health = entry["breaker"], entry["health"]
        concurrency = entry.get("concurrency") or {}
        rows.append(
            {
                "name": entry["name"],
                "breaker": breaker["state"],
                "next_probe_in_s": entry.get("next_probe_in_s", breaker.get("next_probe_in_s")),
                "health": health["score"],
                "cooldown_s": max(0.0, entry.get("cooldown_remaining_s") or 0.0),
                "pace_per_s": (entry.get("pace") or {}).get("rate_per_s"),
                "in_flight": concurrency.get("in_flight"),
                "limit": concurrency.get("limit"),
                "failure_rate": breaker.get("failure_rate"),
                "calls": breaker.get("window_calls"),
                "p95_ms": None if health.get("p95_s") is None else health["p95_s"] * 1000,
                "success_rate": None,
                "rate": None,
            }
        )
    return rows


def _from_snapshot(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in doc["providers"]:
        window = entry["window"]
        rows.append(
            {
                "name": entry["name"],
                "breaker": entry["breaker"],
                "next_probe_in_s": entry["next_probe_in_s"],
                "health": entry["health"],
                "cooldown_s": entry["cooldown_s"],
                "pace_per_s": entry.get("pace_per_s"),
                "in_flight": entry["in_flight"],
                "limit": entry["limit"],
                "failure_rate": entry["failure_rate"],
                "calls": window["calls"],
                "p95_ms": window["p95_ms"],
                "success_rate": window["success_rate"],
                "rate": entry["rate"],
            }
        )
    return rows


def _is_json(answer: httpx.Response) -> bool:
    kind = content_type(answer.headers)
    return kind == "application/json" or kind.endswith("+json")


def _not_imagerouter(client: httpx.Client, answer: httpx.Response) -> StatusError:
    """The error for an answer no imagerouter server gives (an HTML page, say): one line
    naming the URL, the status and the content type, never the body."""
    request = f"GET {answer.request.url.path}"
    return StatusError(
        not_imagerouter(client.base_url, request, answer.status_code, answer.headers)
    )


def _document(client: httpx.Client, answer: httpx.Response, rows_key: str) -> dict[str, Any]:
    """The answer's JSON object, holding a list at ``rows_key``; else StatusError saying the
    server is not an imagerouter server."""
    if _is_json(answer):
        try:
            doc = answer.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get(rows_key), list):
            return doc
    raise _not_imagerouter(client, answer)


def fetch_rows(
    client: httpx.Client, key: str | None, admin: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One row per provider, from the admin snapshot (``admin``) or ``/v1/providers``, and
    where the replica's resilience state lives (``shared_state``; None from an older server)."""
    if admin:
        answer = _get(client, "/v1/admin/snapshot", key)
        if answer.status_code == 200:
            doc = _document(client, answer, "providers")
            return _from_snapshot(doc), doc.get("shared_state")
    answer = _get(client, "/v1/providers", key)
    if answer.status_code == 401:
        raise StatusError(
            "the server refused the key (401): pass --key or set IMAGEROUTER_API_KEY "
            "(an API key from `imagerouter keys create`, or the admin key)"
        )
    if answer.status_code != 200:
        if not _is_json(answer):
            raise _not_imagerouter(client, answer)
        raise StatusError(f"GET /v1/providers answered {answer.status_code}: {answer.text[:200]}")
    doc = _document(client, answer, "data")
    return _from_providers(doc["data"]), doc.get("shared_state")


def shared_state_caption(shared: dict[str, Any] | None) -> Text | None:
    """The table's caption: where breakers, cooldowns and limits live, and, while Redis is
    away, that each replica runs on its own (and honours only the Retry-Afters it was given)."""
    if shared is None:
        return None
    if shared.get("backend") != "redis":
        return Text("shared state: local (this replica's own)")
    if shared.get("healthy"):
        return Text("shared state: redis, healthy", style="green")
    since = shared.get("degraded_since")
    when = "" if since is None else f" since {time.strftime('%H:%M:%S', time.localtime(since))}"
    return Text(
        f"shared state: redis DEGRADED{when}: running on local state (other replicas' "
        "Retry-Afters and limits are not seen)",
        style="bold red",
    )


def _is_admin(client: httpx.Client, key: str | None) -> bool:
    return bool(key) and _get(client, "/v1/admin/snapshot", key).status_code == 200


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def provider_table(
    rows: list[dict[str, Any]], source: str, shared: dict[str, Any] | None = None
) -> Table:
    """The rows as a rich table: the dashboard's provider cards, one line each, captioned
    with where the state lives (``shared``)."""
    admin = source == "admin"
    table = Table(
        title=f"providers · {time.strftime('%H:%M:%S')}",
        title_justify="left",
        caption=shared_state_caption(shared),
        caption_justify="left",
    )
    table.add_column("provider", style="bold")
    table.add_column("breaker")
    table.add_column("next probe", justify="right")
    table.add_column("health", justify="right")
    table.add_column("Retry-After", justify="right")
    table.add_column("paced", justify="right")
    table.add_column("in flight", justify="right")
    table.add_column("success (1 min)" if admin else "failure rate", justify="right")
    table.add_column("p95 (1 min)" if admin else "p95", justify="right")
    if admin:
        table.add_column("jobs/s", justify="right")
    for row in rows:
        state = row["breaker"]
        probe = row["next_probe_in_s"]
        if state == "closed":
            probe_text = "–"
        elif probe is None:
            probe_text = "probes out" if state == "half_open" else "?"
        else:
            probe_text = "now" if probe <= 0 else f"{probe:.1f} s"
        health = row["health"]
        health_style = "green" if health > 0.8 else "yellow" if health > 0.4 else "red"
        if not admin:
            rate_text = _pct(row["failure_rate"])
        else:
            rate_text = f"{_pct(row['success_rate'])} of {row['calls']}" if row["calls"] else "–"
        cells = [
            row["name"],
            Text(state.replace("_", "-"), style=_BREAKER_STYLE.get(state, "")),
            probe_text,
            Text(f"{health:.2f}", style=health_style),
            Text(f"{row['cooldown_s']:.1f} s", style="yellow") if row["cooldown_s"] > 0 else "–",
            "–" if row["pace_per_s"] is None else f"{row['pace_per_s']:.1f}/s",
            "–" if row["in_flight"] is None else f"{row['in_flight']} / {row['limit']}",
            rate_text,
            "–" if row["p95_ms"] is None else f"{row['p95_ms']:.0f} ms",
        ]
        if admin:
            cells.append("–" if row["rate"] is None else f"{row['rate']:.1f}")
        table.add_row(*cells)
    return table


def _check_watch_options(watch: bool, count: int | None, as_json: bool) -> None:
    """Refuse options that would be ignored, naming them: ``--count`` and ``--interval``
    only act with ``--watch``, which ``--json`` (one snapshot) cannot go with."""
    if watch and as_json:
        fail("--json prints one snapshot and exits: it cannot go with --watch")
    if watch:
        return
    if count is not None:
        fail("--count stops --watch after N refreshes: give --watch too, or leave --count out")
    interval = click.get_current_context().get_parameter_source("interval")
    if interval is ParameterSource.COMMANDLINE:
        fail("--interval is the time between --watch refreshes: give --watch too")


@click.command()
@server_url_option
@click.option(
    "--key",
    envvar="IMAGEROUTER_API_KEY",
    default=None,
    help="An API key, or the admin key for the dashboard's figures (env IMAGEROUTER_API_KEY).",
)
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="With --watch: stop after N."
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON and exit.")
def status(
    url: str, key: str | None, watch: bool, interval: float, count: int | None, as_json: bool
) -> None:
    """Show each provider's breaker, health, cooldown and load on a running server."""
    _check_watch_options(watch, count, as_json)
    require("client", "imagerouter status")
    import httpx

    with httpx.Client(base_url=url.rstrip("/"), timeout=5.0) as client:
        try:
            admin = _is_admin(client, key)
            rows, shared = fetch_rows(client, key, admin)
        except StatusError as exc:
            fail(exc)
        source = "admin" if admin else "providers"
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not watch:
            console.print(provider_table(rows, source, shared))
            return
        shown = 1
        first = provider_table(rows, source, shared)
        with Live(first, console=console, auto_refresh=False) as live:
            try:
                while count is None or shown < count:
                    time.sleep(interval)
                    try:
                        rows, shared = fetch_rows(client, key, admin)
                        view: Table | Group = provider_table(rows, source, shared)
                    except StatusError as exc:
                        view = Group(
                            provider_table(rows, source, shared), Text(str(exc), style="red")
                        )
                    live.update(view, refresh=True)
                    shown += 1
            except KeyboardInterrupt:
                pass
