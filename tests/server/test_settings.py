"""Server settings: the config file's [server] table, then env, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagerouter.errors import ConfigError
from imagerouter.server.settings import load_router_settings, load_server_settings


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
