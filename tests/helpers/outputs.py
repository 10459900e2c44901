"""Where the server keeps a job's outputs, written out independently of the code under test."""

from __future__ import annotations

import time
from typing import Any


def expected_key(job: dict[str, Any], index: int, ext: str) -> str:
    """``<UTC day>/<hour>/<job id>-<index>.<ext>`` of the hour the job (an API job object)
    was created in."""
    hour = time.strftime("%Y-%m-%d/%H", time.gmtime(job["created_at"]))
    return f"{hour}/{job['id']}-{index}.{ext}"
