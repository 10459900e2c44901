"""Loading plugins: entry points of group ``imagerouter``, drop-in ``.py`` files from a plugins
directory, and plugin objects passed in code. A broken plugin is reported with its name and
the reason, and skipped; it never takes the others down."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
from pydantic import ValidationError

from imagerouter import hookspecs
from imagerouter.config import http_url_problem
from imagerouter.errors import PluginError
from imagerouter.provider import Provider, ProviderOptions

__all__ = ["ENTRY_POINT_GROUP", "PluginProblem", "Plugins", "load_plugins"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "imagerouter"
#: Comma-separated allow-list of entry-point names; unset means all.
LOAD_PLUGINS_ENV = "IMAGEROUTER_LOAD_PLUGINS"


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """A plugin that could not be used, and why."""

    plugin: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.reason}"


@dataclass
class Plugins:
    """The loaded plugins: the pluggy manager, the provider classes they registered (by
    ``provider_id``), the farm adapters, and the problems met on the way."""

    manager: pluggy.PluginManager
    providers: dict[str, type[Provider]] = field(default_factory=dict)
    provider_origin: dict[str, str] = field(default_factory=dict)
    problems: list[PluginProblem] = field(default_factory=list)
    #: Provider ids whose class was registered but refused, with the problem saying why.
    refused: dict[str, PluginProblem] = field(default_factory=dict)
    #: ``IMAGEROUTER_LOAD_PLUGINS`` as it was set (None: unset, every entry point loads).
    allow_list: str | None = None
    #: Installed entry points the allow-list left out, by name.
    left_out: list[str] = field(default_factory=list)
    #: Names in the allow-list that no installed entry point has (a typo, say).
    unknown_allowed: list[str] = field(default_factory=list)
    #: Log each problem as a warning when it is met (a command that prints them says no).
    log_problems: bool = True
    _farm_adapters: list[Any] | None = field(default=None, repr=False)

    @property
    def farm_adapters(self) -> list[Any]:
        """The farm adapters the plugins register, asked for the first time a farm (or the
        simulator, or the kit) needs them: the hooks import the mock's code, which a production
        router never loads. A hook that fails then joins :attr:`problems`."""
        if self._farm_adapters is None:
            self._farm_adapters, known = [], len(self.problems)
            for impl in self.manager.hook.register_farm_adapters.get_hookimpls():
                _call_hook(self, impl, self._farm_adapters.append)
            self._log(self.problems[known:])
        return self._farm_adapters

    def _log(self, problems: list[PluginProblem]) -> None:
        if self.log_problems:
            for problem in problems:
                log.warning("skipped %s", problem)

    def provider_class(self, provider_id: str) -> type[Provider]:
        """The class registered as ``provider_id``; PluginError saying why if none (see
        :meth:`why_missing`)."""
        try:
            return self.providers[provider_id]
        except KeyError:
            raise PluginError(provider_id, self.why_missing(provider_id)) from None

    def why_missing(self, provider_id: str) -> str:
        """Why no class is registered as ``provider_id``: its class was refused (the problem
        says why), ``IMAGEROUTER_LOAD_PLUGINS`` left its plugin out (with any name there that
        no plugin has), or no loaded plugin registers it (naming those that are loaded)."""
        if provider_id in self.refused:
            return f"provider {provider_id!r} did not load: {self.refused[provider_id]}"
        if provider_id in self.left_out:
            return (
                f"provider {provider_id!r} did not load: the installed plugin {provider_id!r} "
                f"is left out by {LOAD_PLUGINS_ENV}={self.allow_list}{self._unknown_note()}"
            )
        known = ", ".join(sorted(self.providers)) or "none"
        missing = f"no provider plugin {provider_id!r} is installed (loaded: {known})"
        if self.left_out:
            left_out = ", ".join(repr(name) for name in self.left_out)
            missing += f"; {LOAD_PLUGINS_ENV}={self.allow_list} leaves out {left_out}"
            missing += self._unknown_note()
        return missing

    def _unknown_note(self) -> str:
        """`` (it names 'x', which no installed plugin has)`` when the allow-list has typos."""
        if not self.unknown_allowed:
            return ""
        names = ", ".join(repr(name) for name in self.unknown_allowed)
        return f" (it names {names}, which no installed plugin has)"


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    if os.environ.get("IMAGEROUTER_TRACE_PLUGINS"):
        manager.trace.root.setwriter(lambda message: log.debug("pluggy: %s", message))
        manager.enable_tracing()
    return manager


#: The hooks a plugin may implement, by name (hookspecs' functions).
HOOKS = tuple(
    name for name, spec in vars(hookspecs).items() if hasattr(spec, f"{hookspecs.PROJECT}_spec")
)


def _register(plugins: Plugins, plugin: object, name: str, *, found: bool = True) -> None:
    """Register one plugin object; on a bad hook signature or an unknown hook, record a problem
    and leave the plugin unregistered. A plugin ``found`` (an entry point, a drop-in file) that
    implements no hook is a problem too: it was meant to, and would do nothing silently."""
    manager = plugins.manager
    if manager.is_registered(plugin) or manager.has_plugin(name):
        plugins.problems.append(PluginProblem(name, "registered twice; second copy skipped"))
        return
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        plugins.problems.append(PluginProblem(name, f"invalid hook implementation: {exc}"))
        return
    callers = manager.get_hookcallers(plugin) or []
    unknown = [caller.name for caller in callers if not caller.spec]
    if unknown:
        manager.unregister(plugin)
        plugins.problems.append(
            PluginProblem(name, f"implements unknown hook(s) {', '.join(unknown)} (typo?)")
        )
    elif not callers and found:
        manager.unregister(plugin)
        unmarked = [h for h in HOOKS if callable(getattr(plugin, h, None))]
        hint = (
            f"{', '.join(unmarked)} lacks @hookimpl"
            if unmarked
            else "a plugin is a module (or object) with @hookimpl functions such as "
            "register_providers"
        )
        plugins.problems.append(PluginProblem(name, f"implements no imagerouter hook: {hint}"))


def _load_module_from_path(path: Path) -> ModuleType:
    module_name = f"imagerouter_dropin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _check_provider_class(cls: object) -> str | None:
    """Why ``cls`` is not a usable provider class, or None if it is: what the router needs
    of it to build an instance is checked here, so a bad class is a reported problem rather
    than a crash of the router that configures it."""
    if not (inspect.isclass(cls) and issubclass(cls, Provider)):
        return f"register() takes a Provider subclass, got {cls!r}"
    if not cls.provider_id:
        return f"{cls.__name__} has no provider_id"
    if not inspect.iscoroutinefunction(cls.generate) or cls.generate is Provider.generate:
        return f"{cls.__name__}.generate must be an 'async def' override"
    return _check_base_url(cls) or _check_options(cls) or _check_instance(cls)


def _check_base_url(cls: type[Provider]) -> str | None:
    """A default base URL is a string: empty (the config must give one) or callable."""
    url = cls.default_base_url
    if not isinstance(url, str):
        return f"{cls.__name__}.default_base_url must be a string (the API's URL), got {url!r}"
    problem = http_url_problem(url) if url else None
    return f"{cls.__name__}.default_base_url is unusable: {problem}" if problem else None


def _check_options(cls: type[Provider]) -> str | None:
    """The options model is a ProviderOptions subclass (the router validates the config's
    ``options`` table with it, and the base class reads its timeouts)."""
    options = cls.Options
    if inspect.isclass(options) and issubclass(options, ProviderOptions):
        return None
    return f"{cls.__name__}.Options must be a ProviderOptions subclass, got {options!r}"


def _check_instance(cls: type[Provider]) -> str | None:
    """Build an instance as the router does for a ``[providers.<id>]`` with no settings (a
    stand-in key when it needs one); what that raises is the problem. Options with required
    fields are left to the config, which must give them (the router names the missing one)."""
    try:
        options = cls.Options()
    except ValidationError:
        return None
    api_key = "plugin-check-key" if cls.key_env_var else None
    try:
        cls(name=cls.provider_id, api_key=api_key, base_url=None, options=options)
    except Exception as exc:
        return f"{cls.__name__}() raised {_reason(exc)}"
    return None


def _collect(plugins: Plugins) -> None:
    """Call each registration hook plugin by plugin, so a failure is pinned to its plugin."""
    manager = plugins.manager
    for impl in manager.hook.register_providers.get_hookimpls():
        origin = impl.plugin_name

        def register(cls: type[Provider], _origin: str = origin) -> None:
            problem = _check_provider_class(cls)
            if problem is None and cls.provider_id in plugins.providers:
                first = plugins.provider_origin[cls.provider_id]
                problem = f"provider id {cls.provider_id!r} is already registered by {first!r}"
            if problem:
                plugins.problems.append(PluginProblem(_origin, problem))
                provider_id = getattr(cls, "provider_id", None)
                if isinstance(provider_id, str) and provider_id not in plugins.providers:
                    plugins.refused.setdefault(provider_id, plugins.problems[-1])
                return
            plugins.providers[cls.provider_id] = cls
            plugins.provider_origin[cls.provider_id] = _origin

        _call_hook(plugins, impl, register)


def _call_hook(plugins: Plugins, impl: Any, register: Callable[[Any], None]) -> None:
    try:
        returned = impl.function(**{name: register for name in impl.argnames})
    except Exception as exc:
        plugins.problems.append(PluginProblem(impl.plugin_name, f"hook failed: {_reason(exc)}"))
        return
    if inspect.iscoroutine(returned):  # never run: nothing it would register is registered
        returned.close()
        hook = impl.function.__name__
        problem = f"{hook} is 'async def'; a registration hook is a plain 'def'"
        plugins.problems.append(PluginProblem(impl.plugin_name, problem))


def load_plugins(
    *,
    entry_points: bool = True,
    plugins_dir: str | os.PathLike[str] | None = None,
    extra: Iterable[object] = (),
    log_problems: bool = True,
) -> Plugins:
    """Load every plugin and collect what they register.

    Args:
        entry_points: load the ``imagerouter`` entry-point group (limited by the
            ``IMAGEROUTER_LOAD_PLUGINS`` allow-list when set).
        plugins_dir: a directory of drop-in ``*.py`` plugin files, loaded in name order.
        extra: plugin objects (modules, classes or instances with hookimpls) passed in code.
        log_problems: log each problem as a warning (a command that prints them says no).
    """
    plugins = Plugins(manager=_new_manager(), log_problems=log_problems)
    if entry_points:
        allow = os.environ.get(LOAD_PLUGINS_ENV)
        allowed = {name.strip() for name in allow.split(",")} if allow is not None else None
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        plugins.allow_list = allow
        plugins.unknown_allowed = sorted((allowed or set()) - set(found.names) - {""})
        for name in plugins.unknown_allowed:
            problem = f"named by {LOAD_PLUGINS_ENV}, but no installed plugin has that name"
            plugins.problems.append(PluginProblem(name, problem))
        for entry_point in found:
            if allowed is not None and entry_point.name not in allowed:
                plugins.left_out.append(entry_point.name)
                continue
            try:
                module = entry_point.load()
            except Exception as exc:
                plugins.problems.append(PluginProblem(entry_point.name, _reason(exc)))
                continue
            _register(plugins, module, entry_point.name)
    if plugins_dir is not None:
        directory = Path(plugins_dir)
        if not directory.is_dir():
            plugins.problems.append(PluginProblem(str(directory), "plugins directory not found"))
        else:
            for path in sorted(directory.glob("*.py")):
                try:
                    module = _load_module_from_path(path)
                except Exception as exc:
                    plugins.problems.append(PluginProblem(str(path), _reason(exc)))
                    continue
                _register(plugins, module, str(path))
    for index, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}#{index}"
        _register(plugins, plugin, name, found=False)
    _collect(plugins)
    plugins._log(plugins.problems)
    return plugins
