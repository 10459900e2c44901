"""The simulated world of one run: the real router built from the spec, and one simulated
provider account per router provider instance, sharing the farm's engine and counters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imagerouter.clock import Clock
from imagerouter.plugins import Plugins, load_plugins
from imagerouter.resilience.breaker import BreakerTransition
from imagerouter.router import Router
from imagerouter.simulate.providers import ProviderAccount, Reanswer, Schedule, queue_api
from imagerouter.simulate.spec import Account, SimulationSpec, deep_merge
from imagerouter.simulate.windows import RetryAfterCounter
from mockproviders.engine import FaultEngine, stable_seed
from mockproviders.profile import FaultProfile
from mockproviders.scenario import Scenario
from mockproviders.stats import FarmStats

__all__ = ["World", "build_router", "router_config"]


def accounts_of(spec: SimulationSpec) -> dict[str, Account]:
    """The scenario's accounts, plus a default account for every provider the catalog names
    that no account serves: the router makes an instance for each, as it would with no
    configuration. An optional catalog entry (Replicate's: used where its plugin has a key)
    counts when the farm scenario models its provider: the scenario's author put it there to
    be called."""
    from imagerouter.catalog import load_catalog

    accounts = dict(spec.settings.accounts)
    covered = set(accounts) | {a.plugin for a in accounts.values() if a.plugin}
    configured = spec.config.get("providers", {})
    covered |= set(configured) | {p.get("plugin") for p in configured.values() if p.get("plugin")}
    catalog = spec.catalog or load_catalog(spec.config.get("catalog"))
    for model in catalog.models.values():
        for entry in model.providers:
            modeled = entry.provider in spec.farm.providers
            if (modeled or not entry.optional) and entry.provider not in covered:
                accounts[entry.provider] = Account()
                covered.add(entry.provider)
    return accounts


def router_config(spec: SimulationSpec) -> dict[str, Any]:
    """The router config of a run: the accounts as ``[providers.*]``, the spec's config (with
    its policies) over them, and every instance given its simulated API key."""
    accounts = accounts_of(spec)
    providers = {name: account.router_settings() for name, account in accounts.items()}
    config = deep_merge({"providers": providers}, spec.config)
    for name, settings in config.get("providers", {}).items():
        account = accounts.get(name)
        settings.pop("api_key_env", None)
        settings["api_key"] = (
            account.key if account is not None and account.key else settings.get("api_key")
        ) or f"sim-{name}"
    return config


def build_router(
    spec: SimulationSpec,
    clock: Clock,
    on_transition: Callable[[BreakerTransition], None] | None = None,
    seed: int | None = None,
    plugins: Plugins | None = None,
) -> Router:
    """The real router of a run, on ``clock``; its provider objects are never called."""
    return Router.from_config(
        router_config(spec),
        catalog=spec.catalog,
        clock=clock,
        environ={},
        on_transition=on_transition,
        seed=seed,
        plugins=plugins,
    )


class World:
    """The router and the provider accounts behind its instances, on one virtual clock.

    Args:
        spec: the run's scenario and policy.
        clock: the virtual clock everything reads.
        schedule: puts a provider-side event on the simulator's queue.
        reanswer: told when a queued generation changes a call's answer.
        on_transition: receives every breaker transition of the router.
    """

    def __init__(
        self,
        spec: SimulationSpec,
        clock: Clock,
        schedule: Schedule,
        reanswer: Reanswer,
        on_transition: Callable[[BreakerTransition], None] | None = None,
    ) -> None:
        seed = spec.settings.seed
        plugins = load_plugins(plugins_dir=spec.config.get("plugins_dir"))
        self.router = build_router(
            spec, clock, on_transition, seed=stable_seed(seed, "router"), plugins=plugins
        )
        accounts = accounts_of(spec)
        adapters = {adapter.name: adapter for adapter in plugins.farm_adapters}
        profiles: dict[str, FaultProfile] = {}
        plan: list[tuple[str, str, str, str, Account]] = []
        config = router_config(spec)["providers"]
        for name, instance in self.router.instances.items():
            account = accounts.get(name, Account())
            plugin = instance.provider.provider_id
            base = spec.farm.providers.get(plugin, FaultProfile())
            tier = plugin
            if account.faults is not None:
                tier = f"{name} (account)"
                profile = base.overlay(account.faults)
                if account.faults.phases:
                    profile = profile.model_copy(
                        update={"phases": [*base.phases, *account.faults.phases]}
                    )
                profiles[tier] = profile
            else:
                profiles.setdefault(tier, base)
            plan.append((name, tier, config[name]["api_key"], plugin, account))
        # The farm scenario's own seed: the same fault draws as the farm for the same requests.
        scenario = Scenario(seed=spec.farm.seed, providers=profiles)
        self.engine = FaultEngine(scenario, list(profiles), clock)
        self._stats = FarmStats(list(profiles), clock)
        #: Retry-After windows per tier (the fault engine's provider name) and key.
        self.windows = {tier: RetryAfterCounter() for tier in profiles}
        self.started = clock.now()
        self.accounts: dict[str, ProviderAccount] = {}
        for name, tier, key, plugin, account in plan:
            adapter = adapters.get(plugin)
            queue = account.api == "queue" if account.api is not None else queue_api(plugin)
            self.accounts[name] = ProviderAccount(
                name=name,
                tier=tier,
                key=key,
                plugin=plugin,
                profile=profiles[tier],
                engine=self.engine,
                stats=self._stats,
                windows=self.windows[tier],
                clock=clock,
                started=self.started,
                options=self.router.instances[name].provider.options,
                queue=queue,
                retry_after_ms=bool(adapter is not None and adapter.retry_after_ms),
                sends_budget=bool(adapter is not None and adapter.budget_headers),
                max_concurrent=account.max_concurrent,
                over_capacity=account.over_capacity,
                schedule=schedule,
                reanswer=reanswer,
            )

    @property
    def stats(self) -> FarmStats:
        """The farm's counters, up to date (the accounts' own counts added in first)."""
        for account in self.accounts.values():
            account.flush_stats()
        return self._stats
