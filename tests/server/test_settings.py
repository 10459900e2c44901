"""Server settings: the config file's [server] table, then env, then flags."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imagerouter.errors import ConfigError
from imagerouter.server.keys import settings_key
from imagerouter.server.routes import ROUTES
from imagerouter.server.settings import (
    ServerSettings,
    load_router_settings,
    load_server_settings,
)
from tests.helpers.api import ApiFactory


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    """Env overrides the file, flags override env; data_dir resolves against the file."""
    config = tmp_path / "imagerouter.toml"
    config.write_text(
        'catalog = "my-catalog.toml"\n'
        '[server]\nport = 9000\nworkers = 3\ndata_dir = "state"\n'
        "[server.rate_limits.generate]\nrate_per_s = 2\nburst = 4\n"
    )
    environ = {
        "IMAGEROUTER_SERVER_WORKERS": "5",
        "IMAGEROUTER_SERVER_RATE_LIMITS__GENERATE__BURST": "9",
    }
    settings = load_server_settings(config, environ=environ, port=9100, host=None)
    assert settings.port == 9100
    assert settings.workers == 5
    assert settings.data_dir == tmp_path / "state"
    assert settings.rate_limits["generate"].burst == 9
    assert settings.rate_limits["generate"].rate_per_s == 2
    assert settings.rate_limits["read"].burst == 100  # the default policy is kept
    router = load_router_settings(config, environ={})
    assert router.catalog == str(tmp_path / "my-catalog.toml")


def test_bad_server_field_names_file_and_field(tmp_path: Path) -> None:
    """A wrong [server] value is a ConfigError naming the file and the dotted field."""
    config = tmp_path / "imagerouter.toml"
    config.write_text("[server]\nlease_s = -1\n")
    with pytest.raises(ConfigError) as error:
        load_server_settings(config, environ={})
    assert error.value.field == "server.lease_s"
    assert error.value.file == str(config)


def test_env_lists_and_tables_are_json(tmp_path: Path) -> None:
    """A list or table setting's variable is JSON; a list may also be ``a,b,c``; a whole
    table and a field refining it combine."""
    environ = {
        "IMAGEROUTER_SERVER_WEBHOOK_ALLOW": '["127.0.0.1/32", "hooks.internal"]',
        "IMAGEROUTER_SERVER_WEBHOOK_RETRY_SCHEDULE_S": "[0, 1.5, 30]",
        "IMAGEROUTER_SERVER_RATE_LIMITS": '{"generate": {"rate_per_s": 2, "burst": 4}}',
        "IMAGEROUTER_SERVER_RATE_LIMITS__GENERATE__BURST": "9",
        "IMAGEROUTER_SERVER_STORAGE": '{"backend": "local"}',
    }
    settings = load_server_settings(environ=environ, data_dir=tmp_path)
    assert settings.webhook_allow == ["127.0.0.1/32", "hooks.internal"]
    assert settings.webhook_retry_schedule_s == [0, 1.5, 30]
    assert settings.rate_limits["generate"].rate_per_s == 2
    assert settings.rate_limits["generate"].burst == 9
    assert settings.storage.backend == "local"
    plain = {"IMAGEROUTER_SERVER_WEBHOOK_ALLOW": "127.0.0.1/32, hooks.internal"}
    settings = load_server_settings(environ=plain, data_dir=tmp_path)
    assert settings.webhook_allow == ["127.0.0.1/32", "hooks.internal"]


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("IMAGEROUTER_SERVER_WEBHOOK_ALLOW", '["127.0.0.1/32"', "not a JSON list"),
        ("IMAGEROUTER_SERVER_WEBHOOK_ALLOW", "[127.0.0.1/32]", "not a JSON list"),
        ("IMAGEROUTER_SERVER_WEBHOOK_RETRY_SCHEDULE_S", "[1, 2,]", "not a JSON list"),
        ("IMAGEROUTER_SERVER_RATE_LIMITS", "generate=5", "not a JSON table"),
        ("IMAGEROUTER_SERVER_RATE_LIMITS", '["generate"]', "not a JSON table"),
        ("IMAGEROUTER_SERVER_RATE_LIMITS__GENERATE", "{burst: 3}", "not a JSON table"),
        ("IMAGEROUTER_SERVER_STORAGE", "local", "not a JSON table"),
    ],
)
def test_env_list_or_table_that_does_not_parse_names_the_variable(
    tmp_path: Path, name: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_server_settings(environ={name: value}, data_dir=tmp_path)
    assert str(error.value).startswith(f"{name}: {reason}")
    assert error.value.field == name


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"IMAGEROUTER_SERVER_WORKERS": "abc"}, "IMAGEROUTER_SERVER_WORKERS"),
        (
            {"IMAGEROUTER_SERVER_STORAGE__URL_TTL_S": "abc"},
            "IMAGEROUTER_SERVER_STORAGE__URL_TTL_S",
        ),
        ({"IMAGEROUTER_SERVER_STORAGE": '{"url_ttl_s": "abc"}'}, "IMAGEROUTER_SERVER_STORAGE"),
    ],
)
def test_an_env_value_that_does_not_validate_names_the_variable_not_the_file(
    tmp_path: Path, environ: dict[str, str], field: str
) -> None:
    """A scalar that parses but does not validate is the variable's mistake: the error names
    it, not the config file beside it; the file's own mistake still names the file."""
    config = tmp_path / "imagerouter.toml"
    config.write_text("[server]\nworkers = 4\n")
    with pytest.raises(ConfigError) as error:
        load_server_settings(config, environ=environ, data_dir=tmp_path)
    assert (error.value.file, error.value.field) == (None, field)
    config.write_text('[server]\nworkers = "x"\n')
    with pytest.raises(ConfigError) as error:
        load_server_settings(config, environ={}, data_dir=tmp_path)
    assert (error.value.file, error.value.field) == (str(config), "server.workers")


def test_readme_states_the_default_rate_limits() -> None:
    """The README's "The job API" gives each default policy's rate and burst, and the routes
    that spend the ``generate`` policy, as the settings and the route table have them."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = " ".join(readme.split("## The job API", 1)[1].split("\n## ", 1)[0].split())
    limits = ServerSettings().rate_limits
    generate, read = limits["generate"], limits["read"]
    routes = ", ".join(f"`{r.method} {r.doc_path}`" for r in ROUTES if r.limit == "generate")
    assert (
        f"**`generate`** ({routes}) **{generate.rate_per_s:g} requests/s sustained, "
        f"bursts of {generate.burst}**"
    ) in section
    assert (
        f"**`read`** (every other route that takes an API key) **{read.rate_per_s:g} "
        f"requests/s, bursts of {read.burst}**"
    ) in section


async def test_local_storage_under_a_shared_store_is_warned_of_at_start(
    store_url: str | None, make_api: ApiFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Outputs on local disk with jobs in PostgreSQL: right for one replica, broken links for a
    fleet (a URL works only on the replica that stored the file), so the app says so as it
    starts, through the logging it configured (not while it is built, before any logging
    is); on SQLite, one process's store, it does not."""
    with caplog.at_level(logging.WARNING, logger="imagerouter.server.delivery"):
        api = await (make_api(store=store_url) if store_url else make_api())
    assert api.app[settings_key].storage.backend == "local"
    warned = [r for r in caplog.records if "works only on the replica" in r.getMessage()]
    assert len(warned) == (1 if store_url else 0), [r.getMessage() for r in caplog.records]
