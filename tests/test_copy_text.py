"""COPY data built a column at a time (`stages.copy_text`) is byte for byte what psycopg's own
`write_row` sends for the same rows, and the server stores the same values from it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from sqlalchemy.engine import Engine

from pledgeflow.writers.stages import _KeptWriter, _values, copy_text

COLUMNS = ("pledge_id", "amount", "pledged_at", "source_row", "shipping_name", "answers")
TABLE = "copy_text_probe"
DDL = (
    f"CREATE TEMPORARY TABLE {TABLE} (pledge_id text, amount numeric(12,2), "
    "pledged_at timestamptz, source_row bigint, shipping_name text, answers text)"
)


def _frame() -> pd.DataFrame:
    """Values COPY must escape or mark missing, each in a text, number, Decimal and time column."""
    names = [
        "plain",
        "tab\there",
        "new\nline",
        "carriage\rreturn",
        "back\\slash",
        "\\N",  # a backslash and an N: text, not a missing value
        "bell\b form\f vertical\v",
        "émoji 🎉 Zoë",
        "",
        None,
    ]
    rows = len(names)
    return pd.DataFrame(
        {
            "pledge_id": pd.array([f"p{i}" for i in range(rows)], dtype="str"),
            "amount": [
                Decimal("1.50"),
                Decimal("0"),
                None,
                Decimal("12345.67"),
                *[Decimal("-2")] * 6,
            ],
            "pledged_at": pd.to_datetime(
                pd.Series(
                    ["2020-01-02T03:04:05.123456Z", None, *["2021-06-30T23:59:59Z"] * (rows - 2)]
                ),
                utc=True,
                format="ISO8601",
            ),
            "source_row": np.arange(1, rows + 1, dtype=np.int64),
            "shipping_name": pd.array(names, dtype="str"),
            "answers": [None, '{"Notes": "a\\tb"}', *["{}"] * (rows - 2)],
        }
    )


def _psycopg_bytes(raw: psycopg.Connection[Any], frame: pd.DataFrame) -> bytes:
    """The bytes psycopg's `write_row` sends for the frame's rows (the path before copy_text)."""
    kept = bytearray()
    with raw.cursor() as cursor:
        statement = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
        with cursor.copy(statement, writer=_KeptWriter(cursor, kept)) as copying:
            for row in _values(frame, COLUMNS):
                copying.write_row(row)
    return bytes(kept)


def _stored(raw: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    with raw.cursor() as cursor:
        rows = cursor.execute(f"SELECT * FROM {TABLE} ORDER BY source_row").fetchall()
        cursor.execute(f"DELETE FROM {TABLE}")
    return rows


def test_copy_text_sends_what_psycopg_sends_and_the_server_stores_the_same(db: Engine) -> None:
    frame = _frame()
    with db.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        raw.execute(DDL)
        expected = _psycopg_bytes(raw, frame)
        by_psycopg = _stored(raw)

        built = copy_text(frame, COLUMNS)

        assert built == expected
        statement = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(statement) as copying:
            copying.write(built)
        assert _stored(raw) == by_psycopg
        conn.rollback()
    assert by_psycopg[1][4] == "tab\there" and by_psycopg[5][4] == "\\N"
    assert by_psycopg[9][4] is None and by_psycopg[8][4] == ""


@pytest.mark.parametrize(
    "values",
    [
        [True, False],  # booleans: psycopg writes t/f, not their str
        [Decimal("Infinity"), Decimal("1")],  # not a finite amount
        [1.5, 2.5],  # floats: not a type copy_text formats
    ],
    ids=["bool", "decimal-infinity", "float"],
)
def test_values_copy_text_does_not_format_go_by_write_row(values: list[Any]) -> None:
    frame = pd.DataFrame({"v": pd.Series(values, dtype=object)})

    assert copy_text(frame, ["v"]) is None
