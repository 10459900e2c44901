"""Helpers shared by more than one test folder, each in one place: the job API's test client
and settings (:mod:`.api`), loopback ports (:mod:`.net`), the test Redis
(:mod:`.redis_service`) and the Prometheus text the servers expose (:mod:`.metrics`). Waiting
for a condition is :mod:`tests.polling`."""
