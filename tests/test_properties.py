"""Property: for every supported layout, random valid and invalid rows end imported or rejected,
every rejected row is in the report with its reason, and importing again changes nothing.

The plain functions (stage_file, start_upload, process_chunk, aggregate_upload) stand in for
the Prefect flow, which would cost about a second per import.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from pledgeflow.chunks import process_chunk
from pledgeflow.reports import write_rejected_csv
from pledgeflow.staging import stage_file
from pledgeflow.status import UploadResult
from pledgeflow.uploads import aggregate_upload, start_upload
from pledgeflow_bench import exports
from schemas.frames import REASON_CODES
from schemas.mappings import ColumnMapping
from tests import exports_backerkit, exports_gamefound, exports_indiegogo
from tests import test_mapping as custom
from tests.helpers import checksums

EMAILS = ["amy@example.com", " Amy@Example.com ", "bo@example.com", "cy@example.com"]


@dataclass(frozen=True)
class Drawn:
    """One generated row before rendering: its number, email, amount, quantity and fault."""

    number: int
    email: str
    cents: int
    quantity: int
    fault: str | None


@dataclass(frozen=True)
class LayoutCase:
    """How to render valid rows of one layout, and which header each fault breaks."""

    name: str
    render: Callable[[list[Drawn]], bytes]
    email: str
    money: str
    key: str | None = None
    date: str | None = None
    quantity: str | None = None
    mapping: ColumnMapping | None = None

    @property
    def faults(self) -> list[str | None]:
        """The faults this layout can carry (None: a valid row)."""
        possible = {
            "missing_email": self.email,
            "invalid_money": self.money,
            "missing_key": self.key,
            "invalid_date": self.date,
            "invalid_quantity": self.quantity,
            "short_record": self.email,
        }
        return [None, None, *(code for code, header in possible.items() if header)]


def _dollars(d: Drawn) -> str:
    return f"${d.cents / 100:,.2f}"


def _kickstarter(rows: list[Drawn]) -> bytes:
    return exports.render(
        "2020",
        [
            exports.Backer(
                number=d.number,
                email=d.email,
                name=f"Backer {d.number}",
                tier=d.number % 3,
                pledge=_dollars(d) + " USD",
                addons=(d.quantity, 0),
            )
            for d in rows
        ],
    )


def _indiegogo(rows: list[Drawn]) -> bytes:
    perks = ["early", "deluxe", None]
    return exports_indiegogo.render(
        [
            exports_indiegogo.Contribution(
                d.number,
                d.email,
                f"Backer {d.number}",
                perks[d.number % 3],
                _dollars(d),
                items=["Mug", "Sticker", "Mug"][: d.quantity],
            )
            for d in rows
        ]
    )


def _backerkit(rows: list[Drawn]) -> bytes:
    return exports_backerkit.render(
        [
            exports_backerkit.Backer(
                d.number,
                d.email,
                f"Backer {d.number}" if d.number % 2 else "",
                address_name=f"Shipping {d.number}",
                guid=str(d.number),
                reward=["11", "12"][d.number % 2],
                amount=f"{d.cents / 100:.1f}",
                skus={"BH": str(d.quantity), "CL": str(d.number % 2)},
            )
            for d in rows
        ]
    )


def _gamefound(headers: list[str]) -> Callable[[list[Drawn]], bytes]:
    def render(rows: list[Drawn]) -> bytes:
        return exports_gamefound.render(
            [
                exports_gamefound.Pledge(
                    d.number, f"Backer {d.number}", d.email, "Core", "", f"€{d.cents / 100:.2f}"
                )
                for d in rows
            ],
            headers,
        )

    return render


def _custom(rows: list[Drawn]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(custom.HEADERS)
    for d in rows:
        tier = ["Basic", "Premium", ""][d.number % 3]
        csv.writer(out).writerow(
            [
                f"A-{d.number}",
                d.email,
                f"Backer {d.number}",
                tier,
                _dollars(d),
                "2024-05-01",
                str(d.quantity),
                "1",
                f"note {d.number}",
            ]
        )
    return out.getvalue().encode()


CASES = [
    LayoutCase(
        "kickstarter-2020",
        _kickstarter,
        "Email",
        "Pledge Amount",
        "Backer Number",
        "Pledged At",
        "[Addon: 1001] Dice Tower",
    ),
    LayoutCase("indiegogo", _indiegogo, "Email", "Amount", "Pledge ID", "Funding Date"),
    LayoutCase("backerkit", _backerkit, "Email", "Pledge Amount", "Id", "Survey Answered At", "BH"),
    LayoutCase(
        "gamefound",
        _gamefound(exports_gamefound.WITH_NUMBER),
        "E-mail",
        "Pledge amount",
        "Backer number",
    ),
    LayoutCase(
        "gamefound-by-email", _gamefound(exports_gamefound.WITHOUT_NUMBER), "Email", "Pledge amount"
    ),
    LayoutCase(
        "custom",
        _custom,
        "Customer Email",
        "Total",
        "Order Ref",
        "Ordered On",
        "Mug",
        ColumnMapping.from_dict(custom.MAPPING),
    ),
]
BROKEN = {
    "missing_email": "",
    "invalid_money": "ten",
    "missing_key": "  ",
    "invalid_date": "not a date",
    "invalid_quantity": "-1",
}


def build_file(case: LayoutCase, rows: list[Drawn]) -> bytes:
    """Render valid rows, then break the cells each row's fault names."""
    records = list(csv.reader(io.StringIO(case.render(rows).decode("utf-8-sig"), newline="")))
    headers = records[0]
    for record, drawn in zip(records[1:], rows, strict=True):
        if drawn.fault == "short_record":
            del record[2:]
        elif drawn.fault is not None:
            header = getattr(case, _FIELD[drawn.fault])
            record[headers.index(header)] = BROKEN[drawn.fault]
    out = io.StringIO()
    csv.writer(out).writerows(records)
    return out.getvalue().encode()


_FIELD = {
    "missing_email": "email",
    "invalid_money": "money",
    "missing_key": "key",
    "invalid_date": "date",
    "invalid_quantity": "quantity",
}


def import_plain(path: Path, project: str, chunk_size: int, case: LayoutCase) -> UploadResult:
    """What the upload flow does, chunk by chunk in file order, without Prefect."""
    upload_id = stage_file(
        path,
        shop="shop.example.com",
        project=project,
        chunk_size=chunk_size,
        currency="EUR",
        mapping=case.mapping,
    )
    for chunk_id in start_upload(upload_id).chunk_ids:
        process_chunk(chunk_id)
    return aggregate_upload(upload_id)


@st.composite
def drawn_rows(draw: st.DrawFn, case: LayoutCase) -> list[Drawn]:
    """Between 1 and 12 rows with distinct numbers, a few shared emails, some faults."""
    size = draw(st.integers(1, 12))
    return [
        Drawn(
            number=100 + n,
            email=draw(st.sampled_from(EMAILS)),
            cents=draw(st.integers(0, 500_000)),
            quantity=draw(st.integers(0, 3)),
            fault=draw(st.sampled_from(case.faults)),
        )
        for n in range(size)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_rows_end_imported_or_reported_and_reimport_changes_nothing(
    db: Engine, tmp_path: Path, case: LayoutCase, data: st.DataObject
) -> None:
    rows = data.draw(drawn_rows(case))
    chunk_size = data.draw(st.integers(2, 5))
    project = f"prop-{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{project}.csv"
    path.write_bytes(build_file(case, rows))
    expected = {n: d.fault for n, d in enumerate(rows, start=1) if d.fault}
    dated = [d.fault for d in rows if d.fault != "short_record"]

    first = import_plain(path, project, chunk_size, case)

    if case.date and dated and all(f == "invalid_date" for f in dated):
        # No date of the column reads: the file's format is refused, no row is written.
        assert first.status == "FAILED"
        assert (first.errors or {})["error"]["code"] == "unreadable_dates"
        assert (first.imported_rows, first.rejected_rows) == (0, 0)
        return
    if len(expected) == len(rows):
        assert first.status == "FAILED"
        assert (first.errors or {})["error"]["code"] == "all_rows_rejected"
    else:
        assert first.status == "COMPLETED", first.errors
    assert first.platform == ("custom" if case.mapping else case.name.split("-")[0])
    assert first.imported_rows + first.rejected_rows == first.total_rows == len(rows)
    assert first.rejected_rows == len(expected)
    report = io.StringIO()
    assert write_rejected_csv(first.upload_id, report) == len(expected)
    report.seek(0)
    lines = list(csv.DictReader(report))
    assert {int(line["row_number"]): line["code"] for line in lines} == expected
    assert all(
        line["message"] == REASON_CODES[line["code"]]
        for line in lines
        if line["code"] != "invalid_date"  # names its column's style
    )

    before = checksums(db)
    second = import_plain(path, project, chunk_size, case)

    assert checksums(db) == before
    assert (second.imported_rows, second.rejected_rows) == (first.imported_rows, len(expected))
    assert all(t["created"] == 0 for t in (second.stats or {})["tables"].values())
