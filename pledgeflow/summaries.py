"""The operator's summary of an upload: counts, per-chunk outcome, rejected rows without values."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pledgeflow.database import get_engine
from pledgeflow.uploads import UploadResult
from schemas.tables import CsvUploadChunk

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
            "imported": r.imported_rows,
            "rejected": r.rejected_rows,
            "attempts": r.attempts,
            "error": ((r.errors or {}).get("error") or {}).get("code"),
        }
        for r in rows
    ]


def _cell(value: object) -> str:
    # Markdown table cells: keep them on one line and inert.
    return str(value).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def summary_markdown(result: UploadResult, chunks: list[dict[str, Any]]) -> str:
    """The upload's summary for operators: counts, per-chunk outcome, rejected-row sample.

    Rejected values are left out: they may be a backer's email or address.
    """
    lines = [
        f"# Upload {result.upload_id}: {result.status}",
        "",
        f"Platform: {_cell(result.platform or 'unknown')}",
        "",
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
    lines += [
        "## Chunks",
        "",
        "| chunk | rows | status | imported | rejected | attempts | error |",
        "|---:|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {c['chunk_index']} | {c['rows']} | {c['status']} | {c['imported']} | "
        f"{c['rejected']} | {c['attempts']} | {_cell(c['error'] or '')} |"
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
