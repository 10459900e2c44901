"""The 202 body of a submit written from a template is exactly the text encoding its dict
gives, for any link, id, time and price."""

from __future__ import annotations

import json

import pytest

from imagerouter.server.http import dumps
from imagerouter.server.present import job_accepted, job_accepted_json


@pytest.mark.parametrize(
    ("url", "job_id", "created_at", "price"),
    [
        ("/v1/jobs/job_2345abcd", "job_2345abcd", 1_800_000_000.123456, 26),
        ('https://api.example.com/"quoted"/\\back\u00e9/v1/jobs/j', "j", 0.1, 0),
        ("/v1/jobs/\u2028x\n", "job_\u00fc", 1e-7, 10**20),
        ("/v1/jobs/x", "x", 1.0, 7),
        ("/v1/jobs/x", "x", float("nan"), 7),
        ("/v1/jobs/x", "x", 12.0, True),
    ],
)
def test_template_matches_the_encoded_dict(
    url: str, job_id: str, created_at: float, price: int
) -> None:
    """Byte for byte what ``dumps(job_accepted(...))`` writes, and it parses back to it."""
    text = job_accepted_json(url, job_id, created_at, price)
    assert text == dumps(job_accepted(url, job_id, created_at, price))
    if created_at == created_at:  # NaN never equals itself
        assert json.loads(text) == job_accepted(url, job_id, created_at, price)
