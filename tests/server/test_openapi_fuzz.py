"""Schemathesis fuzzes every operation of /openapi.json against a live server process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from imagerouter.server.routes import ROUTES
from tests.server.proc import ServerProcess, cli, write_config, write_scenario

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server process over a fast farm, and a key with plenty of credits."""
    root = tmp_path_factory.mktemp("fuzz")
    server = ServerProcess(
        write_config(root / "imagerouter.toml"),
        root / "data",
        write_scenario(root / "fast.toml", 5),
        root / "server.log",
    )
    server.start()
    out = cli(
        "keys",
        "create",
        "--account",
        "fuzz",
        "--credits",
        "100000000",
        config=server.config,
        data_dir=server.data_dir,
    )
    try:
        yield server, out.strip().splitlines()[-1]
    finally:
        server.ensure_stopped()


def test_every_operation_conforms_to_the_document(live: tuple[ServerProcess, str]) -> None:
    """No generated request gets a 5xx, and every answer matches its documented schema."""
    server, token = live
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {f"{r.method} {r.doc_path}" for r in ROUTES} - {"GET /openapi.json"}
    assert {op.label for op in operations} == documented  # schemathesis skips its own schema
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=server.url,
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )

        check()
    # The fuzzing reached the happy path too: valid submits created and charged jobs.
    import json
    import urllib.request

    request = urllib.request.Request(f"{server.url}/v1/jobs", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["data"]
