"""The summary of an upload: the CLI's lines and timing, and the operators' markdown artifact."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select

from pledgeflow.database import get_engine
from pledgeflow.reports import shown_value
from pledgeflow.status import UploadResult
from schemas.tables import CsvUploadChunk

CAUSE_CHARS = 160  # of a failed chunk's cause in the summary
CHUNK_LINES = 200  # per-chunk rows shown in the summary before it is cut


def chunk_outcomes(upload_id: int) -> list[dict[str, Any]]:
    """Status, counters and error code of each chunk, in chunk order."""
    with get_engine().connect() as conn:
        rows = conn.execute(
            select(
                CsvUploadChunk.chunk_index,
                CsvUploadChunk.status,
                CsvUploadChunk.first_row,
                CsvUploadChunk.row_count,
                CsvUploadChunk.imported_rows,
                CsvUploadChunk.rejected_rows,
                CsvUploadChunk.attempts,
                CsvUploadChunk.errors,
            )
            .where(CsvUploadChunk.upload_id == upload_id)
            .order_by(CsvUploadChunk.chunk_index)
        ).all()
    return [
        {
            "chunk_index": r.chunk_index,
            "status": str(r.status.value if hasattr(r.status, "value") else r.status),
            "rows": f"{r.first_row}-{r.first_row + r.row_count - 1}" if r.row_count else "-",
            "first_row": r.first_row,
            "row_count": r.row_count,
            "imported": r.imported_rows,
            "rejected": r.rejected_rows,
            "attempts": r.attempts,
            "error": ((r.errors or {}).get("error") or {}).get("code"),
            "cause": ((r.errors or {}).get("error") or {}).get("message"),
        }
        for r in rows
    ]


def _cell(value: object) -> str:
    # Markdown table cells: keep them on one line and inert.
    return str(value).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def error_cell(chunk: dict[str, Any]) -> str:
    """A failed chunk's code and cause, short (the cause names no row values)."""
    if not chunk.get("error"):
        return ""
    cause = str(chunk.get("cause") or "")
    cause = cause if len(cause) <= CAUSE_CHARS else cause[: CAUSE_CHARS - 1] + "…"
    return f"{chunk['error']}: {cause}" if cause else str(chunk["error"])


def _columns_lines(detection: dict[str, Any]) -> list[str]:
    """Which columns became item quantities and which were kept in survey.answers."""
    lines = []
    for label, key in (("Item columns", "item_columns"), ("Kept in answers", "unmapped_columns")):
        if detection.get(key):
            lines += [f"{label} ({len(detection[key])}): {_cell(', '.join(detection[key]))}", ""]
    return lines


def _warning_about(warning: dict[str, Any]) -> str:
    about = str(warning.get("message", ""))
    if warning.get("columns"):
        about += " (" + ", ".join(f"{c}: {n}" for c, n in warning["columns"].items()) + ")"
    if warning.get("values"):
        about += ": " + ", ".join(warning["values"])
    return about


def summary_markdown(result: UploadResult, chunks: list[dict[str, Any]]) -> str:
    """The upload's summary for operators: counts, per-chunk outcome, rejected-row sample.

    Rejected values are left out: they may be a backer's email or address.
    """
    lines = [
        f"# Upload {result.upload_id}: {result.status}",
        "",
        f"Platform: {_cell(result.platform or 'unknown')}",
        "",
        *_columns_lines((result.stats or {}).get("detection") or {}),
        "| rows | imported | rejected | chunks | completed | failed |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {result.total_rows} | {result.imported_rows} | {result.rejected_rows} "
        f"| {result.total_chunks} | {result.completed_chunks} | {result.failed_chunks} |",
        "",
    ]
    errors = result.errors or {}
    if errors.get("error"):
        lines += [
            f"**Error**: `{_cell(errors['error'].get('code'))}`: "
            f"{_cell(errors['error'].get('message', ''))}",
            "",
        ]
    tables = (result.stats or {}).get("tables") or {}
    if tables:
        lines += [
            "| table | created | updated | unchanged | deleted |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {c['created']} | {c['updated']} | {c['unchanged']} | {c['deleted']} |"
            for name, c in tables.items()
        ]
        lines.append("")
    warnings = (result.stats or {}).get("warnings") or []
    if warnings:
        lines += ["## Warnings", "", "| warning | count | about |", "|---|---:|---|"]
        lines += [
            f"| {_cell(w['code'])} | {w['count']} | {_cell(_warning_about(w))} |" for w in warnings
        ]
        lines.append("")
    lines += [
        "## Chunks",
        "",
        "| chunk | rows | status | imported | rejected | attempts | error |",
        "|---:|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {c['chunk_index']} | {c['rows']} | {c['status']} | {c['imported']} | "
        f"{c['rejected']} | {c['attempts']} | {_cell(error_cell(c))} |"
        for c in chunks[:CHUNK_LINES]
    ]
    if len(chunks) > CHUNK_LINES:
        lines.append(f"\n… and {len(chunks) - CHUNK_LINES} more chunks")
    sample = errors.get("sample") or []
    if sample:
        by_code = ", ".join(f"{_cell(k)}: {v}" for k, v in (errors.get("by_code") or {}).items())
        lines += [
            "",
            "## Rejected rows",
            "",
            f"By reason: {by_code}",
            "",
            "| row | column | reason |",
            "|---:|---|---|",
        ]
        lines += [f"| {e['row']} | {_cell(e['column'])} | {_cell(e['code'])} |" for e in sample]
    return "\n".join(lines) + "\n"


def figure(value: float | None, decimals: int = 0) -> str:
    """A number with thousands separators (`1,234,567`; `12,345.6` with `decimals=1`)."""
    return "-" if value is None else f"{value:,.{decimals}f}"


def _money(amount: str) -> str:
    try:
        return f"{Decimal(amount):,.2f}"
    except (InvalidOperation, ValueError):
        return amount


def timing(stats: dict[str, Any], total_rows: int) -> dict[str, float | None]:
    """Seconds and rows per second of staging the file, of importing it, and of both.

    Import is the upload flow's work from its start to its aggregation (`duration_seconds`);
    staging is reading the file into chunks, absent when the web app staged it.
    """
    staging = stats.get("staging_seconds")
    importing = stats.get("duration_seconds")
    both = staging + importing if staging is not None and importing is not None else None

    def rate(seconds: float | None) -> float | None:
        return round(total_rows / seconds, 1) if seconds else None

    return {
        "staging_seconds": staging,
        "import_seconds": importing,
        "total_seconds": round(both, 3) if both is not None else None,
        "staging_rows_per_second": rate(staging),
        "import_rows_per_second": stats.get("rows_per_second"),
        "rows_per_second": rate(both),
    }


def warning_line(warning: dict[str, Any]) -> str:
    """One value-rule warning as a line: code, count, message, and its columns or values."""
    line = f"{warning['code']} {figure(warning['count'])}: {warning.get('message', '')}"
    if warning.get("columns"):
        line += " (" + ", ".join(f"{c} {figure(n)}" for c, n in warning["columns"].items()) + ")"
    if warning.get("values"):
        line += ": " + ", ".join(warning["values"])
    return line


def summary_lines(data: dict[str, Any], detection: dict[str, Any] | None) -> list[str]:
    """The upload's outcome as the CLI prints it: status, rows, chunks, distinct rows per table
    created / updated / unchanged, time split into staging and import, reasons, amounts."""
    stats = data.get("stats") or {}
    errors = data.get("errors") or {}
    error = errors.get("error")
    platform = data["platform"] or "unknown platform"
    if data["dry_run"]:
        lines = [
            f"upload {data['upload_id']} (dry run, nothing written): "
            f"would be {data['status']} ({platform})"
        ]
    else:
        lines = [f"upload {data['upload_id']}: {data['status']} ({platform})"]
    if detection:
        lines.append(
            f"  detected: {detection['platform']} {detection['variant']} "
            f"(signature: {detection['signature']}; pledge key: {detection['pledge_key']})"
        )
        items = detection.get("item_columns") or []
        if items:
            lines.append(f"  item columns ({len(items)}): " + ", ".join(items))
        dates = [
            f"{d['column']} as {d['style']}"
            + (" (month first assumed: no day above 12)" if d.get("ambiguous") else "")
            for d in (detection.get("dates") or {}).values()
        ]
        if dates:
            lines.append("  dates: " + "; ".join(dates))
        unmapped = detection.get("unmapped_columns") or []
        if unmapped:
            lines.append(f"  kept in survey.answers ({len(unmapped)}): " + ", ".join(unmapped))
    lines.append(
        f"  rows: {figure(data['total_rows'])} total, {figure(data['imported_rows'])} imported, "
        f"{figure(data['rejected_rows'])} rejected"
    )
    lines.append(
        f"  chunks: {figure(data['total_chunks'])} total, "
        f"{figure(data['completed_chunks'])} completed, {figure(data['failed_chunks'])} failed"
    )
    for table, counts in (stats.get("tables") or {}).items():
        lines.append(
            f"  {table}: {figure(counts['created'])} created, {figure(counts['updated'])} "
            f"updated, {figure(counts['unchanged'])} unchanged"
            + (f", {figure(counts['deleted'])} deleted" if counts.get("deleted") else "")
        )
    times = timing(stats, data["total_rows"])
    if times["import_seconds"] is not None:
        importing = (
            f"import {figure(times['import_seconds'], 1)} s "
            f"({figure(times['import_rows_per_second'])} rows/s)"
        )
        if times["staging_seconds"] is None:
            lines.append(f"  time: {importing}")
        else:
            lines.append(
                f"  time: {figure(times['total_seconds'], 1)} s, "
                f"{figure(times['rows_per_second'])} rows/s: "
                f"staging {figure(times['staging_seconds'], 1)} s "
                f"({figure(times['staging_rows_per_second'])} rows/s) + {importing}"
            )
    by_code = errors.get("by_code") or {}
    if by_code:
        lines.append(
            "  rejected by reason: " + ", ".join(f"{k} {figure(v)}" for k, v in by_code.items())
        )
    pledged = [
        f"{_money(v['amount'])} {c} ({figure(v['pledges'])} pledges)"
        for c, v in (stats.get("currencies") or {}).items()
    ]
    if pledged:
        lines.append("  pledged: " + ", ".join(pledged))
    for warning in stats.get("warnings") or []:
        lines.append(f"  warning: {warning_line(warning)}")
    for note in stats.get("notes") or []:
        lines.append(f"  note: {note['code']}: {note['message']}")
    if error:
        lines.append(f"  error: {error.get('code')}: {error.get('message')}")
        if error.get("column"):  # a date column in no accepted style: one of its values
            lines.append(f"  column {error['column']!r}, e.g. {shown_value(error.get('value'))}")
        if error.get("available_headers"):
            lines.append("  available headers: " + ", ".join(error["available_headers"]))
    return lines
