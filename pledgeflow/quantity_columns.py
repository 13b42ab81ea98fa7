"""Which item columns of an upload hold quantities: decided once, by their values, for every chunk.

A Kickstarter 2020+ layout takes every unknown column between `Notes` and `Survey Response`
for an item, whatever its name holds (`Gloomhaven: Jaws of the Lion`, `Mini: Hero?`); a column
there whose cells are not all whole numbers >= 0 or blank, anywhere in the upload, is a survey
question and kept in answers. The decision looks at every chunk before any is imported, so all
chunks read the upload alike. BackerKit's SKU columns are SKUs by the export's own definition:
a cell there that is no quantity stays the row's `invalid_quantity` rejection.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, select, text

from pledgeflow.values import WHOLE_NUMBER
from schemas.layout import Layout
from schemas.tables import CsvUploadChunk

# PostgreSQL's spelling of `pledgeflow.values.WHOLE_NUMBER`, blank allowed.
SQL_QUANTITY = r"^\s*[0-9]{0,9}\s*$"


def candidate_columns(layout: Layout) -> list[int]:
    """The item columns whose values decide whether they are items."""
    return [index for index, _ in layout.item_columns] if layout.items_by_value else []


class QuantityWatch:
    """Watches the candidate columns of records as they are staged: the decision for free."""

    def __init__(self, candidates: list[int]) -> None:
        self.candidates = list(candidates)
        self.answers: list[int] = []
        self.quantities: set[str] = set()  # cells seen that are quantities ("", "0", "1", ...)

    def see(self, records: list[list[str]]) -> None:
        """Look at the candidate cells of a batch of records (their distinct combinations)."""
        if not self.candidates:
            return
        try:
            # One pass in C; quantity columns hold a few distinct combinations of cells.
            distinct = set(map(itemgetter(*self.candidates, self.candidates[0]), records))
        except IndexError:  # a short record: its missing cells count as blank
            distinct = {
                tuple(r[i] if i < len(r) else "" for i in (*self.candidates, 0)) for r in records
            }
        for combination in distinct:
            for index, cell in zip(self.candidates, combination, strict=False):
                if index in self.answers or cell in self.quantities:
                    continue
                if _quantity(cell):
                    self.quantities.add(cell)
                else:
                    self.answers.append(index)

    def decision(self) -> dict[str, list[int]]:
        """What `stats["items_block"]` records for `answer_columns_by_value`."""
        return {"candidates": self.candidates, "answer_columns": sorted(self.answers)}


def answer_columns_by_value(
    conn: Connection, upload_id: int, layout: Layout, staged: object = None
) -> list[int]:
    """Indexes of the layout's item columns that hold anything but quantities in the upload.

    `staged` is the decision `QuantityWatch` made while the file was staged, used when it
    watched the same columns; an upload stored by a web app is scanned in the database."""
    candidates = candidate_columns(layout)
    if not candidates:
        return []
    if isinstance(staged, dict) and staged.get("candidates") == candidates:
        return [int(i) for i in staged.get("answer_columns") or []]
    if conn.dialect.name == "postgresql":
        return _scan_in_postgresql(conn, upload_id, candidates)
    return _scan_in_python(conn, upload_id, candidates)


def _scan_in_postgresql(conn: Connection, upload_id: int, candidates: list[int]) -> list[int]:
    # One pass over the upload's rows; a row that is no array (a web app's odd row) or a
    # missing cell counts as blank, as the chunk's own checks reject such rows anyway.
    checks = ", ".join(
        f"bool_and(coalesce(CASE WHEN jsonb_typeof(r) = 'array' THEN r->>{int(i)} END, '') "
        f"~ '{SQL_QUANTITY}')"
        for i in candidates
    )
    row = conn.execute(
        text(
            f"SELECT {checks} FROM csv_upload_chunk c "
            "CROSS JOIN LATERAL jsonb_array_elements(c.data::jsonb->'rows') r "
            "WHERE c.upload_id = :upload_id AND json_typeof(c.data->'rows') = 'array'"
        ),
        {"upload_id": upload_id},
    ).one()
    return [i for i, quantities in zip(candidates, row, strict=True) if quantities is False]


def _scan_in_python(conn: Connection, upload_id: int, candidates: list[int]) -> list[int]:
    answers: set[int] = set()
    for data in conn.execute(
        select(CsvUploadChunk.data).where(CsvUploadChunk.upload_id == upload_id)
    ).scalars():
        rows = data.get("rows") if isinstance(data, dict) else None
        for row in rows if isinstance(rows, list) else ():
            if not isinstance(row, list):
                continue
            for index in candidates:
                if index not in answers and index < len(row) and not _quantity(row[index]):
                    answers.add(index)
    return sorted(answers)


def _quantity(cell: Any) -> bool:
    value = "" if cell is None else str(cell).strip()
    return not value or WHOLE_NUMBER.fullmatch(value) is not None
