"""A fleet for the multi-replica tests: one mock farm process, N ``imagerouter serve``
processes with the same config (PostgreSQL store, Redis state, every provider pointed at the
farm), a Redis TCP proxy the test can cut, and a webhook receiver. Every process is started
on loopback and stopped by its pid."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis
from aiohttp import web

from imagerouter import AsyncResource
from imagerouter.auth import mint_key
from imagerouter.jobs.postgres import PostgresJobStore
from imagerouter.plugins import load_plugins
from imagerouter.webhooks import new_secret
from mockproviders.bridge import FARM_OPTIONS
from tests.helpers.at_once import AtOnce
from tests.helpers.net import free_port
from tests.helpers.redis_service import delete_prefix
from tests.polling import eventually
from tests.replication.proxy import TcpProxy
from tests.store.pg import drop_schema, new_schema, with_schema

PYTHON = sys.executable
BODY = {"model": "gpt-image-2", "prompt": "a lighthouse"}
PRICE = 26


def _get_json(url: str, timeout_s: float = 2.0, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        return json.load(answer)


class Proc:
    """One subprocess on a free port, logging to a file; ready when ``ready_path`` answers 200."""

    def __init__(self, name: str, command: list[str], port: int, log: Path, ready_path: str):
        self.name, self.command, self.port, self.log = name, command, port, log
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process (not waiting)."""
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def wait_ready(self, timeout_s: float = 40.0) -> None:
        """Wait (bounded) until ``ready_path`` answers 200."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.tail()}"
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready in {timeout_s} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        """The end of the process's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: frozen, its sockets open and silent, its leases running out."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class ThreadedProxy:
    """:class:`TcpProxy` on its own event loop thread, so it forwards between tests' awaits
    too; ``cut()`` and ``restore()`` are thread-safe."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._proxy = TcpProxy(host, port)

    def start(self) -> ThreadedProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._proxy.start(), self._loop).result(10)
        return self

    def url(self, db: int = 0) -> str:
        return self._proxy.url(db)

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.cut)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.restore)

    def stop(self) -> None:
        coro = self._proxy.aclose()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class Hit:
    """One webhook the receiver got."""

    headers: dict[str, str]
    body: bytes
    #: When it arrived (wall clock).
    at: float = field(default_factory=time.time)

    @property
    def job_id(self) -> str:
        return json.loads(self.body)["data"]["id"]


@dataclass
class Receiver(AsyncResource):
    """A webhook endpoint on loopback that answers ``status`` (200; with ``retry_after``, a
    ``Retry-After`` header too) after ``delay_s``, keeps every request, and counts the most
    it held at once."""

    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    #: Requests it holds now, and the most it held at once.
    at_once: AtOnce = field(default_factory=AtOnce)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            self.hits.append(Hit(dict(request.headers), await request.read()))
            with self.at_once.held():
                await asyncio.sleep(self.delay_s)
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return web.Response(text="ok", status=self.status, headers=headers)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _table(name: str, values: dict[str, Any]) -> list[str]:
    lines = [f"[{name}]"]
    nested: list[str] = []
    for key, value in values.items():
        if value is None:  # left to the default (e.g. no store: SQLite in the data dir)
            continue
        if isinstance(value, dict) and key in ("breaker",):
            nested += _table(f"{name}.{key}", value)
        else:
            lines.append(f"{key} = {_toml(value)}")
    return [*lines, *nested]


def write_config(
    path: Path,
    farm_doc: dict[str, Any],
    *,
    store: str | None,
    state: str | None,
    prefix: str,
    server: dict[str, Any] | None = None,
    router: dict[str, Any] | None = None,
    providers: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """The replicas' shared config: the ``[server]`` table (store, state, small leases), the
    ``[router]`` table, and every farm provider's base URL and farm key (as
    ``farm_router`` would set them), plus ``providers``' settings (e.g. spend caps)."""
    values: dict[str, Any] = {
        "store": store,
        "state": state,
        "state_prefix": prefix,
        "workers": 8,
        "lease_s": 2.0,
        "heartbeat_s": 0.5,
        "sweep_interval_s": 0.5,
        "poll_interval_s": 0.5,
        "shutdown_grace_s": 1.0,
        "auth_cache_s": 0.0,
        "webhook_allow": ["127.0.0.1/32"],
        "webhook_timeout_s": 2.0,
        "webhook_lease_s": 3.0,
        "webhook_poll_interval_s": 0.5,
        "webhook_retry_scale": 0.01,
        **(server or {}),
    }
    lines = _table("server", values)
    lines += ["[server.storage]", 'backend = "none"']
    for policy in ("generate", "read"):
        lines += [f"[server.rate_limits.{policy}]", "rate_per_s = 100000", "burst = 100000"]
    lines += _table("router", {"deadline_s": 60, **(router or {})})
    served = farm_doc["providers"]
    for name in load_plugins().providers:
        if name not in served:
            lines += [f'[providers."{name}"]', "enabled = false"]
    for name, entry in served.items():
        lines += [
            f'[providers."{name}"]',
            f"base_url = {_toml(entry['base_url'])}",
            f'api_key = "farm-key-{name}"',
            f"options = {_toml(dict(FARM_OPTIONS))}",
        ]
        lines += [
            f"{key} = {_toml(value)}" for key, value in (providers or {}).get(name, {}).items()
        ]
    if farm_doc.get("ca_bundle"):
        lines.insert(0, f"ca_bundle = {_toml(farm_doc['ca_bundle'])}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_scenario(path: Path, providers: dict[str, dict[str, Any]]) -> Path:
    """A farm scenario: every provider fast unless ``providers`` says otherwise."""
    lines = ['description = "replicas test"', "seed = 7"]
    for name in ("openai", "fal", "wavespeed"):
        profile = {"latency_ms": 2, "generation_ms": 30, **providers.get(name, {})}
        lines.append(f"[providers.{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in profile.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Fleet:
    """A running farm and replicas; see the module doc."""

    farm: Proc
    replicas: list[Proc]
    store: PostgresJobStore
    config: Path
    proxy: ThreadedProxy | None = None

    @property
    def farm_url(self) -> str:
        return self.farm.url

    def stats(self, provider: str) -> dict[str, Any]:
        """The farm's counters for one provider."""
        return _get_json(f"{self.farm_url}/_farm/stats")["providers"][provider]

    def set_faults(self, provider: str, faults: dict[str, Any]) -> None:
        """Replace one provider's live fault profile."""
        request = urllib.request.Request(
            f"{self.farm_url}/_farm/providers/{provider}/faults",
            data=json.dumps(faults).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200

    def providers(self, replica: int, token: str) -> dict[str, dict[str, Any]]:
        """``GET /v1/providers`` of one replica, by instance name."""
        doc = _get_json(f"{self.replicas[replica].url}/v1/providers", 5, token)
        return {entry["name"]: entry for entry in doc["data"]}

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Rows of a query on the fleet's schema (a connection of its own)."""
        conn = await asyncpg.connect(
            self.store.dsn, server_settings={"search_path": self.store.schema}
        )
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def key(self, account: str, credits: int = 100_000, webhook: str | None = None):
        """A new account with ``credits`` and an API key (and ``webhook`` registered, with a
        signing secret); returns (token, account id, secret or None)."""
        found = await self.store.create_account(account)
        await self.store.grant_credits(found.id, credits, "test")
        minted = mint_key(found.id, "test", time.time())
        await self.store.create_api_key(minted.record)
        secret = None
        if webhook is not None:
            secret = new_secret()
            await self.store.add_webhook_secret(found.id, secret, 0.0)
            await self.store.set_webhook_url(found.id, webhook)
        return minted.token, found.id, secret


def start_processes(procs: Iterable[Proc]) -> None:
    """Start every process, then wait until each is ready."""
    started = list(procs)
    for proc in started:
        proc.start()
    for proc in started:
        proc.wait_ready()


def farm_proc(tmp: Path, scenario: Path) -> Proc:
    port = free_port()
    command = [PYTHON, "-m", "imagerouter", "farm", "--port", str(port)]
    command += ["--scenario", str(scenario)]
    return Proc("farm", command, port, tmp / "farm.log", "/_farm/providers")


def replica_proc(tmp: Path, config: Path, index: int, *args: str) -> Proc:
    port = free_port()
    data_dir = tmp / f"replica{index}"
    command = [PYTHON, "-m", "imagerouter", "serve", "--config", str(config)]
    command += ["--port", str(port), "--data-dir", str(data_dir), *args]
    return Proc(f"replica{index}", command, port, tmp / f"replica{index}.log", "/readyz")


async def submit(
    session: aiohttp.ClientSession,
    replicas: list[Proc],
    first: int,
    token: str,
    key: str,
    body: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """Submit through replica ``first``, and on a connection error through the next ones, as
    a load balancer retrying with the same Idempotency-Key would; (job id, replica used)."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    last: BaseException | None = None
    for step in range(len(replicas) * 2):
        index = (first + step) % len(replicas)
        try:
            async with session.post(
                f"{replicas[index].url}/v1/jobs", json=body or BODY, headers=headers
            ) as answer:
                assert answer.status == 202, await answer.text()
                return (await answer.json())["id"], index
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            last = exc
            await asyncio.sleep(0.05)
    raise AssertionError(f"no replica took the submit: {last!r}")


async def until(condition: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> Any:
    """Wait until ``condition()`` (sync or async) is truthy and return its value."""
    return await eventually(condition, timeout_s=timeout_s, what=what or repr(condition))


@contextlib.asynccontextmanager
async def fleet_factory(pg_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """Yields ``make(scenario, replicas=3, server=…, router=…, providers=…, proxy=False,
    args=…)``, which starts a farm process with ``scenario`` (provider → fault profile) and N
    replicas sharing one config on a fresh schema of ``pg_url`` and prefix of ``redis_url``
    (``providers``: more settings per provider; ``args``: extra ``serve`` flags by replica
    index; ``proxy``: Redis through a cuttable TCP proxy, ``fleet.proxy``); on exit every
    process is stopped and the schema and keys removed."""
    procs: list[Proc] = []
    cleanup: list[Any] = []

    async def make(
        scenario: dict[str, dict[str, Any]],
        *,
        replicas: int = 3,
        server: dict[str, Any] | None = None,
        router: dict[str, Any] | None = None,
        providers: dict[str, dict[str, Any]] | None = None,
        proxy: bool = False,
        args: dict[int, list[str]] | None = None,
    ) -> Fleet:
        schema, prefix = new_schema("irrep"), f"irtest:{uuid.uuid4().hex[:12]}"
        store_url = with_schema(pg_url, schema)
        cleanup.append(("schema", schema))
        cleanup.append(("prefix", prefix))
        state_url, tcp = redis_url, None
        if proxy:
            target = redis.connection.parse_url(redis_url)
            tcp = ThreadedProxy(target.get("host", "127.0.0.1"), int(target.get("port", 6379)))
            tcp.start()
            cleanup.append(("proxy", tcp))
            state_url = tcp.url(int(target.get("db", 0)))
        farm = farm_proc(tmp_path, write_scenario(tmp_path / "scenario.toml", scenario))
        procs.append(farm)
        start_processes([farm])
        config = write_config(
            tmp_path / "imagerouter.toml",
            _get_json(f"{farm.url}/_farm/providers"),
            store=store_url,
            state=state_url,
            prefix=prefix,
            server=server,
            router=router,
            providers=providers,
        )
        args = args or {}
        nodes = [replica_proc(tmp_path, config, i, *args.get(i, ())) for i in range(replicas)]
        procs.extend(nodes)
        start_processes(nodes)  # they migrate the empty schema at once: the advisory lock
        store = PostgresJobStore(store_url, pool_max=4, poll_interval_s=0.2)
        await store.start()
        cleanup.append(("store", store))
        return Fleet(farm, nodes, store, config, tcp)

    try:
        yield make
    finally:
        for proc in reversed(procs):
            proc.stop()
        for kind, thing in reversed(cleanup):
            with contextlib.suppress(Exception):  # a fault test may leave a service down
                if kind == "store":
                    await thing.aclose()
                elif kind == "proxy":
                    thing.stop()
                elif kind == "schema":
                    await drop_schema(pg_url, thing)
                elif kind == "prefix":
                    delete_prefix(redis_url, thing)
