"""Pledge sums per currency, and the `mixed_currency` note when a file or project mixes them.

Money is never converted: each amount keeps the currency its cell showed, so a file or project
with pledges in several currencies is reported with one sum per currency, never a grand total.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select

from schemas.tables import PLEDGE

UNKNOWN_CURRENCY = "unknown"  # a plain number in a project without a currency


def pledge_sums(conn: Connection, scope: ColumnElement[bool]) -> dict[str, dict[str, Any]]:
    """`{currency: {"pledges": n, "amount": "123.45"}}` over pledges with an amount in `scope`."""
    rows = conn.execute(
        select(PLEDGE.c.currency, func.count(), func.sum(PLEDGE.c.amount))
        .where(scope, PLEDGE.c.amount.isnot(None))
        .group_by(PLEDGE.c.currency)
    ).all()
    return {
        (currency or UNKNOWN_CURRENCY): {
            "pledges": int(pledges),
            "amount": str(Decimal(str(total or 0)).quantize(Decimal("0.01"))),
        }
        for currency, pledges, total in sorted(rows, key=lambda r: r[0] or "")
    }


def currency_summary(conn: Connection, upload_id: int, project_id: int) -> dict[str, Any]:
    """This upload's pledge sums per currency, and notes when the upload or its project mixes
    currencies (the project's other uploads count: sums across them would be meaningless)."""
    upload_sums = pledge_sums(conn, PLEDGE.c.upload_id == upload_id)
    project_sums = pledge_sums(conn, PLEDGE.c.project_id == project_id)
    notes: list[dict[str, Any]] = []
    if len(upload_sums) > 1:
        notes.append(_note("upload", upload_sums))
    elif len(project_sums) > 1:
        notes.append(_note("project", project_sums))
    return {"currencies": upload_sums, "notes": notes}


def _note(scope: str, sums: dict[str, dict[str, Any]]) -> dict[str, Any]:
    listed = ", ".join(f"{c} {s['amount']} ({s['pledges']} pledges)" for c, s in sums.items())
    return {
        "code": "mixed_currency",
        "scope": scope,
        "message": f"the {scope}'s pledges are in {len(sums)} currencies, kept apart and never "
        f"summed: {listed}",
        "currencies": sums,
    }
