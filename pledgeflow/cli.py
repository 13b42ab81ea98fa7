"""The `pledgeflow` command line: import, status, errors, retry, bench and database migrations."""

from __future__ import annotations

import json
import os
import sys
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


def _print_result(result: Any, as_json: bool, detection: dict[str, Any] | None = None) -> None:
    data = result.model_dump()
    error = (data.get("errors") or {}).get("error")
    stats = data.get("stats") or {}
    detection = detection or stats.get("detection")
    if as_json:
        out = {k: data[k] for k in SUMMARY_FIELDS}
        out["dry_run"] = data["dry_run"]
        out["detection"] = detection
        out["stats"] = data.get("stats")
        out["by_code"] = (data.get("errors") or {}).get("by_code", {})
        out["error"] = error
        typer.echo(json.dumps(out, default=str))
        return
    platform = data["platform"] or "unknown platform"
    if data["dry_run"]:
        typer.echo(
            f"upload {data['upload_id']} (dry run, nothing written): "
            f"would be {data['status']} ({platform})"
        )
    else:
        typer.echo(f"upload {data['upload_id']}: {data['status']} ({platform})")
    if detection:
        typer.echo(
            f"  detected: {detection['platform']} {detection['variant']} "
            f"(signature: {detection['signature']}; pledge key: {detection['pledge_key']})"
        )
        unmapped = detection.get("unmapped_columns") or []
        if unmapped:
            typer.echo(f"  kept in survey.answers ({len(unmapped)}): " + ", ".join(unmapped))
    typer.echo(
        f"  rows: {data['total_rows']} total, {data['imported_rows']} imported, "
        f"{data['rejected_rows']} rejected"
    )
    typer.echo(
        f"  chunks: {data['total_chunks']} total, {data['completed_chunks']} completed, "
        f"{data['failed_chunks']} failed"
    )
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
    currencies = stats.get("currencies") or {}
    if currencies:
        typer.echo(
            "  pledged: "
            + ", ".join(
                f"{v['amount']} {c} ({v['pledges']} pledges)" for c, v in currencies.items()
            )
        )
    for note in stats.get("notes") or []:
        typer.echo(f"  note: {note['code']}: {note['message']}")
    if error:
        typer.echo(f"  error: {error.get('code')}: {error.get('message')}")
        if error.get("available_headers"):
            typer.echo("  available headers: " + ", ".join(error["available_headers"]))


def _run_upload(upload_id: int, as_json: bool, *, dry_run: bool = False) -> None:
    from flows.process_upload import process_upload
    from pledgeflow.dry_runs import read_dry_run
    from pledgeflow.uploads import read_upload

    process_upload(upload_id, dry_run=dry_run, return_state=True)
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
        str | None, typer.Option(help="Force a platform instead of detecting it.")
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option(min=1, help="Rows per chunk (default from settings).")
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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Stream a file into an upload, run the upload flow and print the outcome."""
    from pledgeflow.mapping_files import read_mapping_file
    from pledgeflow.staging import StagingError, stage_file
    from schemas.mappings import MappingError

    try:
        column_mapping = read_mapping_file(mapping) if mapping is not None else None
        upload_id = stage_file(
            path,
            shop=shop,
            project=project,
            platform=platform,
            chunk_size=chunk_size or get_settings().chunk_size,
            currency=currency.upper() if currency else None,
            mapping=column_mapping,
        )
    except (StagingError, MappingError) as exc:
        typer.echo(f"error: {exc.code}: {exc}", err=True)
        raise typer.Exit(2) from exc
    _run_upload(upload_id, as_json, dry_run=dry_run)


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


@app.command()
def bench(
    rows: Annotated[
        list[int],
        typer.Option(
            min=1,
            help="Rows of the synthetic export to import; repeat it (--rows 10000 --rows "
            "100000) to measure several sizes and print them side by side.",
        ),
    ],
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the figures to this JSON file (a list of them for several sizes).",
        ),
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option(min=1, help="Rows per chunk (default from settings).")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Chunk tasks at once (default PLEDGEFLOW_TASK_CONCURRENCY)."),
    ] = None,
    naive_rows: Annotated[
        int, typer.Option(min=0, help="Rows the naive ORM baseline loads (0 skips it).")
    ] = 10_000,
    workers_rows: Annotated[
        int,
        typer.Option(
            min=0,
            help="Rows of each of the two uploads that one Prefect worker, then two at once, "
            "process (0 skips it).",
        ),
    ] = 100_000,
    server: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL server URL (any database on it) where the benchmark creates and "
            "drops its databases; default: the server of PLEDGEFLOW_DATABASE_URL, or "
            "postgres@127.0.0.1:5432."
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Redis the imports use for results, locks and the row cache, as in production; "
            "default: PLEDGEFLOW_REDIS_URL, or 127.0.0.1:6379."
        ),
    ] = None,
) -> None:
    """Benchmark the import pipeline against a hand-tuned and a naive ORM baseline."""
    from sqlalchemy.engine import make_url

    from pledgeflow.bench import (
        DEFAULT_REDIS,
        DEFAULT_SERVER,
        BenchConfig,
        report,
        run_bench,
        side_by_side,
    )

    settings = get_settings()
    configured = make_url(settings.database_url.get_secret_value())
    if server is None:
        server = (
            configured.set(database="postgres").render_as_string(hide_password=False)
            if configured.get_backend_name() == "postgresql"
            else DEFAULT_SERVER
        )
    tasks = concurrency or settings.task_concurrency
    runs = []
    for number, size in enumerate(rows, 1):
        config = BenchConfig(
            rows=size,
            chunk_size=chunk_size or settings.chunk_size,
            task_concurrency=tasks,
            pool_size=settings.db_pool_size or tasks + 2,
            naive_rows=naive_rows,
            server_url=server,
            # Two workers on two uploads is one measurement, whatever the sizes: after the last.
            workers_rows=workers_rows if number == len(rows) else 0,
            redis_url=redis_url
            or (settings.redis_url.get_secret_value() if settings.redis_url else DEFAULT_REDIS),
        )
        figures = run_bench(config)
        for line in report(figures):
            typer.echo(line)
        runs.append(figures)
    if len(runs) > 1:
        for line in side_by_side(runs):
            typer.echo(line)
    if json_file is not None:
        json_file.write_text(json.dumps(runs if len(runs) > 1 else runs[0], indent=2) + "\n")


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
