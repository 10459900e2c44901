"""The conformance checks: one provider plugin, one farm adapter, every rule of the contract.

:class:`Conformance` runs each check against a :class:`~imagerouter.testing.KitFarm` and raises
:class:`ConformanceFailure` (an ``AssertionError``) whose message names what was done to the
plugin, what it should have done, and what it did instead. :func:`run_conformance` runs them
all and returns a :class:`ConformanceReport`; :class:`~imagerouter.testing.ProviderConformance`
turns each check into a pytest test.

Calls run synchronously, each on a fresh event loop in asyncio debug mode, so call them from
plain (not ``async def``) tests.

One concept (over 400 lines): every check of the conformance contract, in order.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import re
import secrets
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from imagerouter.catalog import load_catalog
from imagerouter.errors import ProviderTimeout
from imagerouter.generation import ImageRequest, ProviderOutput, output_problem
from imagerouter.plugins import ENTRY_POINT_GROUP, load_plugins
from imagerouter.provider import Provider
from imagerouter.testing.calls import (
    REQUEST,
    CallResult,
    exception_texts,
    run_call,
    until_generating,
)
from imagerouter.testing.farm_thread import KitFarm
from imagerouter.testing.faults import FAULTS, Fault, describe_outcome
from imagerouter.testing.report import (
    CheckResult,
    CheckSkipped,
    ConformanceFailure,
    ConformanceReport,
)
from mockproviders import FarmAdapter
from mockproviders.bridge import FARM_OPTIONS

__all__ = ["Conformance", "run_conformance"]

#: A generation slow enough that a job is still running when the kit cancels it.
SLOW_GENERATION = {"generation_ms": {"dist": "fixed", "p50": 5000}}
#: A short generation, so a queue API is polled at least once.
QUEUED_GENERATION = {"generation_ms": {"dist": "fixed", "p50": 300}}
#: The deadline of the deadline check.
SHORT_DEADLINE_S = 0.5
_CORO = re.compile(r"coro=<[^>]*>")


class Conformance:
    """The contract checks for one provider plugin against its farm adapter.

    Args:
        provider_class: the plugin's :class:`~imagerouter.Provider` subclass.
        model: a provider model id the farm adapter serves (the round trip uses it).
        farm_adapter: the adapter speaking the provider's wire format; by default the one the
            plugin registers from ``register_farm_adapters``, else the one an installed plugin
            registers under the same provider id (for a subclass of an installed provider).
        plugin: the plugin module (or object) with the hook implementations; by default the
            module that defines ``provider_class``.
        entry_point: the plugin's name in the ``imagerouter`` entry-point group, checked when
            given.
        models: more provider model ids to round-trip (catalog entries are added by themselves).
        catalog: a catalog file laid over the shipped one, for the models check.
        cancels_at_provider: the API can cancel a queued job, so the plugin must (False for an
            API without a cancel call).
        slow_callback_s: a callback holding the loop longer than this is a blocking call: a
            coarse backstop for blocking work the patches cannot see (CPU-bound parsing, a C
            extension's I/O), generous so a busy machine never fails a correct plugin.
        faults: the faults to check (default: every fault the farm can inject).
        provider_options: the plugin's options, laid over the farm's fast polling settings.
    """

    def __init__(
        self,
        provider_class: type[Provider],
        model: str,
        *,
        farm_adapter: FarmAdapter | None = None,
        plugin: object | None = None,
        entry_point: str | None = None,
        models: Sequence[str] = (),
        catalog: str | Path | None = None,
        cancels_at_provider: bool = True,
        slow_callback_s: float = 1.0,
        faults: Sequence[Fault] = FAULTS,
        provider_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.provider_class, self.model = provider_class, model
        self.provider_id = provider_class.provider_id
        self.plugin = plugin if plugin is not None else sys.modules[provider_class.__module__]
        self.entry_point, self.models, self.catalog = entry_point, tuple(models), catalog
        self.cancels_at_provider, self.slow_callback_s = cancels_at_provider, slow_callback_s
        self.faults = tuple(faults)
        self.options = {**FARM_OPTIONS, **(provider_options or {})}
        self.adapter = farm_adapter or self._registered_adapter()
        #: A distinctive API key: it must never show up in a log line or an exception.
        self.api_key = f"kit-secret-{secrets.token_hex(12)}"
        self.farm: KitFarm | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Conformance:
        self.farm = KitFarm([self.adapter])
        self.farm.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.farm is not None:
            self.farm.close()
            self.farm = None

    @property
    def check_names(self) -> list[str]:
        """Every check, in the order :meth:`run` runs them."""
        return [
            "registration",
            "entry-point",
            "round-trip",
            "models",
            *(f"fault:{fault.id}" for fault in self.faults),
            "deadline",
            "cancellation",
            "non-blocking",
            "secrets",
        ]

    def run_check(self, name: str) -> None:
        """Run one check by name; raises ConformanceFailure or CheckSkipped."""
        if name.startswith("fault:"):
            wanted = name.removeprefix("fault:")
            fault = next((fault for fault in self.faults if fault.id == wanted), None)
            if fault is None:
                raise KeyError(f"no fault {wanted!r}; known: {[f.id for f in self.faults]}")
            self.check_fault(fault)
            return
        getattr(self, "check_" + name.replace("-", "_"))()

    def run(self, only: Iterable[str] | None = None) -> ConformanceReport:
        """Run every check (or those named in ``only``) and report each outcome."""
        report = ConformanceReport(self.provider_id)
        for name in only or self.check_names:
            try:
                self.run_check(name)
            except ConformanceFailure as failure:
                report.results.append(CheckResult(name, "failed", str(failure)))
            except CheckSkipped as skipped:
                report.results.append(CheckResult(name, "skipped", str(skipped)))
            else:
                report.results.append(CheckResult(name, "passed"))
        return report

    # --- the checks ---------------------------------------------------------------------------

    def check_registration(self) -> None:
        """The plugin's hooks register the provider class (and the farm adapter) cleanly."""
        plugins = load_plugins(entry_points=False, extra=[self.plugin])
        problems = "; ".join(str(problem) for problem in plugins.problems)
        if problems:
            raise ConformanceFailure(f"the plugin does not load cleanly: {problems}")
        registered = plugins.providers.get(self.provider_id)
        if registered is not self.provider_class:
            raise ConformanceFailure(
                f"register_providers → expected it to register {self.provider_class.__name__} "
                f"as {self.provider_id!r}, got {registered!r} "
                f"(registered: {sorted(plugins.providers) or 'nothing'})"
            )
        if self.adapter.name != self.provider_id:
            raise ConformanceFailure(
                f"the farm adapter is named {self.adapter.name!r} but the provider id is "
                f"{self.provider_id!r}: farm_router would not configure the provider"
            )
        if not self.provider_class.default_base_url:
            raise ConformanceFailure("default_base_url is empty: where does the real API live?")

    def check_entry_point(self) -> None:
        """The installed distribution exposes the plugin under the ``imagerouter`` group."""
        if self.entry_point is None:
            raise CheckSkipped("no entry_point given (a drop-in or in-repo plugin)")
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=self.entry_point)
        if not found:
            raise ConformanceFailure(
                f"no {ENTRY_POINT_GROUP!r} entry point named {self.entry_point!r} is installed: "
                f'add `{self.entry_point} = "<module>"` under '
                "[project.entry-points.imagerouter] and reinstall the package"
            )
        loaded = next(iter(found)).load()
        if loaded is not self.plugin:
            raise ConformanceFailure(
                f"entry point {self.entry_point!r} loads {loaded!r}, not the plugin {self.plugin!r}"
            )
        origin = load_plugins().provider_origin.get(self.provider_id)
        if origin != self.entry_point:
            raise ConformanceFailure(
                f"load_plugins() → expected {self.provider_id!r} from entry point "
                f"{self.entry_point!r}, got it from {origin!r}"
            )

    def check_round_trip(self) -> None:
        """A healthy farm gives back one fetchable image, straight away and through the queue."""
        for label, faults in (("no faults", {}), ("a 300 ms generation", QUEUED_GENERATION)):
            self._round_trip(self.model, faults, f"round trip of {self.model!r} with {label}")

    def check_models(self) -> None:
        """Every model id the plugin is asked for (model, models, catalog entries) round-trips."""
        wanted = {f"model {self.model!r}": self.model}
        wanted |= {f"model {model!r}": model for model in self.models}
        requests: dict[str, ImageRequest] = {}
        for name, entry, request in self._catalog_entries():
            label = f"catalog model {name!r} → {self.provider_id} model {entry!r}"
            wanted[label] = entry
            if request is not None:
                requests[label] = request
        failures = []
        for label, model in wanted.items():
            try:
                self._round_trip(model, {}, label, requests.get(label))
            except ConformanceFailure as failure:
                failures.append(str(failure))
        if failures:
            raise ConformanceFailure("; ".join(failures))

    def check_fault(self, fault: Fault) -> None:
        """The farm's ``fault`` comes back as exactly the error the contract names."""
        self._set_faults(fault.profile)
        for number in range(fault.warm_up_calls):
            warm_up = self.call()
            if not isinstance(warm_up.outcome, ProviderOutput):
                raise ConformanceFailure(
                    f"fault {fault.description}: warm-up call {number + 1} should have "
                    f"succeeded, got {describe_outcome(warm_up.outcome)}"
                )
        result = self.call(deadline_s=fault.deadline_s)
        problem = fault.judge(result.outcome, self.provider_id)
        if problem:
            raise ConformanceFailure(problem)

    def check_deadline(self) -> None:
        """A deadline passing mid-generation is a ProviderTimeout, and the job is cancelled."""
        self._set_faults(SLOW_GENERATION)
        result = self.call(deadline_s=SHORT_DEADLINE_S)
        if type(result.outcome) is not ProviderTimeout:
            raise ConformanceFailure(
                f"deadline of {SHORT_DEADLINE_S} s passing while the image is still generating "
                f"→ expected ProviderTimeout, got {describe_outcome(result.outcome)}"
            )
        self._require_cancelled_at_provider("the deadline passed")

    def check_cancellation(self) -> None:
        """Cancelling the call's task mid-generation propagates CancelledError and cancels the
        job at the provider (the router does this to the loser of a hedge)."""
        self._set_faults(SLOW_GENERATION)
        result = self.call(deadline_s=30.0, cancel=True)
        if not isinstance(result.outcome, asyncio.CancelledError):
            raise ConformanceFailure(
                "task.cancel() while the image is generating → expected asyncio.CancelledError "
                f"to propagate, got {describe_outcome(result.outcome)}"
            )
        self._require_cancelled_at_provider("its task was cancelled")

    def check_non_blocking(self) -> None:
        """No call blocks the event loop: no time.sleep, no sync socket, no slow callback."""
        runs = [("round trip", {}), ("queued generation", QUEUED_GENERATION)]
        runs += [(f"fault {f.id}", f.profile) for f in self.faults if f.id in ("429", "503")]
        self._set_faults({})
        self.call()  # warm-up: first-use imports and connection setup are not the plugin's
        for label, faults in runs:
            self._set_faults(faults)
            seen = list(dict.fromkeys(self.call().blocking))
            if seen:
                raise ConformanceFailure(
                    f"{label} → expected no blocking call on the event loop, got "
                    + "; ".join(_shorten(item) for item in seen[:3])
                )

    def check_secrets(self) -> None:
        """The API key never appears in a log record (any level) or an exception's text."""
        runs = [("round trip", {})]
        runs += [
            (f"fault {fault.description}", fault.profile)
            for fault in self.faults
            if fault.id not in ("timeout", "rate-limit")
        ]
        for label, faults in runs:
            self._set_faults(faults)
            result = self.call()
            texts = [*result.log_texts, repr(self.new_provider())]
            if isinstance(result.outcome, BaseException):
                texts += exception_texts(result.outcome)
            elif isinstance(result.outcome, ProviderOutput):
                texts.append(repr(result.outcome))
            leaks = [text for text in texts if self.api_key in text]
            if leaks:
                shown = _shorten(leaks[0].replace(self.api_key, "<API KEY>"), 300)
                raise ConformanceFailure(
                    f"{label} → expected the API key nowhere in logs or exceptions, got it in "
                    f"{shown!r}"
                    + (f" (and {len(leaks) - 1} more places)" if len(leaks) > 1 else "")
                )

    # --- calling the plugin -------------------------------------------------------------------

    def new_provider(self) -> Provider:
        """A provider instance pointed at the farm, as ``farm_router`` would build it."""
        entry = self._farm().providers()["providers"][self._adapter_name()]
        return self.provider_class(
            name=self.provider_id,
            api_key=self.api_key,
            base_url=entry["base_url"],
            options=self.provider_class.Options(**self.options),
        )

    def call(
        self,
        *,
        model: str | None = None,
        deadline_s: float = 5.0,
        cancel: bool = False,
        fetch_images: bool = False,
        request: ImageRequest | None = None,
    ) -> CallResult:
        """One watched ``generate`` of ``model`` (default: the kit's), on a fresh provider;
        ``request`` replaces the kit's image request (a catalog video model's own).

        With ``cancel``, the call's task is cancelled once the plugin holds a job at the farm.
        """
        cancel_when = functools.partial(until_generating, self._farm(), self._adapter_name())
        return run_call(
            self.new_provider(),
            model or self.model,
            deadline_s=deadline_s,
            slow_callback_s=self.slow_callback_s,
            cancel_when=cancel_when if cancel else None,
            fetch_images=fetch_images,
            request=request,
        )

    # --- helpers ------------------------------------------------------------------------------

    def _round_trip(
        self,
        model: str,
        faults: Mapping[str, Any],
        label: str,
        request: ImageRequest | None = None,
    ) -> None:
        self._set_faults(faults)
        result = self.call(model=model, fetch_images=True, request=request)
        output = result.outcome
        if not isinstance(output, ProviderOutput):
            raise ConformanceFailure(
                f"{label} → expected a ProviderOutput, got {describe_outcome(output)}"
            )
        problem = output_problem(output)
        if problem is not None:  # the router would count it as the provider failing
            raise ConformanceFailure(
                f"{label} → expected images the router takes, generate {problem}"
            )
        if len(output.images) != REQUEST.n:
            raise ConformanceFailure(
                f"{label} → expected {REQUEST.n} image, got {len(output.images)}"
            )
        if result.image_problems:
            raise ConformanceFailure(f"{label} → {'; '.join(result.image_problems)}")

    def _require_cancelled_at_provider(self, when: str) -> None:
        jobs = self._farm().jobs(self._adapter_name())
        if not jobs or not self.cancels_at_provider:
            return  # a synchronous API (nothing queued), or one that cannot cancel
        if not any(job.canceled_at is not None for job in jobs):
            raise ConformanceFailure(
                f"{when} → expected the plugin to cancel the queued job at the provider, got a "
                "job left running (no cancel reached the farm); cancel it on ProviderTimeout and "
                "CancelledError, or set cancels_at_provider = False if the API cannot cancel"
            )

    def _set_faults(self, faults: Mapping[str, Any]) -> None:
        farm = self._farm()
        farm.set_faults(self._adapter_name(), dict(faults))
        farm.reset()

    def _farm(self) -> KitFarm:
        if self.farm is None:
            raise RuntimeError("use the kit as `with Conformance(...) as kit:`")
        return self.farm

    def _adapter_name(self) -> str:
        return self.adapter.name

    def _registered_adapter(self) -> FarmAdapter:
        """The adapter the plugin registers; else the one an installed plugin registers under
        the provider id (a test's subclass of an installed provider lives in a module without
        hooks)."""
        own = load_plugins(entry_points=False, extra=[self.plugin]).farm_adapters
        for adapter in [*own, *load_plugins().farm_adapters]:
            if adapter.name == self.provider_id:
                return adapter
        raise ValueError(
            f"no farm adapter speaks {self.provider_id!r}: register one from the plugin's "
            "register_farm_adapters hook, or pass farm_adapter="
        )

    def _catalog_entries(self) -> Iterator[tuple[str, str, ImageRequest | None]]:
        """(catalog model, provider model id, request): a video model is asked for its
        default video, under the id that request picks; an image model for the kit's image."""
        catalog = load_catalog(self.catalog)
        for name, model in catalog.models.items():
            request = None
            if model.kind == "video":
                request = model.resolve_request(
                    ImageRequest(model=name, prompt=REQUEST.prompt, generate_audio=False)
                    if model.video is not None and model.video.audio
                    else ImageRequest(model=name, prompt=REQUEST.prompt)
                )
            for entry in model.providers:
                if entry.provider == self.provider_id:
                    model_id = entry.model if request is None else entry.model_for(request)
                    yield name, model_id, request


def _shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters; a task's repr cut down to its coroutine."""
    match = _CORO.search(text)
    if match:
        text = text[: text.index("<")] + match[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_conformance(
    provider_class: type[Provider],
    model: str,
    *,
    only: Iterable[str] | None = None,
    **options: Any,
) -> ConformanceReport:
    """Run the kit (every check, or those named in ``only``) and return the report.

    ``options`` are :class:`Conformance`'s keyword arguments (``farm_adapter``, ``plugin``,
    ``entry_point``, ``cancels_at_provider``…). Check names: ``registration``,
    ``entry-point``, ``round-trip``, ``models``, ``fault:<id>`` (see ``FAULTS``), ``deadline``,
    ``cancellation``, ``non-blocking``, ``secrets``.
    """
    with Conformance(provider_class, model, **options) as kit:
        return kit.run(only)
