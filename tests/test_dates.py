"""Date columns: the style inferred from the file's values, then every cell parsed in it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from pledgeflow.dates import (
    ACCEPTED_STYLES,
    DateColumn,
    DateStyleError,
    infer_date_column,
    order_evidence,
    parse_date_column,
)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def column(*cells: str) -> pd.Series:
    return pd.Series(list(cells), dtype=object)


# (where the style is seen, two cells of a column, the style label, the two values in UTC)
STYLES = [
    # Kickstarter 2014-2019 reports (pastebin HDa4e9WY, helmgast/lore): quoted, comma, no zone.
    ("kickstarter 2014", "2014/04/24, 05:37", "2014/05/01, 17:03", "YYYY/MM/DD, HH:MM",
     "2014-04-24 05:37", "2014-05-01 17:03"),
    # Kickstarter 2015 reports as public repositories hold them: dashes before the comma.
    ("kickstarter 2015", "2015-08-18, 07:23", "2015-08-19, 21:01", "YYYY-MM-DD, HH:MM",
     "2015-08-18 07:23", "2015-08-19 21:01"),
    ("kickstarter seconds", "2015-08-18, 07:23:09", "2015-08-19, 21:01:00",
     "YYYY-MM-DD, HH:MM:SS", "2015-08-18 07:23:09", "2015-08-19 21:01"),
    ("kickstarter offset", "2015-08-18, 07:23 -0700", "2015-08-19, 21:01 +02:00",
     "YYYY-MM-DD, HH:MM ±HHMM", "2015-08-18 14:23", "2015-08-19 19:01"),
    ("kickstarter zone name", "2015-08-18, 07:23 UTC", "2015-08-19, 21:01 PDT",
     "YYYY-MM-DD, HH:MM [zone]", "2015-08-18 07:23", "2015-08-20 04:01"),
    ("kickstarter seconds zone", "2015-08-18, 07:23:09 GMT", "2015-12-19, 21:01:00 Europe/Berlin",
     "YYYY-MM-DD, HH:MM:SS [zone]", "2015-08-18 07:23:09", "2015-12-19 20:01"),
    ("kickstarter slash seconds", "2018/03/28, 10:27:15", "2018/03/29, 10:27:16",
     "YYYY/MM/DD, HH:MM:SS", "2018-03-28 10:27:15", "2018-03-29 10:27:16"),
    # Kickstarter 2024+ (`Pledged At (UTC)`): the zone is in the header.
    ("kickstarter 2024", "2024-06-25 14:03:00", "2024-07-01 09:00:59", "YYYY-MM-DD HH:MM:SS",
     "2024-06-25 14:03", "2024-07-01 09:00:59"),
    ("kickstarter 2024 minutes", "2024-06-25 14:03", "2024-07-01 09:00", "YYYY-MM-DD HH:MM",
     "2024-06-25 14:03", "2024-07-01 09:00"),
    # BackerKit 2017 (`Pledged At`, `Survey Answered At`): an offset.
    ("backerkit", "2017-08-15 07:15:44 -0700", "2017-08-20 10:00:00 -0700",
     "YYYY-MM-DD HH:MM:SS ±HHMM", "2017-08-15 14:15:44", "2017-08-20 17:00"),
    # BackerKit `Order Placed` / `Order Charged`.
    ("backerkit order", "09/29/17", "10/02/17", "MM/DD/YY", "2017-09-29", "2017-10-02"),
    # Indiegogo `Funding Date` (inferred layouts) and Excel re-saves of any export.
    ("indiegogo", "2016-03-01 14:22:05", "2016-03-02 08:00:00", "YYYY-MM-DD HH:MM:SS",
     "2016-03-01 14:22:05", "2016-03-02 08:00"),
    ("excel us", "8/18/2015 7:23", "12/1/2015 19:05", "MM/DD/YYYY HH:MM",
     "2015-08-18 07:23", "2015-12-01 19:05"),
    ("excel us 12-hour", "8/18/2015 7:23 PM", "8/19/2015 11:05 AM", "MM/DD/YYYY hh:MM AM/PM",
     "2015-08-18 19:23", "2015-08-19 11:05"),
    ("excel uk", "18/08/2015 07:23", "01/09/2015 19:05", "DD/MM/YYYY HH:MM",
     "2015-08-18 07:23", "2015-09-01 19:05"),
    # Gamefound (a European platform; inferred): day first with dots, and ISO 8601.
    ("gamefound dots", "18.08.2023 07:23", "01.09.2023 19:05", "DD.MM.YYYY HH:MM",
     "2023-08-18 07:23", "2023-09-01 19:05"),
    ("iso 8601", "2023-08-18T07:23:00Z", "2023-09-01T19:05:00+02:00",
     "YYYY-MM-DDTHH:MM:SS±HHMM", "2023-08-18 07:23", "2023-09-01 17:05"),
    ("date only", "2024-06-25", "2024-07-01", "YYYY-MM-DD", "2024-06-25", "2024-07-01"),
    ("month name", "Aug 18, 2015", "Sep 1, 2015", "Mon DD, YYYY", "2015-08-18", "2015-09-01"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("first", "second", "label", "first_utc", "second_utc"),
    [style[1:] for style in STYLES],
    ids=[style[0] for style in STYLES],
)
def test_each_style_is_inferred_and_parsed_to_utc(
    first: str, second: str, label: str, first_utc: str, second_utc: str
) -> None:
    cells = column(first, "", second, "  ")

    style = infer_date_column(cells)

    assert style is not None
    assert style.label == label
    parsed = parse_date_column(cells, style)
    assert str(parsed.dtype) == "datetime64[us, UTC]"
    assert parsed.tolist() == [utc(first_utc), pd.NaT, utc(second_utc), pd.NaT]


def test_a_day_above_twelve_anywhere_in_the_file_decides_day_first() -> None:
    cells = column("03/02/2016 10:00", "04/05/2016 10:00", "13/05/2016 10:00")

    style = infer_date_column(cells)

    assert style is not None and style.label == "DD/MM/YYYY HH:MM" and not style.ambiguous
    assert parse_date_column(cells, style).tolist() == [
        utc("2016-02-03 10:00"),
        utc("2016-05-04 10:00"),
        utc("2016-05-13 10:00"),
    ]


def test_days_all_twelve_or_less_read_month_first_and_say_so() -> None:
    style = infer_date_column(column("03/02/2016", "04/05/2016"))

    assert style is not None and style.label == "MM/DD/YYYY" and style.ambiguous


def test_order_evidence_settles_an_ambiguous_style_from_later_values() -> None:
    style = infer_date_column(column("03/02/2016", "04/05/2016"))
    assert style is not None

    assert order_evidence(column("01/02/2016", "25/02/2016"), style) == "dm"
    assert order_evidence(column("01/02/2016", "02/25/2016"), style) == "md"
    assert order_evidence(column("01/02/2016", "02/03/2016"), style) is None
    assert style.swapped().label == "DD/MM/YYYY"


def test_the_order_is_decided_per_column_not_per_cell() -> None:
    # A cell that only reads day-first is not read so in a month-first column: it is rejected.
    style = DateColumn(("%m/%d/%Y",))

    parsed = parse_date_column(column("02/03/2016", "13/05/2016"), style)

    assert parsed.tolist() == [utc("2016-02-03"), pd.NaT]


def test_a_cell_in_another_style_than_its_column_is_not_a_date() -> None:
    cells = column(*[f"2015-08-{day:02d}, 07:23" for day in range(1, 21)], "2015/08/21 07:23")

    style = infer_date_column(cells)

    assert style is not None and style.formats == ("%Y-%m-%d, %H:%M",)
    parsed = parse_date_column(cells, style)
    assert parsed.notna().sum() == 20 and pd.isna(parsed.iloc[-1])


def test_a_column_mixing_two_styles_keeps_both() -> None:
    # Seconds on some cells only, as Kickstarter's survey timestamps sometimes are.
    cells = column("2015-08-18, 07:23", "2015-08-18, 07:23:09", "2015-08-19, 08:00")

    style = infer_date_column(cells)

    assert style is not None
    assert style.label == "YYYY-MM-DD, HH:MM or YYYY-MM-DD, HH:MM:SS"
    assert parse_date_column(cells, style).notna().all()


@pytest.mark.parametrize(
    "cells",
    [
        ["yesterday", "soon", "n/a"],
        ["today", "now"],
        ["12abc", "1-2-3-4"],
        ["2024-13-45", "2014/02/30, 05:37"],
        [],
        ["", "  "],
    ],
)
def test_a_column_with_no_date_has_no_style(cells: list[str]) -> None:
    assert infer_date_column(column(*cells)) is None


def test_garbage_and_impossible_dates_in_a_column_become_nat() -> None:
    cells = column("2014/04/24, 05:37", "yesterday", "2014/02/30, 05:37", "now", None, "")  # type: ignore[arg-type]

    parsed = parse_date_column(cells, None)

    assert parsed.tolist() == [utc("2014-04-24 05:37"), pd.NaT, pd.NaT, pd.NaT, pd.NaT, pd.NaT]


def test_parse_keeps_the_index() -> None:
    cells = pd.Series(["2015-08-18, 07:23", "2015-08-19, 07:23"], index=[101, 205])

    assert parse_date_column(cells, None).index.tolist() == [101, 205]


def test_a_column_is_parsed_with_one_vectorised_call_per_style(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []
    real = pd.to_datetime

    def spy(arg: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("format"))
        return real(arg, *args, **kwargs)

    cells = column(*[f"2015-08-{1 + n % 28:02d}, {n % 24:02d}:{n % 60:02d}" for n in range(5000)])
    style = infer_date_column(cells)
    assert style is not None
    monkeypatch.setattr(pd, "to_datetime", spy)

    parsed = parse_date_column(cells, style)

    assert parsed.notna().all()
    assert calls == ["%Y-%m-%d, %H:%M"]


def test_the_refusal_names_the_column_a_value_and_what_to_do() -> None:
    error = DateStyleError("Pledged At", "18-Aug-2015 7h23")

    described = error.as_error()

    assert described["code"] == "unreadable_dates"
    assert described["column"] == "Pledged At" and described["value"] == "18-Aug-2015 7h23"
    message = str(described["message"])
    assert "Pledged At" in message and ACCEPTED_STYLES in message and "--mapping" in message
    assert "18-Aug-2015" not in message  # values stay out of what logs and artifacts carry


def test_the_decision_round_trips_through_its_stored_form() -> None:
    style = infer_date_column(column("2015-08-18, 07:23 UTC", "2015-08-18, 07:23:09 PDT"))
    assert style is not None

    assert DateColumn.from_dict(style.as_dict()) == style
