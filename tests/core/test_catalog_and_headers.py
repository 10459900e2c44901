"""Prices from the catalog, request validation, and rate-limit header parsing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imagerouter import ImageRequest, UnknownModel, load_catalog
from imagerouter.resilience.headers import (
    parse_duration,
    parse_rate_limit_budget,
    parse_retry_after,
)


def test_gpt_image_2_standard_costs_26_credits() -> None:
    """The default price of gpt-image-2 at standard size and quality is 26 credits."""
    model = load_catalog().resolve("gpt-image-2")
    assert model.price(ImageRequest(model="gpt-image-2", prompt="p", quality="standard")) == 26


def test_price_scales_with_tier_size_and_n() -> None:
    """Larger images, higher quality and more images cost proportionally more."""
    model = load_catalog().resolve("gpt-image-2")
    request = ImageRequest(model="gpt-image-2", prompt="p", size="1536x1024", quality="hd", n=2)
    assert model.price(request) == 68 * 1.5 * 2


def test_old_names_migrate_and_unknown_names_list_the_known() -> None:
    """dall-e-3 and gpt-image-1 resolve to gpt-image-2; an unknown name lists known models."""
    catalog = load_catalog()
    assert catalog.resolve("gpt-image-1").name == catalog.resolve("dall-e-3").name == "gpt-image-2"
    with pytest.raises(UnknownModel, match=r"known models: .*flux-dev"):
        catalog.resolve("dall-e-9")


@pytest.mark.parametrize(
    ("field", "value"),
    [("size", "1024"), ("size", "5000x5000"), ("n", 0), ("quality", "ultra"), ("prompt", "")],
)
def test_bad_request_fields_are_rejected(field: str, value: object) -> None:
    """Bad sizes, counts, qualities and empty prompts fail validation naming the field."""
    data = {"model": "gpt-image-2", "prompt": "p", field: value}
    with pytest.raises(ValidationError) as caught:
        ImageRequest.model_validate(data)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_retry_after_forms() -> None:
    """retry-after-ms wins; seconds and HTTP-date forms parse; junk and absence give None."""
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    date = "Wed, 21 Oct 2015 07:28:05 GMT"
    assert parse_retry_after({"retry-after": date}, now=1445412480.0) == 5.0
    assert parse_retry_after({"retry-after": date}, now=1445412490.0) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        # an invalid retry-after-ms does not hide a valid Retry-After (it read as 0 before)
        ({"retry-after-ms": "-100", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "1e999", "retry-after": "2"}, 2.0),
        # no delay-seconds: ignored (a learned cooldown follows), not 0 and not 1,000 s
        ({"retry-after": "-5"}, None),
        ({"retry-after": "1e3"}, None),
        ({"retry-after": "+3"}, None),
        ({"retry-after": "9" * 400}, None),
        # what is: digits, with a fraction as some providers send it
        ({"retry-after": " 3 "}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "0"}, 0.0),
    ],
)
def test_a_retry_after_that_is_no_delay_is_ignored(
    headers: dict[str, str], seconds: float | None
) -> None:
    """From a black-box pass: ``retry-after-ms: -100`` beside ``Retry-After: 2`` was read as 0
    (the next call could go into the 2 s window), ``-5`` as 0 and ``1e3`` as 1,000 s."""
    assert parse_retry_after(headers) == seconds


def test_openai_budget_headers() -> None:
    """x-ratelimit-* request headers and Go durations parse into a budget."""
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("12ms") == pytest.approx(0.012)
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("1x") is None
    budget = parse_rate_limit_budget(
        {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "850ms",
        }
    )
    assert budget is not None
    assert (budget.limit, budget.remaining) == (60, 0)
    assert budget.reset_s == pytest.approx(0.85)
