"""imagerouter: route image-generation requests across providers, with health scores, circuit
breakers, Retry-After-aware retries and failover.

The public API is exactly ``__all__``; plugins import only from here.
"""

from imagerouter.catalog import Catalog, CatalogModel, load_catalog
from imagerouter.clock import Clock, FakeClock, MonotonicClock
from imagerouter.config import Settings, load_settings
from imagerouter.errors import (
    AuthFailed,
    ConfigError,
    ContentRejected,
    ImageRouterError,
    InvalidRequest,
    MissingExtra,
    ModelNotServed,
    NoProviderAvailable,
    PluginError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    UnknownModel,
    UnsupportedRequest,
)
from imagerouter.generation import (
    Attempt,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    ProviderOutput,
)
from imagerouter.hookspecs import hookimpl
from imagerouter.lifecycle import AsyncResource
from imagerouter.plugins import Plugins, load_plugins
from imagerouter.preferences import RoutingPreferences
from imagerouter.provider import CallContext, HttpAnswer, Progress, Provider, ProviderOptions
from imagerouter.router import Router

__all__ = [
    "AsyncResource",
    "Attempt",
    "AuthFailed",
    "CallContext",
    "Catalog",
    "CatalogModel",
    "Clock",
    "ConfigError",
    "ContentRejected",
    "FakeClock",
    "GeneratedImage",
    "HttpAnswer",
    "ImageRequest",
    "ImageResult",
    "ImageRouterError",
    "InvalidRequest",
    "MissingExtra",
    "ModelNotServed",
    "MonotonicClock",
    "NoProviderAvailable",
    "PluginError",
    "Plugins",
    "Progress",
    "Provider",
    "ProviderError",
    "ProviderOptions",
    "ProviderOutput",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "Router",
    "RoutingPreferences",
    "Settings",
    "UnknownModel",
    "UnsupportedRequest",
    "hookimpl",
    "load_catalog",
    "load_plugins",
    "load_settings",
]
