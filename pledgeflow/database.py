"""Engine and transactions, built from the settings inside the process that uses them."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import make_url

from pledgeflow.settings import get_settings

# SQLite allows one writer at a time: chunk transactions in one process take turns here
# instead of failing with "database is locked"; other processes wait on the busy timeout.
_SQLITE_WRITE_LOCK = threading.RLock()


def dumps_json(value: Any) -> str:
    """JSON text of a value, as the json module would write it (non-text keys as text)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # orjson refuses a lone surrogate (which a web app's chunk may carry into a rejected
        # row's value) and integers over 64 bits; the json module writes both.
        return json.dumps(value)


@lru_cache(maxsize=8)
def _engine_for(url: str, pool_size: int) -> Engine:
    parsed = make_url(url)
    # Parameters are backers' personal data: keep them out of exception messages and logs.
    kwargs: dict[str, Any] = {
        "hide_parameters": True,
        # Chunk data is most of what pledgeflow writes: orjson (which prefect brings) encodes it
        # four times faster than the json module. Reading stays with the json module, which
        # keeps integers of any size exact where orjson would turn them into floats.
        "json_serializer": dumps_json,
    }
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 120, "check_same_thread": False}
    else:
        kwargs.update(
            # What the process can use at once and no more (settings.pool_size): connections
            # are a budget shared by every run (pledgeflow/limits.py sizes it).
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping=True,
            connect_args={
                # Lets operators find (and tests terminate) pledgeflow's sessions.
                "application_name": "pledgeflow",
                # A server that vanished (no refusal, no reset) is noticed within about a
                # minute, not the kernel's hours, so the transient retry budget applies to it.
                "connect_timeout": 10,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
            },
        )
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself, so a write transaction takes its lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine() -> Engine:
    """Return this process's engine for the configured database."""
    settings = get_settings()
    return _engine_for(settings.database_url.get_secret_value(), settings.pool_size)


T = TypeVar("T")


def first_value(query: Select[T]) -> T | None:
    """The value a one-column query selects first, read in a connection of its own; None when
    it selects no row."""
    with get_engine().connect() as conn:
        return conn.scalar(query.limit(1))


def database_identity() -> str:
    """A short stable name of the configured database (no password), to scope cache keys."""
    url = make_url(get_settings().database_url.get_secret_value())
    return hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:12]


def is_sqlite(engine: Engine) -> bool:
    """Whether the engine writes to SQLite, which serializes writers."""
    return engine.dialect.name == "sqlite"


@contextmanager
def transaction(engine: Engine | None = None) -> Iterator[Connection]:
    """Open a connection in one transaction: committed on exit, rolled back on error."""
    engine = engine or get_engine()
    if is_sqlite(engine):
        with _SQLITE_WRITE_LOCK, engine.begin() as conn:
            yield conn
    else:
        with engine.begin() as conn:
            yield conn


@contextmanager
def rolled_back(engine: Engine | None = None) -> Iterator[Connection]:
    """Open a connection in one transaction that is always rolled back: statements run and
    see each other's rows, and none of them persists."""
    engine = engine or get_engine()
    with (
        _SQLITE_WRITE_LOCK if is_sqlite(engine) else nullcontext(),
        engine.connect() as conn,
    ):
        outer = conn.begin()
        try:
            yield conn
        finally:
            outer.rollback()
