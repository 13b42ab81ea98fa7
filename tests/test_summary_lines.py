"""The summary the CLI prints: distinct counts, thousands separators, staging and import time."""

from __future__ import annotations

from typing import Any

from pledgeflow.summaries import summary_lines, timing

STATS: dict[str, Any] = {
    "tables": {
        "product": {"created": 56, "updated": 0, "unchanged": 0, "deleted": 0},
        "pledge": {"created": 1_234_567, "updated": 1_000, "unchanged": 0, "deleted": 0},
        "inventory": {"created": 2_000_000, "updated": 0, "unchanged": 0, "deleted": 12_345},
    },
    "staging_seconds": 8.0,
    "duration_seconds": 92.0,
    "rows_per_second": 13_574.1,
    "currencies": {"USD": {"pledges": 1_234_567, "amount": "98765432.10"}},
}
DATA: dict[str, Any] = {
    "upload_id": 7,
    "status": "COMPLETED",
    "platform": "kickstarter",
    "total_rows": 1_250_000,
    "imported_rows": 1_248_800,
    "rejected_rows": 1_200,
    "total_chunks": 125,
    "completed_chunks": 125,
    "failed_chunks": 0,
    "dry_run": False,
    "stats": STATS,
    "errors": {"by_code": {"invalid_money": 1_200}, "sample": [], "error": None},
}


def test_figures_have_thousands_separators_and_time_is_split() -> None:
    lines = summary_lines(DATA, None)

    assert lines == [
        "upload 7: COMPLETED (kickstarter)",
        "  rows: 1,250,000 total, 1,248,800 imported, 1,200 rejected",
        "  chunks: 125 total, 125 completed, 0 failed",
        "  product: 56 created, 0 updated, 0 unchanged",
        "  pledge: 1,234,567 created, 1,000 updated, 0 unchanged",
        "  inventory: 2,000,000 created, 0 updated, 0 unchanged, 12,345 deleted",
        "  time: 100.0 s, 12,500 rows/s: staging 8.0 s (156,250 rows/s) + import 92.0 s "
        "(13,574 rows/s)",
        "  rejected by reason: invalid_money 1,200",
        "  pledged: 98,765,432.10 USD (1,234,567 pledges)",
    ]


def test_timing_without_staging_counts_the_import_only() -> None:
    stats = {k: v for k, v in STATS.items() if k != "staging_seconds"}

    assert timing(stats, 1_250_000) == {
        "staging_seconds": None,
        "import_seconds": 92.0,
        "total_seconds": None,
        "staging_rows_per_second": None,
        "import_rows_per_second": 13_574.1,
        "rows_per_second": None,
    }
    assert "  time: import 92.0 s (13,574 rows/s)" in summary_lines({**DATA, "stats": stats}, None)


def test_warning_counts_have_thousands_separators() -> None:
    warning = {"code": "phone_not_parsed", "count": 9_959, "message": "kept as typed"}
    stats = {**STATS, "warnings": [{**warning, "columns": {"Phone": 9_959}}]}

    lines = summary_lines({**DATA, "stats": stats}, None)

    assert "  warning: phone_not_parsed 9,959: kept as typed (Phone 9,959)" in lines
