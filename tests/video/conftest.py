"""The video suites reuse the job API's fixtures (a real app over the in-process farm)."""

from tests.server.conftest import any_api, api, make_api, store_url

__all__ = ["any_api", "api", "make_api", "store_url"]
