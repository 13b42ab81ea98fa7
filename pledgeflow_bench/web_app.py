"""What the web app writes to hand pledgeflow a file: its project, an upload and the upload's
chunk rows, in plain SQL.

The bench's bursts and the tests both stand in for the web app with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, text


def web_app_project(conn: Connection, shop: str, name: str) -> int:
    """The id of the shop's project `name`, inserted if it is new."""
    return int(
        conn.execute(
            text(
                "INSERT INTO project (shop, name) VALUES (:s, :n) "
                "ON CONFLICT (shop, name) DO UPDATE SET name = EXCLUDED.name RETURNING id"
            ),
            {"s": shop, "n": name},
        ).scalar_one()
    )


def insert_web_app_upload(
    conn: Connection,
    project_id: int,
    shop: str,
    filename: str,
    headers: Sequence[str],
    chunks: Sequence[Sequence[Sequence[object]]],
) -> int:
    """Insert a PENDING upload and one PENDING chunk row per chunk (its rows as JSON, numbered
    on from 1), naming only the columns the web app names; the upload's id."""
    upload_id = conn.execute(
        text(
            "INSERT INTO csv_upload (project_id, shop, filename, status) "
            "VALUES (:p, :s, :f, 'PENDING') RETURNING id"
        ),
        {"p": project_id, "s": shop, "f": filename},
    ).scalar_one()
    first_row = 1
    for index, chunk_rows in enumerate(chunks):
        conn.execute(
            text(
                "INSERT INTO csv_upload_chunk "
                "(upload_id, chunk_index, data, first_row, row_count, status) "
                "VALUES (:u, :i, CAST(:d AS json), :f, :n, 'PENDING')"
            ),
            {
                "u": upload_id,
                "i": index,
                "f": first_row,
                "n": len(chunk_rows),
                "d": json.dumps({"headers": list(headers), "rows": chunk_rows}),
            },
        )
        first_row += len(chunk_rows)
    return int(upload_id)
