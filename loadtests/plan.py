"""The run plan the orchestrator hands the Locust processes, as one JSON file.

The orchestrator writes it and names it in ``$IMAGEROUTER_LOADTEST_PLAN``; the Locust file (in
every Locust process, master and workers alike) reads it at import. It holds everything a user
needs: the server and its key, the traffic mix, the shape, and where to report.
No Locust import here, so the orchestrator and the tests can use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loadtests.scenario import FollowMode, Traffic

__all__ = ["PLAN_ENV", "LocustPlan"]

#: The environment variable naming the plan file.
PLAN_ENV = "IMAGEROUTER_LOADTEST_PLAN"


class LocustPlan(BaseModel):
    """What every Locust process of one run needs to know."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str
    host: str
    api_key: str
    users: int = Field(ge=1)
    duration_s: float = Field(gt=0)
    traffic: Traffic
    #: The follow modes this server supports, with their weights (others fell back to polling).
    follow: dict[FollowMode, float]
    #: How long a client follows one job before it calls it lost.
    follow_timeout_s: float = Field(gt=0)
    #: Where each Locust process writes ``locust-<pid>.jsonl`` (one line per submit and outcome).
    records_dir: str
    #: The orchestrator's receiver: ``/started`` and ``/stopped`` notices, ``/hooks/…`` webhooks.
    receiver_url: str
    #: Path of the per-job event stream, with ``{id}``, when the server has one.
    sse_path: str | None = None
    seed: int = 1

    def dump(self, path: Path) -> Path:
        """Write the plan as JSON to ``path``, readable by its owner only: it holds the run's
        API key, valid on the run's database beside it."""
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LocustPlan:
        """The plan named by ``$IMAGEROUTER_LOADTEST_PLAN``; RuntimeError when it is not set."""
        environ = dict(os.environ) if environ is None else environ
        path = environ.get(PLAN_ENV)
        if not path:
            raise RuntimeError(
                f"${PLAN_ENV} is not set: run this Locust file through "
                "`imagerouter loadtest SCENARIO`, which starts the server and writes the plan"
            )
        data: dict[str, Any] = json.loads(Path(path).read_text())
        return cls.model_validate(data)
