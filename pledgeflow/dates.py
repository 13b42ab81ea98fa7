"""Dates of a column: its style decided once from the file's own values, then parsed vectorised.

A column's style is inferred from its first non-blank values (pandas' format guesser, plus the
12-hour and two-digit-year forms it does not guess), never cell by cell: every cell of the
column is then parsed with that explicit format (or the two or three formats the column was seen
to mix). Day and month are ordered per file: month first unless a value shows a day above 12.
A trailing zone name (`UTC`, `PDT`, `Europe/Berlin`) or offset (`-0700`, `+02:00`, `Z`) is
converted to UTC; a date without one is taken as UTC.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

import pandas as pd
from pandas.tseries.api import guess_datetime_format

DATE_DTYPE = pd.DatetimeTZDtype(unit="us", tz="UTC")
# The accepted styles, as rejection messages and refusals name them.
ACCEPTED_STYLES = (
    "YYYY-MM-DD or YYYY/MM/DD, optionally with a time after a space, ', ' or 'T' "
    "(HH:MM, HH:MM:SS, or hh:MM AM/PM); MM/DD/YYYY, DD/MM/YYYY, DD.MM.YYYY or MM/DD/YY, "
    "with the same times; 'Aug 18, 2015'; each with an optional UTC offset (-0700, +02:00, Z) "
    "or zone name (UTC, PDT, Europe/Berlin)"
)
# The same, short enough to repeat in every rejected cell's message.
ACCEPTED_SHORT = (
    "YYYY-MM-DD or YYYY/MM/DD [, HH:MM[:SS]], MM/DD/YYYY, DD/MM/YYYY, DD.MM.YYYY, MM/DD/YY, "
    "ISO 8601; optional AM/PM, UTC offset or zone name"
)
SAMPLE_VALUES = 200  # distinct non-blank values a style is decided from
MAX_FORMATS = 3  # a column mixing more styles than this is not one column of dates
GUESSED_VALUES = 20  # sample values the format guesser runs on (each costs ~50 µs)

# Forms pandas' guesser misses (12-hour clocks, two-digit years), tried on a value it could not
# guess. Both day/month orders are listed; the file's values decide between them.
_DAYS = ("%m/%d/%Y", "%d/%m/%Y", "%m/%d/%y", "%d/%m/%y", "%d.%m.%Y", "%d.%m.%y", "%b %d, %Y")
_TIMES = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p", ", %I:%M %p", " %I:%M%p")
EXTRA_FORMATS = (
    *(day + time for day in _DAYS for time in _TIMES),
    "%B %d, %Y",
    "%B %d, %Y %I:%M %p",
    "%Y-%m-%d %I:%M %p",
    "%Y-%m-%d %I:%M:%S %p",
    "%Y/%m/%d %I:%M %p",
)

# Zone abbreviations of the platforms' home markets, as fixed offsets (DST is in the name).
_HOURS = {
    "UTC": 0, "UT": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2,
    "EET": 2, "EEST": 3, "MSK": 3, "JST": 9, "KST": 9, "HKT": 8, "SGT": 8, "AWST": 8,
    "ACST": 9.5, "ACDT": 10.5, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13, "HST": -10,
    "AKST": -9, "AKDT": -8, "PST": -8, "PDT": -7, "MST": -7, "MDT": -6, "CST": -6, "CDT": -5,
    "EST": -5, "EDT": -4, "AST": -4, "ADT": -3, "NST": -3.5, "NDT": -2.5,
}  # fmt: skip
ZONE_ABBREVIATIONS: dict[str, tzinfo] = {
    name: timezone(timedelta(hours=hours)) for name, hours in _HOURS.items()
}
# A trailing zone name, separated from the time by a space.
ZONE_SUFFIX = r"\s+(?P<zone>[A-Za-z]{1,5}|[A-Za-z]+(?:/[A-Za-z0-9_+\-]+)+)$"
_ZONE_SPLIT = re.compile(r"^(?P<body>.*?)" + ZONE_SUFFIX)
_YEAR_THEN_DAY = re.compile(r"%[Yy]\W*%d")  # the guesser's `%Y-%d-%m` is no real style


class DateStyleError(ValueError):
    """A date column whose values match no accepted style: the file's format, not its rows."""

    code = "unreadable_dates"

    def __init__(self, column: str, value: str) -> None:
        self.column = column
        self.value = value
        super().__init__(
            f"no value of column {column!r} is a date in an accepted style, so the file's date "
            f"format is not one pledgeflow reads (accepted: {ACCEPTED_STYLES}); re-save the "
            "column in one of these styles, or import with a --mapping that leaves it out "
            "(its values are then kept in survey.answers)"
        )

    def as_error(self) -> dict[str, object]:
        """The upload-level error: the column and one of its values (shown to the user only)."""
        return {"code": self.code, "message": str(self), "column": self.column, "value": self.value}


@dataclass(frozen=True)
class DateColumn:
    """How one column's dates are written: its formats, tried in order, and its zone names."""

    formats: tuple[str, ...]
    zone_names: bool = False
    # True when every day seen was 12 or less, so the month-first order is an assumption.
    ambiguous: bool = False

    @property
    def label(self) -> str:
        """The style(s) as a person reads them, e.g. `YYYY-MM-DD, HH:MM`."""
        zone = " [zone]" if self.zone_names else ""
        return " or ".join(style_label(f) + zone for f in self.formats)

    @property
    def order(self) -> str | None:
        """`md` or `dm` when the formats put day and month in an order the values decided."""
        return next((o for o in map(day_order, self.formats) if o), None)

    def as_dict(self) -> dict[str, object]:
        """The decision as stored on the upload (`stats.detection.dates`)."""
        return {
            "formats": list(self.formats),
            "zone_names": self.zone_names,
            "ambiguous": self.ambiguous,
            "style": self.label,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DateColumn:
        """The decision read back from `as_dict`."""
        formats = data.get("formats")
        if not isinstance(formats, list) or not formats:
            raise ValueError("a date decision without formats")
        return cls(
            tuple(str(f) for f in formats),
            bool(data.get("zone_names")),
            bool(data.get("ambiguous")),
        )

    def swapped(self) -> DateColumn:
        """The same formats with day and month the other way round."""
        return DateColumn(tuple(swap_order(f) for f in self.formats), self.zone_names)


_LABELS = {
    "%Y": "YYYY", "%y": "YY", "%m": "MM", "%d": "DD", "%H": "HH", "%I": "hh", "%M": "MM",
    "%S": "SS", "%f": "ffffff", "%p": "AM/PM", "%z": "±HHMM", "%Z": "zone", "%b": "Mon",
    "%B": "Month", "%a": "Day", "%A": "Weekday", "%%": "%",
}  # fmt: skip


def style_label(fmt: str) -> str:
    """A strptime format written as a person reads it (`%Y-%m-%d, %H:%M` → `YYYY-MM-DD, HH:MM`)."""
    return re.sub(r"%.", lambda m: _LABELS.get(m.group(), m.group()), fmt)


def day_order(fmt: str) -> str | None:
    """`md` or `dm` for a format whose day and month are both numbers not after the year."""
    if "%d" not in fmt or "%m" not in fmt or re.match(r"\W*%[Yy]", fmt):
        return None
    return "md" if fmt.index("%m") < fmt.index("%d") else "dm"


def swap_order(fmt: str) -> str:
    """The format with `%d` and `%m` exchanged (unchanged when its order is fixed)."""
    if day_order(fmt) is None:
        return fmt
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


@lru_cache(maxsize=1)
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_of(name: str) -> tzinfo | None:
    """The zone a trailing name means, or None when it names no zone."""
    if name.upper() in ZONE_ABBREVIATIONS:
        return ZONE_ABBREVIATIONS[name.upper()]
    return ZoneInfo(name) if name in _iana_zones() else None


def _split_zones(cells: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The cells without a trailing zone name, and the zone name (NaN where none)."""
    parts = cells.str.extract(_ZONE_SPLIT)
    known = parts["zone"].map({z: z for z in parts["zone"].dropna().unique() if zone_of(z)})
    body = cells.where(known.isna(), parts["body"])
    return body, known


def _candidates(body: str) -> list[str]:
    """Formats one value could be written in: the guesser's, else the extra forms that fit."""
    found: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the guesser warns about dayfirst on year-first dates
        for dayfirst in (False, True):
            fmt = guess_datetime_format(body, dayfirst=dayfirst)
            if fmt and not _YEAR_THEN_DAY.search(fmt) and fmt not in found:
                found.append(fmt)
    if not found:
        found = [fmt for fmt in EXTRA_FORMATS if _fits(body, fmt)]
    return found + [swap_order(f) for f in found if swap_order(f) not in found]


def _fits(value: str, fmt: str) -> bool:
    try:
        datetime.strptime(value, fmt)
    except ValueError:
        return False
    return True


def _parse_format(body: pd.Series, fmt: str) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(body, format=fmt, errors="coerce", utc=True)
    return parsed.astype(DATE_DTYPE)


def _parse(body: pd.Series, formats: Iterable[str]) -> pd.Series:
    """Each cell parsed with the first of `formats` that reads it; NaT where none does."""
    result = pd.Series(pd.NaT, index=body.index, dtype=DATE_DTYPE)
    remaining = body
    for fmt in formats:
        if remaining.empty:
            break
        parsed = _parse_format(remaining, fmt)
        result = result.fillna(parsed[parsed.notna()])
        remaining = remaining[parsed.isna()]
    return result


def _localize(parsed: pd.Series, zones: pd.Series) -> pd.Series:
    """Shift the cells that named a zone from that zone's wall clock to UTC."""
    out = parsed.copy()
    for name, rows in zones.dropna().groupby(zones.dropna()).groups.items():
        wall = parsed.loc[rows].dt.tz_localize(None)
        tz = zone_of(str(name))
        local = wall.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        out.loc[rows] = local.dt.tz_convert("UTC").astype(DATE_DTYPE)
    return out


def _cells(cells: pd.Series) -> pd.Series:
    """The non-blank cells, trimmed, that hold a digit (pandas reads `now` as this moment)."""
    text = cells.dropna().astype("str").str.strip()
    return text[text.str.contains(r"\d", regex=True)]


def infer_date_column(values: pd.Series) -> DateColumn | None:
    """The style of a column from its values (the first SAMPLE_VALUES distinct non-blank ones);
    None when not one of them is a date in an accepted style."""
    text = _cells(values)
    sample = pd.Series(text.drop_duplicates().iloc[:SAMPLE_VALUES].to_numpy(), dtype="str")
    if sample.empty:
        return None
    body, zones = _split_zones(sample)
    candidates: list[str] = []
    for value in body.iloc[:GUESSED_VALUES]:
        candidates += [c for c in _candidates(value) if c not in candidates]
    scores = {fmt: _parse_format(body, fmt).notna() for fmt in candidates}
    formats: list[str] = []
    parsed = pd.Series(False, index=body.index)
    ambiguous = False
    while len(formats) < MAX_FORMATS:
        order = next((o for o in map(day_order, formats) if o), None)
        # Most values read first; on a tie, month before day (the platforms are American).
        usable = [
            f for f in candidates if f not in formats and order in (None, day_order(f) or order)
        ]
        best = max(
            usable,
            key=lambda f: (int((scores[f] & ~parsed).sum()), day_order(f) != "dm"),
            default=None,
        )
        if best is None or not (scores[best] & ~parsed).any():
            break
        if order is None and day_order(best) == "md":
            rival = scores.get(swap_order(best))
            ambiguous = rival is not None and bool((rival == scores[best]).all())
        formats.append(best)
        parsed |= scores[best]
    if not formats:
        return None
    return DateColumn(tuple(formats), bool(zones.notna().any()), ambiguous)


def invalid_date_message(column: DateColumn | None) -> str:
    """What a rejected date cell was expected to be: its column's style, and the accepted ones."""
    if column is None:
        return f"no accepted date style reads this column's values (accepted: {ACCEPTED_SHORT})"
    return f"expected {column.label}, the style of this column (accepted: {ACCEPTED_SHORT})"


def parse_date_column(cells: pd.Series, column: DateColumn | None) -> pd.Series:
    """The cells as UTC timestamps in the column's style; NaT where blank or not in that style.

    Without a decision, the style is inferred from these cells (a chunk read on its own).
    """
    result = pd.Series(pd.NaT, index=cells.index, dtype=DATE_DTYPE)
    text = _cells(cells)
    if column is None:
        column = infer_date_column(text)
    if column is None or text.empty:
        return result
    if column.zone_names:
        body, zones = _split_zones(text)
        parsed = _localize(_parse(body, column.formats), zones)
    else:
        parsed = _parse(text, column.formats)
    return result.fillna(parsed[parsed.notna()])


def order_evidence(cells: pd.Series, column: DateColumn) -> str | None:
    """`md` or `dm` when some cell reads only with that day/month order, else None."""
    text = _cells(cells)
    if column.order is None or text.empty:
        return None
    mine = parse_date_column(text, column).notna()
    other = parse_date_column(text, column.swapped()).notna()
    if (other & ~mine).any():
        return column.swapped().order
    if (mine & ~other).any():
        return column.order
    return None
