"""The `pledgeflow` command line: import, status, errors, retry and database migrations."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from pledgeflow.failures import UploadNotFoundError
from pledgeflow.settings import get_settings

# pledgeflow's log lines (ids and counts only) belong in the run logs Prefect keeps.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pledgeflow")

app = typer.Typer(help="Import crowdfunding backer exports with Prefect.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

SUMMARY_FIELDS = (
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


def _print_result(result: Any, as_json: bool) -> None:
    data = result.model_dump()
    error = (data.get("errors") or {}).get("error")
    if as_json:
        out = {k: data[k] for k in SUMMARY_FIELDS}
        out["stats"] = data.get("stats")
        out["by_code"] = (data.get("errors") or {}).get("by_code", {})
        out["error"] = error
        typer.echo(json.dumps(out, default=str))
        return
    typer.echo(
        f"upload {data['upload_id']}: {data['status']} ({data['platform'] or 'unknown platform'})"
    )
    typer.echo(
        f"  rows: {data['total_rows']} total, {data['imported_rows']} imported, "
        f"{data['rejected_rows']} rejected"
    )
    typer.echo(
        f"  chunks: {data['total_chunks']} total, {data['completed_chunks']} completed, "
        f"{data['failed_chunks']} failed"
    )
    stats = data.get("stats") or {}
    for table, counts in (stats.get("tables") or {}).items():
        typer.echo(
            f"  {table}: {counts['created']} created, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged"
            + (f", {counts['deleted']} deleted" if counts.get("deleted") else "")
        )
    if stats.get("rows_per_second"):
        typer.echo(f"  {stats['rows_per_second']} rows/s in {stats['duration_seconds']} s")
    by_code = (data.get("errors") or {}).get("by_code") or {}
    if by_code:
        typer.echo("  rejected by reason: " + ", ".join(f"{k} {v}" for k, v in by_code.items()))
    if error:
        typer.echo(f"  error: {error.get('code')}: {error.get('message')}")


def _run_upload(upload_id: int, as_json: bool) -> None:
    from flows.process_upload import process_upload
    from pledgeflow.uploads import read_upload

    process_upload(upload_id, return_state=True)
    result = read_upload(upload_id)
    _print_result(result, as_json)
    raise typer.Exit(0 if result.status == "COMPLETED" else 1)


@app.command("import")
def import_file(
    path: Annotated[Path, typer.Argument(help="The CSV export to import.")],
    shop: Annotated[str, typer.Option(help="The merchant's shop domain.")],
    project: Annotated[str, typer.Option(help="The campaign's name within the shop.")],
    platform: Annotated[
        str | None, typer.Option(help="Force a platform instead of detecting it.")
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option(min=1, help="Rows per chunk (default from settings).")
    ] = None,
    currency: Annotated[
        str | None, typer.Option(help="Project currency for bare symbols and plain numbers.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Stream a file into an upload, run the upload flow and print the outcome."""
    from pledgeflow.staging import StagingError, stage_file

    try:
        upload_id = stage_file(
            path,
            shop=shop,
            project=project,
            platform=platform,
            chunk_size=chunk_size or get_settings().chunk_size,
            currency=currency.upper() if currency else None,
        )
    except StagingError as exc:
        typer.echo(f"error: {exc.code}: {exc}", err=True)
        raise typer.Exit(2) from exc
    _run_upload(upload_id, as_json)


@app.command()
def retry(
    upload_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-run the failed and stuck chunks of an upload and re-aggregate it."""
    from pledgeflow.uploads import read_upload

    _exists(read_upload, upload_id)
    _run_upload(upload_id, as_json)


def _exists(read: Any, upload_id: int) -> Any:
    try:
        return read(upload_id)
    except UploadNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def status(
    upload_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show an upload's status and counters."""
    from pledgeflow.uploads import read_upload

    _print_result(_exists(read_upload, upload_id), as_json)


@app.command()
def errors(upload_id: int) -> None:
    """List the rejected rows of an upload, in file order, with their reasons."""
    from pledgeflow.reports import rejected_rows
    from pledgeflow.uploads import read_upload

    result = _exists(read_upload, upload_id)
    count = 0
    for entry in rejected_rows(upload_id):
        count += 1
        typer.echo(f"row {entry['row']}\t{entry['code']}\t{entry['column']}\t{entry['message']}")
    failure = (result.errors or {}).get("error")
    if failure:
        typer.echo(f"upload error: {failure.get('code')}: {failure.get('message')}")
    typer.echo(f"{count} rejected cells in {result.rejected_rows} rejected rows", err=True)


@app.command()
def webhook(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
) -> None:
    """Serve the webhook the web app calls once it has stored an upload."""
    import uvicorn

    from deployments.webhook import create_app

    try:
        app_ = create_app()
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    uvicorn.run(app_, host=host, port=port, log_level="info")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema of the configured database."""
    from pledgeflow.migrations.runner import upgrade

    upgrade(revision)
    typer.echo(f"database at revision {revision}")


def main() -> None:
    """Entry point for `python -m pledgeflow`."""
    app(prog_name="pledgeflow")


if __name__ == "__main__":
    main()
