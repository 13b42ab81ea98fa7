"""Which errors heal on retry (connection loss, deadlock, serialization) and which never do."""

from __future__ import annotations

import psycopg.errors
from sqlalchemy.exc import DBAPIError, OperationalError

# Serialization failure, deadlock, admin/crash shutdown, cannot connect now (starting up or
# shutting down), connection exceptions, and too many connections (no slot free right now).
TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",
        "40P01",
        "57P01",
        "57P02",
        "57P03",
        "08000",
        "08003",
        "08006",
        "08001",
        "08004",
        "53300",
    }
)


class ChunkBusyError(RuntimeError):
    """Another run holds the chunk (PROCESSING within its lease): that run finishes it, or
    once the lease runs out a retry or the sweep takes it; not retried meanwhile."""


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry can heal: lost connections, a database restarting or out of
    connection slots, deadlocks and serialization failures."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
        return True
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in TRANSIENT_SQLSTATES:
        return True
    if isinstance(orig, psycopg.OperationalError) and sqlstate is None:
        return True  # the connection dropped before the server could answer
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


class UploadNotFoundError(LookupError):
    """No csv_upload row has this id."""

    def __init__(self, upload_id: int) -> None:
        super().__init__(f"upload {upload_id} does not exist")
        self.upload_id = upload_id


class ChunkDataError(ValueError):
    """A chunk that cannot be processed as a whole for a reason retrying cannot fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
