"""The library API: ``async with Router.from_config(cfg) as router: await router.generate(req)``.

The router owns the shared pooled HTTP session every plugin uses and one
:class:`~imagerouter.instances.ProviderInstance` per configured provider, each with its own
breaker, health, cooldown and retry budget. It is built once from settings, the loaded plugins
and the catalog; every configuration mistake surfaces here, at start, naming the file, the field
and the reason.

One concept (over 400 lines): the router and how it is built from settings, side by side.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from imagerouter.catalog import Catalog, CatalogModel, load_catalog
from imagerouter.clock import Clock, MonotonicClock
from imagerouter.config import (
    ProviderSettings,
    RouterSettings,
    Settings,
    load_settings,
    validate,
)
from imagerouter.errors import (
    ConfigError,
    ModelUnavailable,
    NoProviderAvailable,
    OutputUnusable,
    ProviderError,
    ProviderUnavailable,
)
from imagerouter.generation import (
    AttemptEvent,
    ImageRequest,
    ImageResult,
    ProviderOutput,
    output_problem,
)
from imagerouter.instances import ProviderInstance, retry_budget_of
from imagerouter.lifecycle import AsyncResource
from imagerouter.listeners import Listeners
from imagerouter.plugins import Plugins, load_plugins
from imagerouter.preferences import RoutingPreferences, apply_preferences
from imagerouter.provider import CallContext, Progress
from imagerouter.resilience.breaker import BreakerTransition, CircuitBreaker
from imagerouter.resilience.concurrency import AIMDLimit, FixedLimit
from imagerouter.resilience.cooldowns import Cooldowns
from imagerouter.resilience.health import HealthScore
from imagerouter.resilience.spend import SpendMeter
from imagerouter.routing import Call, Candidate, GiveUp, JobPlan, Wait
from imagerouter.transport import HttpPool

__all__ = ["AcceptOutput", "ProgressCallback", "Router"]

#: Told of each progress report of a job's provider calls: the instance's name and the report.
ProgressCallback = Callable[[str, Progress], None]

#: Takes a provider's output before it counts as a success (the server stores its images),
#: given the seconds left before the job's deadline, which it keeps to; raises OutputUnusable
#: when the output is the provider's failure (see Router.generate).
AcceptOutput = Callable[[ProviderOutput, float], Awaitable[None]]

log = logging.getLogger(__name__)
#: Prices remembered per (model, size, quality, n, format) before the memo starts over.
_PRICES_KEPT = 4096


@dataclass(slots=True)
class _Outcome:
    """One finished provider call: its output or its error, and how long it took."""

    step: Call
    ctx: CallContext
    output: ProviderOutput | None
    error: ProviderError | None
    latency: float
    started_at: float


class Router(AsyncResource):
    """Routes image requests across provider instances with failover and resilience state."""

    def __init__(
        self,
        *,
        settings: Settings,
        catalog: Catalog,
        instances: Mapping[str, ProviderInstance],
        clock: Clock,
        session: aiohttp.ClientSession | None = None,
        seed: int | None = None,
        transitions: Listeners[BreakerTransition] | None = None,
    ) -> None:
        self.settings, self.catalog, self.clock = settings, catalog, clock
        #: Every breaker transition of every instance goes to these listeners (``.add(fn)``).
        self.transitions = transitions if transitions is not None else Listeners()
        #: Every attempt of every job goes to these listeners (``.add(fn)``).
        self.attempts: Listeners[AttemptEvent] = Listeners()
        #: Every job that ends without a provider goes to these listeners (``.add(fn)``).
        self.give_ups: Listeners[NoProviderAvailable] = Listeners()
        self.instances = dict(instances)
        self.rng = random.Random(seed)
        self._session = session
        self._owns_session = session is None
        self._http: HttpPool | None = None
        self._candidates: dict[str, list[Candidate]] = {}
        # (model, size, quality, n, output_format) -> price: all a price and its check read
        self._prices: dict[tuple[str, str, str, int, str], int] = {}
        self._video: RouterSettings | None = None

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: Settings | Mapping[str, Any] | str | Path | None = None,
        *,
        plugins: Plugins | None = None,
        catalog: Catalog | None = None,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        on_transition: Callable[[BreakerTransition], None] | None = None,
        seed: int | None = None,
    ) -> Router:
        """Build a router from settings (an object, a dict, a TOML path, or the environment).

        Raises ConfigError (naming file, field and reason) for an unknown provider in the
        catalog, a provider plugin that is not installed, a missing API key, or a bad option.
        """
        environ = os.environ if environ is None else environ
        if isinstance(config, Settings):
            settings = config
        elif isinstance(config, Mapping):
            settings = load_settings(data=config, environ=environ)
        else:
            settings = load_settings(config, environ=environ)
        plugins = plugins or load_plugins(plugins_dir=settings.plugins_dir)
        catalog = catalog or load_catalog(settings.catalog)
        clock = clock or MonotonicClock()
        transitions: Listeners[BreakerTransition] = Listeners()
        transitions.add(_log_transition)
        if on_transition is not None:
            transitions.add(on_transition)
        instances = _build_instances(settings, plugins, catalog, clock, environ, transitions)
        return cls(
            settings=settings,
            catalog=catalog,
            instances=instances,
            clock=clock,
            seed=seed,
            transitions=transitions,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled HTTP session every provider call goes through."""
        if self._session is None:
            raise RuntimeError(
                "use the router as 'async with Router...(...) as router:' (or start() it)"
            )
        return self._session

    @property
    def http(self) -> HttpPool | None:
        """The lean keep-alive pool providers' JSON calls (and small downloads) go through;
        None until the router starts."""
        return self._http

    async def start(self) -> None:
        """Open the connection pools (the session unless one was given); ``async with`` calls
        it. Providers' JSON calls go through the lean pool, anything else (image downloads)
        through the session."""
        ssl_context: ssl.SSLContext | None = None
        if self.settings.ca_bundle:
            ssl_context = ssl.create_default_context(cafile=self.settings.ca_bundle)
        if self._http is None:
            self._http = HttpPool(
                limit=self.settings.http.max_connections,
                limit_per_host=self.settings.http.max_connections_per_host,
                ssl_context=ssl_context,
                user_agent="imagerouter",
            )
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.settings.http.max_connections,
                limit_per_host=self.settings.http.max_connections_per_host,
                ssl=ssl_context or True,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                # providers' cookies (load balancers', CDNs') are not kept or sent back: calls
                # are stateless, and filtering a jar costs every request several microseconds
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def aclose(self) -> None:
        """Close the pools this router opened (a given session stays open)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # --- the API --------------------------------------------------------------------------------

    async def generate(
        self,
        request: ImageRequest,
        *,
        deadline_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        accept: AcceptOutput | None = None,
    ) -> ImageResult:
        """Generate ``request`` on the best available provider, failing over as needed;
        ``on_progress`` hears what the providers' queues report meanwhile.

        ``accept``, when given, is awaited with each provider's output and the seconds left
        before the job's deadline, which it keeps to, before that call counts as a success:
        the server downloads and stores the images there. An output it finds unusable (it
        raises OutputUnusable: the provider's URL failed or did not answer in time, its bytes
        are no image) makes the call the provider's failure (``ProviderUnavailable``), and the
        job goes on to the next candidate as after any other. Whatever else it raises (the
        storage cannot write) ends the job, the call recorded as the success it was.

        Raises UnknownModel, the ProviderError that ended the job when it may not fail over
        (ContentRejected, InvalidRequest), NoProviderAvailable when every candidate is
        exhausted or the deadline passed, or what ``accept`` raised. Every attempt is on the
        result or the error; a cancelled generate's CancelledError carries them as
        ``attempts`` too (the call it abandoned last, ``canceled``).
        """
        model = self.catalog.resolve(request.model)
        if model.video is not None:  # the video fields the client left out, filled in
            request = model.video.resolve(model.name, request)
        plan = self.plan(model, deadline_s, request.routing)
        try:
            while True:
                step = plan.next_step()
                if isinstance(step, Wait):
                    await asyncio.sleep(max(0.0, step.until - self.clock.now()))
                    continue
                if isinstance(step, GiveUp):
                    if isinstance(step.error, NoProviderAvailable):
                        self.give_ups(step.error)
                    raise step.error
                if model.hedge:
                    outcome = await self._hedged(plan, step, request, on_progress)
                else:
                    outcome = await self._call(plan, step, request, on_progress)
                if accept is not None and outcome.error is None:
                    await self._accept(plan, model, request, outcome, accept)
                result = self._settle(plan, model, request, outcome)
                if result is not None:
                    return result
        except asyncio.CancelledError as cancelled:
            cancelled.attempts = plan.attempts  # type: ignore[attr-defined]
            raise

    def plan(
        self,
        model: CatalogModel,
        deadline_s: float | None = None,
        routing: RoutingPreferences | None = None,
    ) -> JobPlan:
        """A fresh routing plan for one job of ``model`` (the simulator drives these too),
        with the client's ``routing`` preferences applied: every candidate they leave out is
        recorded on the plan as a skip."""
        candidates = self.candidates_for(model)
        settings = self.settings.router if model.kind == "image" else self._video_settings()
        applied = None
        if routing is not None:
            applied = apply_preferences(routing, candidates, model.policy, self.rng)
            candidates = applied.candidates
        plan = JobPlan(
            model=model,
            candidates=candidates,
            deadline=self.clock.now() + (deadline_s or settings.deadline_s),
            settings=settings,
            clock=self.clock,
            rng=self.rng,
            on_attempt=self.attempts,
            fixed_order=applied is not None and applied.fixed_order,
        )
        if applied is not None:
            for candidate, reason in applied.skipped:
                plan.note_skip(candidate.instance.name, reason)
        return plan

    def _video_settings(self) -> RouterSettings:
        """The router settings with the video attempt timeout and deadline (minutes)."""
        if self._video is None:
            router = self.settings.router
            self._video = router.model_copy(
                update={
                    "attempt_timeout_s": router.video_attempt_timeout_s,
                    "deadline_s": router.video_deadline_s,
                }
            )
        return self._video

    async def _call(
        self,
        plan: JobPlan,
        step: Call,
        request: ImageRequest,
        on_progress: ProgressCallback | None = None,
    ) -> _Outcome:
        """Make one provider call; a plugin bug counts as the provider being unavailable."""
        candidate = step.candidate
        provider = candidate.instance.provider
        entry = candidate.entry
        provider_model = entry.model if plan.model.kind == "image" else entry.model_for(request)
        ctx = CallContext(self.session, provider_model, step.deadline, self.clock, http=self._http)
        if on_progress is not None:
            name = candidate.instance.name
            ctx.on_progress = lambda report: on_progress(name, report)
        started, started_at = self.clock.now(), self.clock.wall()
        output, error = None, None
        try:
            output = await provider.generate(request, ctx)
        except ProviderError as exc:
            error = exc
        except asyncio.CancelledError:
            plan.cancelled(step, self.clock.now() - started, started_at)
            raise
        except Exception as exc:
            log.exception("provider %s raised an unclassified error", provider.name)
            message = f"plugin raised {type(exc).__name__}: {exc}"
            error = ProviderUnavailable(message, provider=provider.name)
        else:
            if (problem := output_problem(output)) is not None:
                log.error("provider %s %s", provider.name, problem)
                error = ProviderUnavailable(f"plugin {problem}", provider=provider.name)
                output = None
        return _Outcome(step, ctx, output, error, self.clock.now() - started, started_at)

    async def _hedged(
        self,
        plan: JobPlan,
        first: Call,
        request: ImageRequest,
        on_progress: ProgressCallback | None = None,
    ) -> _Outcome:
        """Run ``first``; if it has not answered by its provider's recent p95, start the next
        candidate too. The first success wins and the other call is cancelled (a queue
        provider cancels at the provider); a failure while the other still runs is recorded
        and the other is awaited."""
        tasks = {asyncio.create_task(self._call(plan, first, request, on_progress))}
        try:
            done, _ = await asyncio.wait(tasks, timeout=first.candidate.instance.health.p95())
            if not done and (second := plan.hedge_step()) is not None:
                tasks.add(asyncio.create_task(self._call(plan, second, request, on_progress)))
            while True:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                tasks -= done
                outcomes = sorted(
                    (task.result() for task in done), key=lambda o: o.error is not None
                )
                for outcome in outcomes:
                    if outcome.error is None or not tasks:
                        return outcome
                    self._settle(plan, plan.model, request, outcome)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(
        self,
        plan: JobPlan,
        model: CatalogModel,
        request: ImageRequest,
        outcome: _Outcome,
        accept: AcceptOutput,
    ) -> None:
        """Hand a call's output to ``accept`` (see :meth:`generate`) with the time left before
        the job's deadline; an unusable output turns the call into the provider's failure."""
        output, candidate = outcome.output, outcome.step.candidate
        assert output is not None
        try:
            await accept(output, max(0.0, plan.deadline - self.clock.now()))
        except OutputUnusable as exc:
            problem = str(exc)
        except BaseException as exc:  # the taker's failure, not the provider's: it ends the job
            self._settle(plan, model, request, outcome)
            exc.attempts = plan.attempts  # type: ignore[attr-defined]
            raise
        else:
            return
        self._charge(model, candidate, request, output)  # it was made, and paid for
        name = candidate.instance.name
        log.warning("provider %s gave an output that could not be used: %s", name, problem)
        outcome.output = None
        outcome.error = ProviderUnavailable(f"output unusable: {problem}", provider=name)

    def _charge(
        self,
        model: CatalogModel,
        candidate: Candidate,
        request: ImageRequest,
        output: ProviderOutput,
    ) -> None:
        """Count a call's output in its instance's spend."""
        if model.kind == "image":
            candidate.instance.charge(candidate.entry.cost_usd, len(output.images))
        else:
            candidate.instance.charge(model.cost_usd(candidate.entry, request, 1), 1)

    def _settle(
        self, plan: JobPlan, model: CatalogModel, request: ImageRequest, outcome: _Outcome
    ) -> ImageResult | None:
        """Record a call's outcome: the result, None to go on, or raise what ends the job."""
        plan.record(
            outcome.step, outcome.error, outcome.latency, outcome.started_at, outcome.ctx.budget
        )
        error, candidate = outcome.error, outcome.step.candidate
        if error is None:
            assert outcome.output is not None
            self._charge(model, candidate, request, outcome.output)
            return ImageResult(
                model=model.name,
                provider=candidate.instance.name,
                provider_model=outcome.ctx.provider_model,
                images=outcome.output.images,
                provider_request_id=outcome.output.provider_request_id,
                metadata=dict(request.metadata),
                attempts=[attempt.as_dict() for attempt in plan.attempts],
            )
        if not error.failover:
            error.attempts = plan.attempts
            raise error
        return None

    def resolve(self, model: str) -> CatalogModel:
        """The catalog model for a name or alias (UnknownModel if neither)."""
        return self.catalog.resolve(model)

    def price(self, request: ImageRequest) -> int:
        """Credits ``request`` costs (UnknownModel; ModelUnavailable when no provider here
        serves the model; or UnsupportedRequest naming the field the model cannot serve). An
        image model's price is remembered per model, size, quality, n and output format, the
        only fields the price and its check read; refusals, requests with a video field and
        video models' prices (which read a size only when it is given) are not."""
        if (
            request.duration is None
            and request.resolution is None
            and request.aspect_ratio is None
            and request.generate_audio is None
            and request.image_url is None
        ):
            key = (request.model, request.size, request.quality, request.n, request.output_format)
            price = self._prices.get(key)
            if price is None:
                model = self._servable(request.model)
                price = model.price(request)
                if model.kind == "image":
                    if len(self._prices) >= _PRICES_KEPT:
                        self._prices.clear()
                    self._prices[key] = price
            return price
        return self._servable(request.model).price(request)

    def _servable(self, name: str) -> CatalogModel:
        """The catalog model ``name`` resolves to, if some provider instance here serves it
        (UnknownModel, or ModelUnavailable when none does)."""
        model = self.catalog.resolve(name)
        if not self.candidates_for(model):
            raise ModelUnavailable(model.name, [entry.provider for entry in model.providers])
        return model

    def candidates_for(self, model: CatalogModel) -> list[Candidate]:
        """The enabled provider instances serving ``model``, in catalog order."""
        cached = self._candidates.get(model.name)
        if cached is None:
            cached = [
                Candidate(self.instances[name], entry)
                for entry in model.providers
                for name in self._instance_names(entry.provider)
            ]
            self._candidates[model.name] = cached
        return cached

    def _instance_names(self, provider: str) -> list[str]:
        if provider in self.instances:
            return [provider]
        return [n for n, i in self.instances.items() if i.provider.provider_id == provider]

    def provider_status(self) -> list[dict[str, Any]]:
        """Each instance's breaker, cooldown, health and limits, as JSON-ready dicts."""
        now = self.clock.now()
        status = []
        for name, instance in self.instances.items():
            until = instance.cooldowns.until(name)
            probe_at = instance.breaker.next_probe_at
            status.append(
                {
                    "name": name,
                    "plugin": instance.provider.provider_id,
                    "base_url": instance.provider.base_url,
                    "breaker": instance.breaker.snapshot(),
                    "next_probe_in_s": None if probe_at is None else max(0.0, probe_at - now),
                    "health": {"score": instance.health.score, **instance.health.inputs()},
                    "cooldown_remaining_s": None if until is None else round(until - now, 3),
                    "concurrency": None
                    if instance.limit is None
                    else {"limit": instance.limit.limit, "in_flight": instance.limit.in_flight},
                    "retry_budget": instance.retry_budget.snapshot(),
                    "pace": None if instance.pace is None else instance.pace.snapshot(),
                    "spend": None if instance.spend is None else instance.spend.snapshot(),
                }
            )
        return status


def _log_transition(transition: BreakerTransition) -> None:
    log.warning(
        "breaker %s: %s -> %s (%s)",
        transition.name,
        transition.from_state,
        transition.to_state,
        transition.reason,
    )


def _build_instances(
    settings: Settings,
    plugins: Plugins,
    catalog: Catalog,
    clock: Clock,
    environ: Mapping[str, str],
    on_transition: Callable[[BreakerTransition], None],
) -> dict[str, ProviderInstance]:
    """One instance per configured provider, plus a default instance for every plugin the
    catalog names without configuration; checks every catalog entry resolves.

    A catalog entry marked ``optional`` is used only when its provider can be built: its plugin
    installed and its key present. Anything else missing is an error at start.
    """
    configured = dict(settings.providers)
    by_plugin: dict[str, list[str]] = {}
    for name, provider_settings in configured.items():
        by_plugin.setdefault(provider_settings.plugin or name, []).append(name)
    optional: set[str] = set()  # implicit instances every catalog entry marks optional
    required: set[str] = set()
    for model in catalog.models.values():
        for index, entry in enumerate(model.providers):
            (optional if entry.optional else required).add(entry.provider)
            if entry.provider in configured or entry.provider in by_plugin:
                continue
            if entry.provider in plugins.providers:
                configured[entry.provider] = ProviderSettings()
                by_plugin[entry.provider] = [entry.provider]
                continue
            if entry.optional:
                continue
            known = sorted({*configured, *plugins.providers})
            raise ConfigError(
                f"unknown provider {entry.provider!r} (known: {', '.join(known) or 'none'})",
                file=model.source or None,
                field=f"models.{model.name}.providers[{index}].provider",
            )
    shared_cooldowns = Cooldowns(clock)
    instances: dict[str, ProviderInstance] = {}
    skippable = optional - required - set(settings.providers)
    problems: list[ConfigError] = []
    for name, provider_settings in configured.items():
        if not provider_settings.enabled:
            continue
        try:
            instances[name] = _build_instance(
                name,
                provider_settings,
                settings,
                plugins,
                shared_cooldowns,
                clock,
                environ,
                on_transition,
            )
        except ConfigError as exc:
            if name not in skippable:
                problems.append(exc)
            else:
                log.info("optional provider %s left out: it has no key", name)
    if len(problems) > 1:  # every provider that cannot start, not one a run
        listed = "; ".join(f"{p.field}: {p.reason}" if p.field else p.reason for p in problems)
        raise ConfigError(f"{len(problems)} providers cannot start: {listed}", file=settings.source)
    if problems:
        raise problems[0]
    return instances


def _build_instance(
    name: str,
    provider_settings: ProviderSettings,
    settings: Settings,
    plugins: Plugins,
    cooldowns: Cooldowns,
    clock: Clock,
    environ: Mapping[str, str],
    on_transition: Callable[[BreakerTransition], None],
) -> ProviderInstance:
    plugin_id = provider_settings.plugin or name
    cls = plugins.providers.get(plugin_id)
    field = f"providers.{name}"
    if cls is None:
        raise ConfigError(
            plugins.why_missing(plugin_id), file=settings.source, field=f"{field}.plugin"
        )
    api_key = provider_settings.api_key.get_secret_value() if provider_settings.api_key else None
    key_env = provider_settings.api_key_env or cls.key_env_var
    if api_key is None and key_env:
        api_key = environ.get(key_env) or None
    if api_key is None and cls.key_env_var is not None:
        raise ConfigError(
            f"missing API key: set ${key_env} or {field}.api_key "
            f"(or {field}.enabled = false to leave {name} out)",
            file=settings.source,
            field=f"{field}.api_key",
        )
    base_url = provider_settings.base_url
    if base_url is None and cls.base_url_env_var:
        base_url = environ.get(cls.base_url_env_var) or None
    options = validate(
        cls.Options, provider_settings.options, file=settings.source, prefix=f"{field}.options"
    )
    try:
        provider = cls(name=name, api_key=api_key, base_url=base_url, options=options)
    except Exception as exc:  # a plugin's own fault, named where the config makes it
        raise ConfigError(
            f"plugin {plugin_id!r} could not be built: {type(exc).__name__}: {exc}",
            file=settings.source,
            field=field,
        ) from exc
    resilience = settings.router
    limit: FixedLimit | AIMDLimit | None = None
    if provider_settings.max_concurrency == "adaptive":
        limit = AIMDLimit()
    elif provider_settings.max_concurrency is not None:
        limit = FixedLimit(provider_settings.max_concurrency)
    caps = provider_settings.spend_caps
    return ProviderInstance(
        name=name,
        provider=provider,
        breaker=CircuitBreaker(name, resilience.breaker, clock, on_transition),
        health=HealthScore(resilience.health, clock),
        cooldowns=cooldowns,
        clock=clock,
        limit=limit,
        weight=provider_settings.weight,
        retry_budget=retry_budget_of(resilience.retry_budget, clock),
        spend=SpendMeter(name, caps, clock) if caps else None,
    )
