"""build_frames on rendered Kickstarter files: rejections, de-duplication, answers, products."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import email_validator
import pandas as pd
import pytest

from pledgeflow.dates import DateColumn, invalid_date_message
from pledgeflow.transform import ChunkFrames, build_frames
from pledgeflow_bench.exports import TIERS, Backer, backers, render
from schemas.frames import REASON_CODES
from schemas.platforms import resolve_layout

Rows = list[list[str]]


def parse(data: bytes, encoding: str = "utf-8-sig") -> tuple[list[str], Rows]:
    """Headers and rows of a CSV file, read positionally as the importer does."""
    records = list(csv.reader(io.StringIO(data.decode(encoding), newline="")))
    return records[0], records[1:]


def run(
    headers: list[str],
    rows: Rows,
    first_row: int = 1,
    currency: str | None = None,
) -> ChunkFrames:
    layout = resolve_layout(tuple(headers))
    return build_frames(headers, rows, first_row, layout, currency)


def chunk(variant: str, people: list[Backer], **kwargs: object) -> tuple[list[str], Rows]:
    return parse(render(variant, people, **kwargs))  # type: ignore[arg-type]


def by_key(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {
        str(row["pledge_key"]): {str(k): v for k, v in row.items()}
        for row in frame.to_dict("records")
    }


def check_accounting(frames: ChunkFrames, total: int) -> None:
    """Every row ends imported or rejected; rejected rows reach no frame."""
    bad = {r["row"] for r in frames.rejected}
    assert frames.rejected_rows == len(bad)
    assert frames.imported_rows + frames.rejected_rows == total
    assert len(frames.pledges) <= frames.imported_rows
    assert not bad & set(frames.pledges["source_row"])
    assert not bad & set(frames.backers["source_row"])
    for entry in frames.rejected:
        assert set(entry) == {"row", "column", "value", "code", "message"}
        if entry["code"] == "invalid_date":  # names its column's style, then the accepted ones
            assert entry["message"].startswith(("expected ", "no accepted date style"))
        else:
            assert entry["message"] == message_of(entry["code"], entry["value"])


def message_of(code: str, value: str) -> str:
    """The message of a rejection: email-validator's reason for an address, else the code's."""
    if code != "invalid_email":
        return REASON_CODES[code]
    try:
        email_validator.validate_email(value.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        return str(exc)
    raise AssertionError(f"email-validator accepts {value!r}")


# (variant, code, column header, the offending value in the third row, the Backer attribute
# rendered in that column; None: the value is written as the column's own cell)
CELL_CASES: list[tuple[str, str, str, str, str | None]] = [
    ("2020", "missing_key", "Backer Number", "", None),
    ("2014", "missing_key", "Backer Number", "   ", None),
    ("2013", "missing_key", "Backer Id", "", None),
    ("2020", "missing_email", "Email", "", "email"),
    ("no-reward", "missing_email", "Email", "  ", "email"),
    ("2017", "invalid_email", "Email", "backer.example.com", "email"),
    ("2020", "invalid_email", "Email", "two words@example.com", "email"),
    ("2024", "invalid_email", "Email", "a@b@example.com", "email"),
    ("2020", "invalid_money", "Pledge Amount", "twelve dollars", "pledge"),
    ("2014", "invalid_money", "Shipping Amount", "USD 5.00 EUR", None),
    ("2017", "invalid_money", "Reward Minimum", "$10,000,000,000.00 USD", None),
    ("2020", "invalid_money", "Backing Minimum", "N/A", None),
    ("2020", "invalid_date", "Pledged At", "yesterday", "pledged_at"),
    ("2024", "invalid_date", "Pledged At (UTC)", "2024-13-45", "pledged_at"),
    ("2013", "invalid_date", "Survey Response", "soon", "survey_at"),
    ("2020", "invalid_quantity", "[Addon: 1001] Dice Tower", "1.5", None),
    ("2020", "invalid_quantity", "Wooden Insert", "-1", None),
    ("2024", "invalid_quantity", "ambient one", "two", None),
]


@pytest.mark.parametrize(
    ("variant", "code", "column", "value", "attribute"),
    CELL_CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CELL_CASES],
)
def test_cell_rejection_reports_row_column_value_and_code(
    variant: str, code: str, column: str, value: str, attribute: str | None
) -> None:
    people = backers(5)
    if attribute is None:
        people[2].extra[column] = value
    else:
        setattr(people[2], attribute, value)
    headers, rows = chunk(variant, people, bom=True)

    frames = run(headers, rows, first_row=41)

    # A date names the style its column was found in (the generator's Kickstarter style).
    message = (
        invalid_date_message(DateColumn(("%Y/%m/%d, %H:%M",)))
        if code == "invalid_date"
        else message_of(code, value)
    )
    assert frames.rejected == [
        {"row": 43, "column": column, "value": value, "code": code, "message": message}
    ]
    assert (frames.imported_rows, frames.rejected_rows) == (4, 1)
    assert sorted(frames.pledges["pledge_key"]) == ["1", "2", "4", "5"]
    assert sorted(frames.pledges["source_row"]) == [41, 42, 44, 45]
    check_accounting(frames, 5)


def test_short_record_names_the_first_missing_header() -> None:
    headers, rows = chunk("2017", backers(4))
    rows[1] = rows[1][:9]  # ends after "Reward ID"

    frames = run(headers, rows, first_row=2001)

    assert frames.rejected == [
        {
            "row": 2002,
            "column": headers[9],
            "value": "",
            "code": "short_record",
            "message": REASON_CODES["short_record"],
        }
    ]
    assert headers[9] == "Pledge Amount"
    assert sorted(frames.pledges["pledge_key"]) == ["1", "3", "4"]
    check_accounting(frames, 4)


def test_long_record_is_rejected_but_blank_trailing_fields_are_not() -> None:
    headers, rows = chunk("2020", backers(4))
    rows[0] = [*rows[0], "", ""]  # a trailing comma or two: fine
    rows[2] = [*rows[2], "surplus"]

    frames = run(headers, rows, first_row=10)

    assert frames.rejected == [
        {
            "row": 12,
            "column": f"field {len(headers) + 1}",
            "value": "surplus",
            "code": "long_record",
            "message": REASON_CODES["long_record"],
        }
    ]
    assert sorted(frames.pledges["pledge_key"]) == ["1", "2", "4"]
    check_accounting(frames, 4)


def test_long_record_column_is_where_the_surplus_value_is() -> None:
    headers, rows = chunk("2020", backers(2))
    rows[1] = [*rows[1], "", "surplus"]  # the value is field width + 2

    frames = run(headers, rows)

    assert frames.rejected[0]["value"] == "surplus"
    assert frames.rejected[0]["column"] == f"field {len(headers) + 2}"


def test_every_reason_code_in_one_chunk_other_rows_import() -> None:
    people = backers(12)
    people[0].extra["Backer Number"] = ""
    people[1].email = ""
    people[2].email = "nobody"
    people[3].pledge = "lots"
    people[4].pledged_at = "someday"
    people[5].extra["[Addon: 1002] Sleeves"] = "x"
    headers, rows = chunk("2020", people)
    rows[6] = rows[6][:3]
    rows[7] = [*rows[7], "", "extra"]

    frames = run(headers, rows, first_row=101)

    codes = {r["row"]: r["code"] for r in frames.rejected}
    assert codes == {
        101: "missing_key",
        102: "missing_email",
        103: "invalid_email",
        104: "invalid_money",
        105: "invalid_date",
        106: "invalid_quantity",
        107: "short_record",
        108: "long_record",
    }
    assert (frames.imported_rows, frames.rejected_rows) == (4, 8)
    assert sorted(frames.pledges["pledge_key"], key=int) == ["9", "10", "11", "12"]
    assert sorted(frames.surveys["pledge_key"], key=int) == ["9", "10", "11", "12"]
    assert set(frames.inventory["pledge_key"]) <= {"9", "10", "11", "12"}
    check_accounting(frames, 12)


def test_row_with_several_bad_cells_is_one_rejected_row_with_each_cell() -> None:
    people = backers(3)
    people[1].email = ""
    people[1].pledge = "free"
    people[1].pledged_at = "never"
    headers, rows = chunk("2017", people)

    frames = run(headers, rows, first_row=5)

    assert [(r["row"], r["column"], r["code"]) for r in frames.rejected] == [
        (6, "Email", "missing_email"),
        (6, "Pledge Amount", "invalid_money"),
        (6, "Pledged At", "invalid_date"),
    ]
    assert (frames.imported_rows, frames.rejected_rows) == (2, 1)
    check_accounting(frames, 3)


def test_repeated_pledge_key_keeps_the_later_row() -> None:
    people = backers(4)
    people[0].addons = (2, 1)
    people[0].items = (1, 1)
    people[0].notes = "first"
    people[0].survey_at = "2021/01/02, 03:04"
    later = Backer(
        number=1,
        email="new@example.com",
        name="Renamed",
        tier=2,
        status="dropped",
        pledge="$200.00 USD",
        addons=(0, 1),
        items=(0, 0),
        notes="second",
        survey_at="2022/02/03, 04:05",
    )
    headers, rows = chunk("2020", [*people, later])

    frames = run(headers, rows, first_row=1)

    assert frames.imported_rows == 5
    pledges = by_key(frames.pledges)
    assert sorted(pledges) == ["1", "2", "3", "4"]
    assert pledges["1"]["source_row"] == 5
    assert pledges["1"]["email"] == "new@example.com"
    assert pledges["1"]["amount"] == Decimal("200.00")
    assert pledges["1"]["status"] == "dropped"
    assert pledges["1"]["product_key"] == TIERS[2][1]  # the tier's Reward ID
    survey = by_key(frames.surveys)["1"]
    assert survey["answers"]["Notes"] == "second"
    assert survey["responded_at"] == pd.Timestamp("2022-02-03 04:05", tz="UTC")
    lines = frames.inventory[frames.inventory["pledge_key"] == "1"]
    assert lines[["product_kind", "product_key", "quantity"]].values.tolist() == [
        ["addon", "1002", 1]
    ]


def test_repeated_email_keeps_the_later_rows_details() -> None:
    people = [
        Backer(1, " Backer9@Example.COM ", "Old Name", tier=0),
        Backer(2, "other@example.com", "Other", tier=1),
        Backer(3, "backer9@example.com", "New Name", tier=2),
    ]
    headers, rows = chunk("2017", people)
    rows[0][headers.index("Shipping Phone Number")] = "555-0100"
    rows[2][headers.index("Shipping Phone Number")] = "555-0199"

    frames = run(headers, rows)

    backers_ = {b["email"]: b for b in frames.backers.to_dict("records")}
    assert sorted(backers_) == ["backer9@example.com", "other@example.com"]
    assert backers_["backer9@example.com"]["name"] == "New Name"
    assert backers_["backer9@example.com"]["phone"] == "555-0199"
    assert backers_["backer9@example.com"]["source_row"] == 3
    assert backers_["backer9@example.com"]["external_id"] == "1000000003"
    pledges = by_key(frames.pledges)
    assert pledges["1"]["email"] == pledges["3"]["email"] == "backer9@example.com"


@pytest.mark.parametrize("status", ["dropped", "errored", "refunded", "failed", "collected"])
def test_dropped_and_errored_pledges_are_imported_with_their_status(status: str) -> None:
    people = backers(3)
    people[1].status = status
    headers, rows = chunk("2014", people)

    frames = run(headers, rows)

    assert frames.rejected == []
    assert by_key(frames.pledges)["2"]["status"] == status


def test_unmapped_columns_land_in_answers_under_their_header() -> None:
    people = backers(3)
    people[0].notes = "line one\nline two, with comma"
    people[0].extra["Bonus Support"] = "$5.00"
    people[1].extra["Fulfillment Status"] = "Fulfilled"
    headers, rows = chunk("2020", people)

    frames = run(headers, rows)

    answers = {s["pledge_key"]: s["answers"] for s in frames.surveys.to_dict("records")}
    assert answers["1"] == {
        "Notes": "line one\nline two, with comma",
        "Bonus Support": "$5.00",
        "Fulfillment Status": "Unfulfilled",
    }
    assert answers["2"] == {"Bonus Support": "$0.00", "Fulfillment Status": "Fulfilled"}


def test_custom_and_2024_columns_land_in_answers() -> None:
    people = backers(2)
    people[0].extra["ambient one colour: Which colour do you want?"] = "Black"
    people[0].extra["Amount Due"] = "$10.00"
    people[0].extra["Pledge Over Time"] = "true"
    headers, rows = chunk("2024", people)

    frames = run(headers, rows)

    answers = by_key(frames.surveys)["1"]["answers"]
    assert answers["ambient one colour: Which colour do you want?"] == "Black"
    assert answers["Amount Due"] == "$10.00"
    assert answers["Pledge Over Time"] == "true"
    assert answers["Late Pledge"] == "false"


def test_creator_added_column_lands_in_answers() -> None:
    headers, rows = chunk("2014", backers(2))
    headers = [*headers, "Twitter", "Notes"]
    rows = [[*rows[0], "@first", "again"], [*rows[1], "", ""]]

    frames = run(headers, rows)

    answers = by_key(frames.surveys)
    assert answers["1"]["answers"] == {"Twitter": "@first", "Notes (2)": "again"}
    assert answers["2"]["answers"] == {}


def test_inventory_holds_only_quantities_above_zero() -> None:
    people = [
        Backer(1, "a@example.com", "A", addons=(2, 0), items=(0, 3)),
        Backer(2, "b@example.com", "B", addons=(0, 0), items=(0, 0)),
        Backer(3, "c@example.com", "C", addons=(0, 1), items=(0, 0)),
    ]
    headers, rows = chunk("2020", people)
    rows[2][headers.index("Wooden Insert")] = ""  # a blank quantity is none, not an error

    frames = run(headers, rows)

    assert frames.rejected == []
    columns = ["pledge_key", "product_kind", "product_key", "quantity"]
    lines = sorted(map(tuple, frames.inventory[columns].values.tolist()))
    assert lines == [
        ("1", "addon", "1001", 2),  # Dice Tower
        ("1", "item", "Wooden Insert", 3),
        ("3", "addon", "1002", 1),  # Sleeves
    ]
    assert (frames.inventory["quantity"] > 0).all()


def test_addon_and_item_of_the_same_name_share_one_product_and_line() -> None:
    people = [Backer(1, "a@example.com", "A", addons=(1, 0), items=(2, 0))]
    headers, rows = chunk("2020", people)

    frames = run(headers, rows)

    dice = frames.products[frames.products["name"] == "Dice Tower"]
    assert len(dice) == 1
    assert dice.iloc[0]["kind"] == "addon"
    assert dice.iloc[0]["external_id"] == "1001"
    assert dice.iloc[0]["product_key"] == "1001"
    lines = frames.inventory[frames.inventory["product_key"] == "1001"]
    assert lines[["product_kind", "quantity"]].values.tolist() == [["addon", 2]]


def test_products_of_the_2020_layout() -> None:
    frames = run(*chunk("2020", backers(6, seed=3)))

    products = {p["name"]: p for p in frames.products.to_dict("records")}
    assert products["Sleeves"]["kind"] == "addon"
    assert products["Sleeves"]["external_id"] == "1002"
    assert products["Wooden Insert"]["kind"] == "item"
    assert pd.isna(products["Wooden Insert"]["external_id"])
    rewards = {n: p for n, p in products.items() if p["kind"] == "reward"}
    for title, reward_id, minimum in TIERS:
        if title in rewards:
            assert rewards[title]["external_id"] == reward_id
            assert rewards[title]["price"] == Decimal(minimum)
            assert rewards[title]["currency"] == "USD"


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("2017", {str(i): t[0] for i, t in enumerate(TIERS)}),
        ("2020", {str(i): t[0] for i, t in enumerate(TIERS)}),
        ("2024", {str(i): t[0] for i, t in enumerate(TIERS)}),
        ("2014", {str(i): f"Reward {t[1]}" for i, t in enumerate(TIERS)}),
        ("2013", {str(i): f"Reward {t[2]}.00 USD" for i, t in enumerate(TIERS)}),
    ],
)
def test_reward_product_names_follow_the_layout(variant: str, expected: dict[str, str]) -> None:
    people = [Backer(n, f"b{n}@example.com", f"B{n}", tier=n) for n in range(len(TIERS))]
    headers, rows = chunk(variant, people)

    frames = run(headers, rows)

    pledges = by_key(frames.pledges)
    rewards = frames.products[frames.products["kind"] == "reward"]
    name_of = dict(zip(rewards["product_key"], rewards["name"], strict=True))
    assert {k: name_of[p["product_key"]] for k, p in pledges.items()} == expected
    assert sorted(rewards["name"]) == sorted(expected.values())
    # Keyed by the Reward ID where the layout has one, else by the name.
    with_ids = variant not in ("2013",)
    assert sorted(rewards["product_key"]) == sorted(
        t[1] if with_ids else f"Reward {t[2]}.00 USD" for t in TIERS
    )


def test_money_currency_and_dates_of_pledges() -> None:
    people = backers(4)
    people[0].pledge = "$109.00"  # bare symbol: the project's dollar
    people[1].pledge = "USD 1,234.50"
    people[2].pledge = "£253.00"
    people[3].pledge = ""  # blank: no amount, the project's currency
    people[0].pledged_at = "2017-08-15 07:15:44 -0700"
    headers, rows = chunk("2020", people)

    frames = run(headers, rows, currency="AUD")

    pledges = by_key(frames.pledges)
    assert (pledges["1"]["amount"], pledges["1"]["currency"]) == (Decimal("109.00"), "AUD")
    assert (pledges["2"]["amount"], pledges["2"]["currency"]) == (Decimal("1234.50"), "USD")
    assert (pledges["3"]["amount"], pledges["3"]["currency"]) == (Decimal("253.00"), "GBP")
    assert pd.isna(pledges["4"]["amount"])
    assert pledges["2"]["shipping_amount"] == Decimal("10.00")
    assert pledges["1"]["pledged_at"] == pd.Timestamp("2017-08-15 14:15:44", tz="UTC")
    assert pledges["2"]["pledged_at"] == pd.Timestamp("2020-04-24 05:37", tz="UTC")


def test_backer_fields_are_mapped() -> None:
    headers, rows = chunk("2017", [Backer(7, "  Mixed@Example.com", "Seven", tier=1)])

    frames = run(headers, rows)

    backer = frames.backers.to_dict("records")[0]
    assert backer["email"] == "mixed@example.com"
    assert backer["name"] == "Seven"
    assert backer["external_id"] == "1000000007"
    assert backer["country"] == "US"


def test_bom_in_first_header_is_stripped_from_the_reported_column() -> None:
    people = backers(2)
    people[0].extra["Backer Number"] = ""
    headers, rows = parse(render("2020", people, bom=True), encoding="utf-8")
    assert headers[0] == "\ufeffBacker Number"

    frames = run(headers, rows)

    assert frames.rejected[0]["column"] == "Backer Number"
    assert frames.rejected[0]["code"] == "missing_key"


def test_chunk_with_every_row_rejected_reports_them() -> None:
    people = backers(3)
    for person in people:
        person.email = ""
    headers, rows = chunk("2020", people)

    frames = run(headers, rows, first_row=7)

    assert [r["row"] for r in frames.rejected] == [7, 8, 9]
    assert (frames.imported_rows, frames.rejected_rows) == (0, 3)
    assert frames.pledges.empty


def test_chunk_with_every_row_short_reports_them() -> None:
    headers, rows = chunk("2017", backers(2))

    frames = run(headers, [row[:4] for row in rows], first_row=1)

    assert [(r["row"], r["code"]) for r in frames.rejected] == [
        (1, "short_record"),
        (2, "short_record"),
    ]
    assert (frames.imported_rows, frames.rejected_rows) == (0, 2)


def test_no_reward_file_imports() -> None:
    headers, rows = chunk("no-reward", backers(3))

    frames = run(headers, rows, currency="USD")

    assert frames.rejected == []
    assert frames.imported_rows == 3
    assert frames.products.empty
    assert frames.pledges["product_key"].isna().all()
    assert frames.pledges["shipping_amount"].isna().all()
    assert sorted(frames.pledges["pledge_key"]) == ["1", "2", "3"]


def test_chunk_without_rewards_imports() -> None:
    people = [Backer(n, f"b{n}@example.com", f"B{n}", tier=None) for n in (1, 2)]
    headers, rows = chunk("2017", people)

    frames = run(headers, rows)

    assert frames.imported_rows == 2
    assert frames.products.empty
    assert frames.pledges["product_key"].isna().all()


@pytest.mark.parametrize("shape", ["string", "object"])
def test_a_web_app_row_that_is_a_string_or_an_object_is_rejected_alone(shape: str) -> None:
    headers, rows = chunk("2020", backers(2))
    # A web app's chunk JSON may hold a row that is no list: each character, or each key of
    # an object, counts as a cell, as for any record, and only that row is rejected.
    odd: Any = "x" * len(headers) if shape == "string" else dict.fromkeys(headers, "?")
    layout = resolve_layout(tuple(headers))

    alone = build_frames(headers, [odd], 7, layout, None)
    among = build_frames(headers, [rows[0], odd, rows[1]], 1, layout, None)

    check_accounting(alone, 1)
    assert {r["row"] for r in alone.rejected} == {7}
    check_accounting(among, 3)
    assert {r["row"] for r in among.rejected} == {2}
    assert set(among.pledges["source_row"]) == {1, 3}


@pytest.mark.parametrize("digit", ["\u0662", "\uff12"])  # Arabic-Indic and fullwidth two
def test_a_quantity_in_non_ascii_digits_is_rejected(digit: str) -> None:
    headers, rows = chunk("2020", backers(2))
    column = next(i for i, h in enumerate(headers) if h.startswith("[Addon:"))
    rows[1][column] = digit

    frames = run(headers, rows)

    check_accounting(frames, 2)
    assert [(r["row"], r["code"], r["value"]) for r in frames.rejected] == [
        (2, "invalid_quantity", digit)
    ]
