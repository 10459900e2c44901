"""Errors the job store raises on purpose; each carries a machine-readable ``code``."""

from __future__ import annotations

from imagerouter.errors import ImageRouterError

__all__ = [
    "AccountNotFound",
    "InsufficientCredits",
    "InvalidCursor",
    "JobFinished",
    "JobNotFound",
    "StorageFull",
    "StoreError",
    "StoreUnavailable",
]


class StoreError(ImageRouterError):
    """Root of the job store's errors."""

    code = "store_error"


class JobNotFound(StoreError):
    """No job with this id belongs to this account."""

    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r}")


class JobFinished(StoreError):
    """The job already reached a final state, so it cannot change any more."""

    code = "job_finished"

    def __init__(self, job_id: str, status: str) -> None:
        self.job_id, self.status = job_id, status
        super().__init__(f"job {job_id!r} is already {status}")


class AccountNotFound(StoreError):
    """No account of this id or name."""

    code = "account_not_found"

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"no account {account!r}")


class InsufficientCredits(StoreError):
    """The account's wallet holds less than the job's price; nothing was charged."""

    code = "insufficient_credits"

    def __init__(self, balance: int, price: int) -> None:
        self.balance, self.price = balance, price
        super().__init__(f"the job costs {price} credits but the balance is {balance}")


class InvalidCursor(StoreError):
    """A pagination cursor that this store did not hand out."""

    code = "invalid_cursor"

    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        super().__init__(f"invalid cursor {cursor!r}")


class StoreUnavailable(StoreError):
    """The database cannot be reached now: refused, cut, restarting or shutting down. Worth
    trying again after ``retry_after_s``; the server answers 503 with ``Retry-After``.

    What the operation wrote was rolled back, except when the connection was lost during the
    commit itself, when it may have committed: a submit retried with its ``Idempotency-Key``
    is then answered once, never charged twice."""

    code = "store_unavailable"

    def __init__(self, reason: str, retry_after_s: float = 1.0) -> None:
        self.reason, self.retry_after_s = reason, retry_after_s
        super().__init__(f"the job store is unavailable ({reason}); retry in {retry_after_s:g} s")


class StorageFull(StoreUnavailable):
    """The database's disk is full: the operation was rolled back, nothing half-written.
    Writes succeed again by themselves once space is freed."""

    code = "storage_full"

    def __init__(self, reason: str, retry_after_s: float = 5.0) -> None:
        super().__init__(reason, retry_after_s)
