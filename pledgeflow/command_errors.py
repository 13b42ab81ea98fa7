"""What a person sees when a `pledgeflow` command fails: a line or two saying what went wrong
and what to do, an exit code (2: refused, nothing stored; 1: an upload or a service failed),
one JSON document under `--json`, and a traceback only with `--debug` or PLEDGEFLOW_DEBUG=1."""

from __future__ import annotations

import errno
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import httpx
import typer

# Typer 0.29 carries its own copy of click; its parsing errors derive from this class.
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

# Commands whose `--json` prints the outcome on stdout (bench's `--json` names a file).
JSON_COMMANDS = frozenset({"import", "retry", "status"})
# The fields of every `--json` outcome, present (as null) in an error document too.
OUTCOME_FIELDS = (
    "upload_id",
    "status",
    "platform",
    "total_rows",
    "imported_rows",
    "rejected_rows",
    "total_chunks",
    "completed_chunks",
    "failed_chunks",
)
DEBUG_HINT = "run it again with --debug (or PLEDGEFLOW_DEBUG=1) to see the traceback"
MESSAGE_LIMIT = 400
# Words of a driver's error that mean no connection could be made (psycopg, sqlite3).
CONNECT_MARKS = (
    "connection failed",
    "failed to resolve host",
    "connection refused",
    "could not connect",
    "server closed the connection",
    "unable to open database file",
)
REFUSED = 2
FAILED = 1


@dataclass
class Shown:
    """A failure as the user sees it."""

    code: str
    message: str
    hint: str | None = None
    exit_code: int = REFUSED


@dataclass
class _State:
    upload_id: int | None = None
    debug: bool = False


_state = _State()


def note_upload(upload_id: int) -> None:
    """Remember the upload this command stored, so a later failure can name it."""
    _state.upload_id = upload_id


def begin_command(debug: bool) -> None:
    """Start a command: no upload stored yet; tracebacks shown instead of short messages
    when `debug` (the --debug option)."""
    _state.upload_id = None
    _state.debug = debug


def debugging() -> bool:
    """Whether --debug or PLEDGEFLOW_DEBUG asks for tracebacks."""
    flag = os.environ.get("PLEDGEFLOW_DEBUG", "").strip().lower()
    return _state.debug or flag in {"1", "true", "yes", "on"}


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 1] + "…"


def _database_shown(exc: Exception) -> Shown | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from pledgeflow.settings import get_settings

    if isinstance(exc, NoSuchModuleError) or (
        isinstance(exc, ArgumentError) and "Could not parse SQLAlchemy URL" in str(exc)
    ):
        return Shown(
            "bad_database_url",
            "PLEDGEFLOW_DATABASE_URL is not a database URL pledgeflow can use",
            "write it as postgresql+psycopg://USER@HOST:5432/DBNAME, or sqlite:///path/to/file.db",
        )
    if not isinstance(exc, DBAPIError):
        return None
    detail = str(exc.orig)
    where = make_url(get_settings().database_url.get_secret_value())
    place = where.render_as_string(hide_password=True)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate == "42P01" or "no such table" in detail:
        return Shown(
            "schema_missing",
            f"the database {place} has no pledgeflow tables",
            "run `pledgeflow db upgrade` first",
        )
    if "does not exist" in detail and "database" in detail and sqlstate is None:
        name = where.database or "?"
        return Shown(
            "database_missing",
            f'PostgreSQL database "{name}" does not exist on {where.host}:{where.port or 5432}',
            f"create it (createdb -h {where.host} -p {where.port or 5432} {name}), then run "
            "`pledgeflow db upgrade`; or point PLEDGEFLOW_DATABASE_URL at another database",
        )
    if exc.connection_invalidated or any(mark in detail.lower() for mark in CONNECT_MARKS):
        reason = _first_line(detail.removeprefix("connection failed: "))
        return Shown(
            "database_unreachable",
            f"cannot connect to the database {place}: {reason}",
            "start the database or fix PLEDGEFLOW_DATABASE_URL",
            FAILED if _state.upload_id is not None else REFUSED,
        )
    return None


def describe(exc: BaseException) -> Shown:
    """The lines and exit code a failure shows; unknown failures say how to see more."""
    from pydantic import ValidationError

    from pledgeflow.failures import UploadNotFoundError
    from pledgeflow.import_paths import ImportPathError
    from pledgeflow.parameters import ParameterError
    from pledgeflow.prefect_api import PrefectUnavailableError
    from pledgeflow.schema_state import SchemaMissingError
    from pledgeflow.staging import StagingError
    from schemas.mappings import MappingError

    if isinstance(exc, StagingError | MappingError | ParameterError | ImportPathError):
        return Shown(exc.code, str(exc), getattr(exc, "hint", None))
    if isinstance(exc, UploadNotFoundError):
        return Shown(
            "unknown_upload",
            str(exc),
            "use the upload id that `pledgeflow import` printed",
        )
    if isinstance(exc, PrefectUnavailableError | SchemaMissingError):
        return Shown(exc.code, str(exc), getattr(exc, "hint", None))
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        problems = "; ".join(
            f"PLEDGEFLOW_{str(e['loc'][0]).upper()}: " + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        return Shown("bad_configuration", problems, "fix that environment variable")
    if isinstance(exc, Exception) and (shown := _database_shown(exc)) is not None:
        return shown
    if isinstance(exc, httpx.TransportError):
        return Shown(
            "prefect_unavailable",
            f"cannot reach the Prefect API ({type(exc).__name__})",
            "check that the Prefect server at PREFECT_API_URL is running",
            FAILED,
        )
    if isinstance(exc, OSError):
        return Shown(
            "os_error",
            f"{exc.strerror or _first_line(str(exc))}: {exc.filename}"
            if exc.filename
            else _first_line(str(exc)),
        )
    return Shown(
        "unexpected_error", f"{type(exc).__name__}: {_first_line(str(exc))}", DEBUG_HINT, FAILED
    )


def show(shown: Shown, as_json: bool) -> None:
    """Print a failure: one JSON document on stdout under --json, else lines on stderr."""
    hint = shown.hint
    if _state.upload_id is not None and shown.exit_code == FAILED:
        resume = f"upload {_state.upload_id} is stored: `pledgeflow retry {_state.upload_id}`"
        hint = f"{hint}; then {resume}" if hint else resume
    if as_json:
        document: dict[str, Any] = dict.fromkeys(OUTCOME_FIELDS)
        document["upload_id"] = _state.upload_id
        document["error"] = {"code": shown.code, "message": shown.message, "hint": hint}
        typer.echo(json.dumps(document))
    typer.echo(f"error: {shown.code}: {shown.message}", err=True)
    if hint:
        typer.echo(f"  {hint}", err=True)


def wants_json(args: list[str]) -> bool:
    """Whether the command line asks for the outcome as JSON on stdout."""
    command = next((a for a in args if not a.startswith("-")), None)
    return command in JSON_COMMANDS and "--json" in args


class GuardedGroup(TyperGroup):
    """The command group: a failure inside any subcommand is shown as `describe` words it
    and ends the command with its exit code, never a traceback (unless debugging)."""

    def invoke(self, ctx: Any) -> Any:
        args = [*ctx._protected_args, *ctx.args]
        try:
            return super().invoke(ctx)
        except (ClickException, typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            # A closed pipe (`pledgeflow … | head`) is Typer's to end quietly.
            if debugging() or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
                raise
            shown = describe(exc)
            show(shown, wants_json(args))
            raise typer.Exit(shown.exit_code) from None


class GuardedTyper(typer.Typer):
    """A Typer app whose command-line usage errors are one JSON document under --json."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=GuardedGroup, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argv = list(kwargs.get("args") or sys.argv[1:])
        if not wants_json(argv):
            return super().__call__(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            outcome = super().__call__(*args, **kwargs)
        except ClickException as exc:
            show(Shown("usage_error", exc.format_message()), as_json=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(130)
        sys.exit(outcome if isinstance(outcome, int) else 0)
