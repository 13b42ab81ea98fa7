"""build_frames on its own: rows to canonical frames and rejections, no database."""

from __future__ import annotations

import csv
import io

import pytest

from pledgeflow.transform import build_frames
from pledgeflow_bench import exports
from schemas.platforms import resolve_layout
from tests import exports_backerkit, exports_gamefound, exports_indiegogo


def parsed(data: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    return rows[0], rows[1:]


@pytest.mark.parametrize(
    ("data", "email_header"),
    [
        (exports.render("2020", exports.backers(3)), "Email"),
        (exports_indiegogo.render(exports_indiegogo.sample()[:3]), "Email"),
        (exports_backerkit.render(exports_backerkit.sample()[:3]), "Email"),
        (exports_gamefound.render(exports_gamefound.sample_numbered()[:2]), "E-mail"),
        (
            # Keyed by email: a blank email is one rejection, not also a missing key.
            exports_gamefound.render(
                exports_gamefound.sample_by_email()[:2], exports_gamefound.WITHOUT_NUMBER
            ),
            "Email",
        ),
    ],
)
def test_a_chunk_whose_rows_are_all_rejected_still_yields_empty_frames(
    data: bytes, email_header: str
) -> None:
    headers, rows = parsed(data)
    for row in rows:
        row[headers.index(email_header)] = ""

    frames = build_frames(headers, rows, 1, resolve_layout(tuple(headers)), None)

    assert (frames.imported_rows, frames.rejected_rows) == (0, len(rows))
    assert [r["code"] for r in frames.rejected] == ["missing_email"] * len(rows)
    assert frames.pledges.empty and frames.backers.empty and frames.inventory.empty
