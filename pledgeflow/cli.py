"""The `pledgeflow` command line: import, status, errors, retry, bench and database migrations."""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pledgeflow.command_errors import (
    OUTCOME_FIELDS,
    GuardedTyper,
    begin_command,
    note_upload,
)
from pledgeflow.limits_cli import limits_app
from pledgeflow.prefect_api import PREFECT_DEFAULTS
from pledgeflow.reports import shown_value
from pledgeflow.settings import get_settings

if TYPE_CHECKING:
    from pledgeflow.parameters import ImportRequest
    from pledgeflow.progress import ImportProgress

# pledgeflow's log lines (ids and counts only) belong in the run logs Prefect keeps.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pledgeflow")
# Before Prefect is imported: no telemetry, and time for its temporary server to start.
for _name, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

app = GuardedTyper(help="Import crowdfunding backer exports with Prefect.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(limits_app, name="limits")


@app.callback()
def options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="PLEDGEFLOW_DEBUG",
            help="Show the full traceback when a command fails (else a line or two).",
        ),
    ] = False,
) -> None:
    """Import crowdfunding backer exports with Prefect."""
    begin_command(debug)


MAPPING_HINT = (
    "to import it anyway, name its columns in a mapping file: --mapping FILE "
    "(README, Column mappings)"
)


def _print_result(result: Any, as_json: bool, detection: dict[str, Any] | None = None) -> None:
    from pledgeflow.summaries import summary_lines, timing

    data = result.model_dump()
    error = (data.get("errors") or {}).get("error")
    hint = MAPPING_HINT if error and error.get("code") == "unknown_layout" else None
    stats = data.get("stats") or {}
    detection = detection or stats.get("detection")
    if as_json:
        out = {k: data[k] for k in OUTCOME_FIELDS}
        out["dry_run"] = data["dry_run"]
        out["detection"] = detection
        out["stats"] = data.get("stats")
        out["timing"] = timing(stats, data["total_rows"])
        out["by_code"] = (data.get("errors") or {}).get("by_code", {})
        out["warnings"] = stats.get("warnings") or []
        out["error"] = {**error, "hint": hint} if error and hint else error
        typer.echo(json.dumps(out, default=str))
        return
    for line in summary_lines(data, detection):
        typer.echo(line)
    if hint:
        typer.echo(f"  {hint}")


def _progress(as_json: bool) -> ImportProgress:
    """The progress display on standard error: none for `--json`."""
    from rich.console import Console

    from pledgeflow.progress import ImportProgress

    return ImportProgress(Console(stderr=True), enabled=not as_json)


def _run_upload(
    upload_id: int,
    as_json: bool,
    *,
    dry_run: bool = False,
    max_rejected_fraction: float | None = None,
) -> None:
    """Run the upload flow under a progress display, then print the outcome and exit."""
    with _progress(as_json) as progress:
        _process_upload(upload_id, progress, dry_run, max_rejected_fraction)
    _report_upload(upload_id, as_json, dry_run=dry_run)


def _console_without_tracebacks() -> None:
    """Prefect's console lines without tracebacks, unless debugging."""
    from pledgeflow.command_errors import debugging
    from pledgeflow.prefect_api import console_logs_without_tracebacks

    if not debugging():
        console_logs_without_tracebacks()


def _process_upload(
    upload_id: int,
    progress: ImportProgress,
    dry_run: bool,
    max_rejected_fraction: float | None,
) -> None:
    from flows.process_upload import process_upload

    _console_without_tracebacks()
    if not dry_run:  # a dry run moves no counters
        progress.watch(upload_id)
    process_upload(
        upload_id,
        dry_run=dry_run,
        max_rejected_fraction=max_rejected_fraction,
        return_state=True,
    )


def _report_upload(upload_id: int, as_json: bool, *, dry_run: bool = False) -> None:
    from pledgeflow.dry_runs import read_dry_run
    from pledgeflow.uploads import read_upload

    upload = read_upload(upload_id)
    result = (read_dry_run(upload_id) or upload) if dry_run else upload
    _print_result(result, as_json, (upload.stats or {}).get("detection"))
    if dry_run and not as_json:
        typer.echo(
            f"  rows it would reject: pledgeflow errors {upload_id} --csv rejected.csv",
        )
    raise typer.Exit(0 if result.status == "COMPLETED" else 1)


@app.command("import")
def import_file(
    path: Annotated[Path, typer.Argument(help="The CSV export to import.")],
    shop: Annotated[str, typer.Option(help="The merchant's shop domain.")],
    project: Annotated[str, typer.Option(help="The campaign's name within the shop.")],
    platform: Annotated[
        str,
        typer.Option(
            help="Force a platform (kickstarter, indiegogo, backerkit, gamefound) instead of "
            "detecting it."
        ),
    ] = "detect",
    chunk_size: Annotated[
        int | None,
        typer.Option(help="Rows per chunk, 100 to 100,000 (default PLEDGEFLOW_CHUNK_SIZE)."),
    ] = None,
    currency: Annotated[
        str | None, typer.Option(help="Project currency for bare symbols and plain numbers.")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(help="JSON or YAML file mapping canonical fields to this file's headers."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(help="Detect, validate and count what would change; write no data rows."),
    ] = False,
    max_rejected_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Fail the upload when a larger share of its rows is rejected "
            "(default: fail only when every row is).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the import-file flow (the deployment's) here: stream the file into an upload, import
    it, and print the outcome."""
    from pledgeflow.import_paths import resolve_import_path
    from pledgeflow.mapping_files import read_mapping_file
    from pledgeflow.parameters import check_import
    from pledgeflow.prefect_api import ensure_prefect_api
    from pledgeflow.schema_state import require_schema

    # Everything a person can get wrong is refused before anything is started or stored.
    request = check_import(
        shop=shop,
        project=project,
        platform=platform,
        chunk_size=get_settings().chunk_size if chunk_size is None else chunk_size,
        currency=currency,
    )
    resolve_import_path(path)
    column_mapping = read_mapping_file(mapping) if mapping is not None else None
    require_schema(create=True)
    ensure_prefect_api()
    with _progress(as_json) as progress:
        upload_id = _import_file(
            progress,
            path,
            request,
            column_mapping.as_dict() if column_mapping is not None else None,
            dry_run,
            max_rejected_fraction,
        )
    _report_upload(upload_id, as_json, dry_run=dry_run)


def _import_file(
    progress: ImportProgress,
    path: Path,
    request: ImportRequest,
    mapping: dict[str, Any] | None,
    dry_run: bool,
    max_rejected_fraction: float | None,
) -> int:
    """Run the import-file flow, the deployment's, in this process under `progress`: the id of
    the upload it staged, or the typed reason it refused the file, raised (exit 2)."""
    from flows.import_file import import_file as import_file_flow
    from pledgeflow.prefect_api import console_silent_once
    from pledgeflow.staging_watch import StagingWatch, watching
    from tasks.observability import name_flow_run

    def staged(upload_id: int) -> None:
        note_upload(upload_id)
        name_flow_run(f"upload-{upload_id}")  # run names carry their upload (DESIGN, section 4)
        if not dry_run:  # a dry run moves no counters
            progress.watch(upload_id)

    watch = StagingWatch(on_rows=progress.staged, on_staged=staged)
    _console_without_tracebacks()
    # Once the file is refused, the refusal this command shows says it all: the run's closing
    # lines (its task and run Failed with that message) go to the run's logs only.
    with watching(watch), console_silent_once(lambda: watch.refusal is not None):
        state = import_file_flow(
            str(path),
            request.shop,
            request.project,
            request.platform,
            request.chunk_size,
            request.currency,
            mapping,
            dry_run,
            max_rejected_fraction,
            return_state=True,
        )
    if watch.refusal is not None:
        raise watch.refusal
    if watch.upload_id is None:  # the run failed before its file was staged: say why
        state.result()
        raise RuntimeError(f"the import-file run ended {state.name} without an upload")
    return watch.upload_id


@app.command()
def retry(
    upload_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-run the failed and stuck chunks of an upload and re-aggregate it."""
    from pledgeflow.prefect_api import ensure_prefect_api
    from pledgeflow.uploads import read_upload

    _exists(read_upload, upload_id)
    ensure_prefect_api()
    note_upload(upload_id)
    _run_upload(upload_id, as_json)


def _exists(read: Any, upload_id: int) -> Any:
    """Read an upload (UploadNotFoundError if none) from a database with the current schema."""
    from pledgeflow.schema_state import require_schema

    require_schema(create=False)
    return read(upload_id)


@app.command()
def status(
    upload_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show an upload's status and counters, and its failed chunks by name."""
    from pledgeflow.summaries import chunk_outcomes, error_cell
    from pledgeflow.uploads import chunk_name, read_upload

    result = _exists(read_upload, upload_id)
    _print_result(result, as_json)
    if as_json or not result.failed_chunks:
        return
    for chunk in chunk_outcomes(upload_id):
        if chunk["status"] == "FAILED":
            name = chunk_name(chunk["chunk_index"], chunk["first_row"], chunk["row_count"])
            typer.echo(f"  failed {name}: {error_cell(chunk)}")


@app.command()
def errors(
    upload_id: int,
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Write every rejected row (reasons, then its original cells) to this CSV "
            "file, '-' for standard output.",
        ),
    ] = None,
) -> None:
    """List the rejected rows of an upload, in file order, with their reasons."""
    from pledgeflow.reports import rejected_rows, write_rejected_csv
    from pledgeflow.uploads import read_upload

    result = _exists(read_upload, upload_id)
    if csv_path is not None:
        if str(csv_path) == "-":
            written = write_rejected_csv(upload_id, sys.stdout)
        else:
            with csv_path.open("w", encoding="utf-8-sig", newline="") as out:
                written = write_rejected_csv(upload_id, out)
        typer.echo(f"{written} rejected rows written to {csv_path}", err=True)
        return
    count = 0
    for entry in rejected_rows(upload_id):
        count += 1
        value = shown_value(entry.get("value"))
        typer.echo(
            f"row {entry['row']}\t{entry['column']}\t{entry['code']}\t{value}\t{entry['message']}"
        )
    failure = (result.errors or {}).get("error")
    if failure:
        typer.echo(f"upload error: {failure.get('code')}: {failure.get('message')}")
        if failure.get("column"):
            typer.echo(f"  column {failure['column']!r}, e.g. {shown_value(failure.get('value'))}")
    typer.echo(f"{count} rejected cells in {result.rejected_rows} rejected rows", err=True)


@app.command()
def webhook(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
) -> None:
    """Serve the webhook the web app calls once it has stored an upload."""
    from prefect.settings import PREFECT_API_URL

    from deployments.webhook import create_app, serve
    from pledgeflow.prefect_api import PrefectUnauthorizedError, check_credentials

    try:
        app_ = create_app()
        # A locked server's health check is open: ask with the credentials now, or every
        # delivery would be answered 500 (a server down for now is not refused here).
        check_credentials(str(PREFECT_API_URL.value()))
    except PrefectUnauthorizedError as exc:
        typer.echo(f"error: {exc.code}: {exc}\n  {exc.hint}", err=True)
        raise typer.Exit(2) from exc
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    serve(app_, host, port)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema of the configured database."""
    from pledgeflow.migrations.runner import upgrade

    upgrade(revision)
    typer.echo(f"database at revision {revision}")


@db_app.command("grant")
def db_grant(
    role: Annotated[str, typer.Argument(help="The existing role workers and webhook log in as.")],
) -> None:
    """Let ROLE read and write pledgeflow's tables, but not change them (run as the owner)."""
    from pledgeflow.grants import GrantError, grant_import_role

    try:
        granted = grant_import_role(role)
    except GrantError as exc:
        typer.echo(f"error: {exc.code}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"role {granted.role}: CONNECT, TEMPORARY on database {granted.database}; "
        f"SELECT, INSERT, UPDATE, DELETE on {len(granted.tables)} tables and USAGE on "
        f"{len(granted.sequences)} sequences in schema {granted.schema}; no DDL"
    )


BENCH_MISSING = "error: pledgeflow bench is not installed: pip install -e '.[bench]' in a checkout"


def _unavailable(ctx: typer.Context) -> None:
    """Stands in for a command whose package is not installed."""
    typer.echo(BENCH_MISSING, err=True)
    raise typer.Exit(2)


def _add_commands_of_other_packages() -> None:
    """Commands the distribution's other packages add through the `pledgeflow.commands` entry
    point (`bench`, from the benchmark package): the product imports none of them."""
    names = set()
    for entry in entry_points(group="pledgeflow.commands"):
        try:
            command = entry.load()
        except ImportError:
            continue
        app.command(entry.name)(command)
        names.add(entry.name)
    if "bench" not in names:
        app.command(
            "bench",
            help="Benchmark the import pipeline (needs the bench extra).",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )(_unavailable)


_add_commands_of_other_packages()


def main() -> None:
    """Entry point for `python -m pledgeflow`."""
    app(prog_name="pledgeflow")


if __name__ == "__main__":
    main()
