"""``imagerouter serve``, ``imagerouter keys …`` and ``imagerouter credits …``.

Every one takes ``--config`` and ``--data-dir``; settings come from the config file's
``[server]`` table, then ``IMAGEROUTER_SERVER_*`` variables, then flags. Each needs the
``server`` extra, and checks it (and any extra its settings name) before doing anything.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.table import Table

from imagerouter.auth import mint_key
from imagerouter.catalog import load_catalog
from imagerouter.cli.options import config_option
from imagerouter.cli.output import console, err_console, fail
from imagerouter.cli.params import PORT, AccountName, CreditAmount, parse_credits
from imagerouter.cli.stores import require_existing_store, shown_store, store_problem
from imagerouter.config import CONFIG_ENV
from imagerouter.errors import ImageRouterError
from imagerouter.extras import require
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.store import JobStore, check_grant
from imagerouter.preferences import parse_key_defaults, provider_names
from imagerouter.private import redact_url
from imagerouter.server.settings import (
    ServerSettings,
    load_router_settings,
    load_server_settings,
    router_config,
)

__all__ = ["credits", "keys", "serve"]

T = TypeVar("T")

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory of imagerouter.db (default: [server] data_dir, else ./.imagerouter).",
)


def _settings(command: str, config_path: str | None, **overrides: Any) -> ServerSettings:
    """``imagerouter COMMAND``'s settings, once the extras it needs are known to be installed:
    ``server``, and for ``serve`` those of the store, state, storage and farm it names (the
    other commands open only the store, which checks its own)."""
    try:
        require("server", f"imagerouter {command}")
        settings = load_server_settings(config_path, **overrides)
        if command == "serve":
            settings.require_extras()
    except ImageRouterError as exc:
        fail(exc)
    return settings


def _with_store(
    settings: ServerSettings, work: Callable[[JobStore], Awaitable[T]], *, create: bool = False
) -> T:
    """``work`` done with the store open; a problem is one line and exit status 2. Only a
    command that sets a store up (``create``) may open a SQLite database that is not there."""
    if not create:
        require_existing_store(settings)

    async def run() -> T:
        # PostgreSQL when the config names one, as serve does
        async with settings.job_store() as store:
            return await work(store)

    try:
        return asyncio.run(run())
    except ImageRouterError as exc:
        fail(exc)
    except ValueError as exc:  # a store's refusal of a value (a grant past the limit)
        fail(exc)
    except (OSError, sqlite3.Error) as exc:  # a data directory that cannot hold the database
        fail(store_problem(settings, exc))


@click.command()
@config_option
@data_dir_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=PORT, default=None, help="Port (default 8080).")
@click.option(
    "--workers", type=click.IntRange(min=0), default=None, help="Jobs run at once (0: none)."
)
@click.option(
    "--farm",
    is_flag=False,
    flag_value="default",
    default=None,
    metavar="[SCENARIO]",
    help="Run the mock provider farm in-process (scenario name or file; default 'default') "
    "and point every provider at it: no provider key needed.",
)
def serve(
    config_path: str | None,
    data_dir: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    farm: str | None,
) -> None:
    """Serve the job API (submit, poll, cancel, OpenAI-compatible) until SIGTERM."""
    settings = _settings(
        "serve", config_path, data_dir=data_dir, host=host, port=port, workers=workers, farm=farm
    )
    from imagerouter.server.serve import run_server  # the app: once its extras are known there

    try:
        if settings.farm is not None:
            overrides = router_config(config_path or os.environ.get(CONFIG_ENV))
            run_server(settings, router_overrides=overrides, announce=console.print)
        else:
            run_server(settings, load_router_settings(config_path), announce=console.print)
    except ImageRouterError as exc:
        fail(exc)
    except ConnectionError as exc:  # at start-up only the store and the shared state are asked
        reached = [f"the store {shown_store(settings)}"]
        if settings.state is not None:
            reached.append(f"the shared state {redact_url(settings.state)}")
        fail(f"{exc}: could not reach {' or '.join(reached)}")
    except OSError as exc:  # the port is taken, the data directory cannot be made, …
        fail(exc)
    except sqlite3.Error as exc:  # a database that cannot be written, or is not one
        fail(store_problem(settings, exc))


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@config_option
@data_dir_option
@click.option(
    "--account",
    "account_name",
    type=AccountName(),
    required=True,
    help="Account name (created if new).",
)
@click.option("--credits", "grant", type=CreditAmount(zero=True), default=0, help="Credits to add.")
@click.option("--name", "label", default=None, help="A label for the key.")
@click.option(
    "--routing",
    "routing",
    default=None,
    help="Default routing preferences of the key's requests, as JSON "
    '(\'{"ignore": ["openai"], "sort": "price"}\'); a request\'s own fields win.',
)
def keys_create(
    config_path: str | None,
    data_dir: str | None,
    account_name: str,
    grant: int,
    label: str | None,
    routing: str | None,
) -> None:
    """Create a key for ACCOUNT and print it once: it is stored only as a hash."""
    settings = _settings("keys create", config_path, data_dir=data_dir)
    if routing is not None:
        routing = _key_routing(routing, config_path)

    async def work(store: SQLiteJobStore) -> tuple[str, str, str, int]:
        account = await store.create_account(account_name)
        balance = account.balance
        if grant:
            balance = await store.grant_credits(account.id, grant, "granted with a new key")
        minted = mint_key(account.id, label, time.time(), routing)
        await store.create_api_key(minted.record)
        return minted.token, minted.record.id, account.id, balance

    token, key_id, account_id, balance = _with_store(settings, work, create=True)
    err_console.print(
        f"created key {key_id} for account {account_name} ({account_id}), balance {balance}. "
        "Store it now: it is not shown again."
    )
    click.echo(token)


def _key_routing(text: str, config_path: str | None) -> str:
    """The key's default routing preferences checked against the catalog and the configured
    providers, as compact JSON; a mistake names the field and exits with status 2."""
    try:
        router_settings = load_router_settings(config_path)
        known = provider_names(load_catalog(router_settings.catalog), router_settings.providers)
        prefs = parse_key_defaults(text, known)
    except ImageRouterError as exc:
        fail(exc)
    return prefs.model_dump_json(exclude_unset=True)


@keys.command("list")
@config_option
@data_dir_option
@click.option("--account", "account_name", default=None, help="Only this account's keys.")
def keys_list(config_path: str | None, data_dir: str | None, account_name: str | None) -> None:
    """List keys (ids, accounts, state; never the secrets)."""
    settings = _settings("keys list", config_path, data_dir=data_dir)

    async def work(store: SQLiteJobStore) -> list[Any]:
        account_id = None
        if account_name is not None:
            account = await store.find_account(account_name)
            if account is None:
                raise ImageRouterError(f"no account {account_name!r}")
            account_id = account.id
        return await store.list_api_keys(account_id)

    table = Table(title="API keys")
    for column in ("key id", "account", "name", "created", "state"):
        table.add_column(column)
    for record in _with_store(settings, work):
        table.add_row(
            record.id,
            record.account_name or record.account_id,
            record.name or "-",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created_at)),
            "active" if record.active else "revoked",
        )
    console.print(table)


@keys.command("revoke")
@config_option
@data_dir_option
@click.argument("key_id")
def keys_revoke(config_path: str | None, data_dir: str | None, key_id: str) -> None:
    """Revoke KEY_ID (the ``key_…`` id from ``keys list``). Running servers are told by the
    store and refuse it at once on PostgreSQL (NOTIFY), within 0.25 s on SQLite."""
    settings = _settings("keys revoke", config_path, data_dir=data_dir)
    if not _with_store(settings, lambda store: store.revoke_api_key(key_id)):
        fail(ImageRouterError(f"no active key {key_id!r}"))
    console.print(f"revoked {key_id}")


@click.group()
def credits() -> None:
    """Manage account credits."""


@credits.command("grant", context_settings={"ignore_unknown_options": True})
@config_option
@data_dir_option
@click.argument("account_name", type=AccountName())
@click.argument("amount", metavar="AMOUNT")
def credits_grant(
    config_path: str | None, data_dir: str | None, account_name: str, amount: str
) -> None:
    """Add AMOUNT credits to ACCOUNT (a ``grant`` ledger entry): a positive whole number, at
    most 2**62. Credits are never taken from the command line."""
    granted = _grant_amount(amount)
    settings = _settings("credits grant", config_path, data_dir=data_dir)

    async def work(store: SQLiteJobStore) -> int:
        account = await store.find_account(account_name)
        if account is None:
            raise ImageRouterError(f"no account {account_name!r}")
        return await store.grant_credits(account.id, granted, "granted from the CLI")

    balance = _with_store(settings, work)
    console.print(f"{account_name}: +{granted} credits, balance {balance}")


def _grant_amount(text: str) -> int:
    """AMOUNT as a grant the store takes, checked before anything is opened; else the store's
    own reason (``a grant must be between 1 and … credits``) as one line, exit status 2."""
    try:
        amount = parse_credits(text)
        check_grant(amount)
    except ValueError as exc:
        fail(exc)
    return amount
