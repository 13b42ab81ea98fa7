"""Value rules of the canonical fields, applied on columns: cells as the platform meant them.

- Excel's text-forcing (`="00971"`, also quoted once more as CSV would quote it) is unwrapped in
  every cell; a cell a spreadsheet already turned into scientific notation (`1.23457E+11`) cannot be
  recovered and is only counted, per column.
- Mojibake is repaired with ftfy's encoding fixer, which leaves any text its own detector
  (`ftfy.badness.is_bad`) does not flag exactly as it is.
- Countries become ISO 3166-1 alpha-2 codes (`pledgeflow.countries`, pycountry); phones E.164
  (phonenumbers, the row's country as region); emails are checked and normalised by
  email-validator, without DNS.

Each rule works on the distinct values of a column (or on the few rows a cheap test flags),
never cell by cell over every row, and counts what it changed in `ValueWarnings`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import email_validator
import ftfy
import numpy as np
import pandas as pd
import phonenumbers
from ftfy.badness import is_bad
from phonenumbers.phonemetadata import PhoneMetadata

from pledgeflow.countries import country_code

# Only the encoding fixer: no HTML unescaping, quote uncurling, width or Unicode normalisation,
# nothing that would touch text that is not mojibake; no U+FFFD put in for lost bytes.
FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    replace_lossy_sequences=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=False,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)
EXCEL_TEXT = re.compile(r'="(.*)"|"=""(.*)"""', re.DOTALL)
SCIENTIFIC = re.compile(r"[+-]?\d(?:[.,]\d+)?[eE]\+\d{1,3}")
# Addresses in this plain shape are ones email-validator accepts and leaves as they are (a
# property test holds it to that); every other address goes through the library. The
# characters ß-ö and ø-ÿ are in the pattern as themselves (Python decodes the escapes), so
# that Arrow's regular expressions (RE2) read it as Python's `re` does.
_ATOM = "[a-z0-9_%+\\-\u00df-\u00f6\u00f8-\u00ff]+"
_LABEL = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_SPECIAL_TLDS = "|".join(sorted(email_validator.SPECIAL_USE_DOMAIN_NAMES))
PLAIN_EMAIL = re.compile(
    rf"(?=.{{6,128}}$)(?=[^@]{{1,32}}@){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+"
    rf"(?!(?:{_SPECIAL_TLDS})$)[a-z]{{2,24}}"
)
# PLAIN_EMAIL for a whole column (`plain_emails`): its shape without the lookaheads, which RE2
# does not have; they become a length, the local part's length and the top-level domain's
# ending. A test holds the two to the same verdicts.
PLAIN_EMAIL_SHAPE = rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[a-z]{{2,24}}"
SPECIAL_ENDINGS = tuple(sorted(f".{name}" for name in email_validator.SPECIAL_USE_DOMAIN_NAMES))

WARNING_MESSAGES = {
    "excel_text_unwrapped": 'cells unwrapped from Excel\'s text-forcing (="...")',
    "scientific_notation": "cells a spreadsheet turned into scientific notation (e.g. "
    "1.23457E+11), kept as given: the digits are lost; re-export the file without opening it "
    "in a spreadsheet",
    "mojibake_repaired": "cells whose mis-decoded text (e.g. GrivegnÃ©e) was repaired",
    "country_code_from_name": "rows whose ISO country code was derived from the country name",
    "unknown_country": "rows whose country matches no ISO 3166-1 country: kept as given, "
    "without a code",
    "phone_e164": "phone numbers rewritten in E.164 form",
    "phone_not_parsed": "phone numbers that do not parse as a valid number of their country: "
    "kept as typed",
    "decoded_as": "the file is not UTF-8 or UTF-16: it was decoded with the encoding detected",
    "items_block_answers": "columns among the item quantities whose cells are not all whole "
    "numbers >= 0: kept as survey answers, not items",
}
MAX_LISTED = 20  # distinct values a warning lists
# What UTF-8 read as Windows-1252 or Latin-1 looks like: a lead byte's character (Â-ô) before a
# continuation byte's (U+0080-U+00BF, or Windows-1252's characters for 0x80-0x9F), or before a
# space that was a no-break space. Only a row holding one is shown to ftfy's detector, whose
# regular expression costs ~100 µs on a whole row: this one costs ~1 µs.
MOJIBAKE_HINT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
    "\u02c6\u02dc\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030"
    "\u2039\u203a\u20ac\u2122]|[\u00c2\u00c3] "
)

# MOJIBAKE_HINT on the UTF-8 bytes of the text: each character of it as its encoding (the first
# one C3 82-B4, the second a C2 or Windows-1252 character's sequence, or a space). UTF-8 never
# puts C3 inside a character, so a match here is a match of MOJIBAKE_HINT there and back.
MOJIBAKE_HINT_UTF8 = re.compile(
    rb"\xc3[\x82-\xb4](?:\xc2[\x80-\xbf]|\xc5[\x92\x93\xa0\xa1\xb8\xbd\xbe]|\xc6\x92"
    rb"|\xcb[\x86\x9c]|\xe2\x80[\x93\x94\x98-\x9a\x9c-\x9e\xa0-\xa2\xa6\xb0\xb9\xba]"
    rb"|\xe2\x82\xac|\xe2\x84\xa2)|\xc3[\x82\x83] "
)
# What a wrapped or scientific cell holds: `=`, or `E+` / `e+`, as byte values.
EQUALS, PLUS, EXPONENTS = ord("="), ord("+"), np.array([ord("E"), ord("e")], dtype=np.uint8)


@dataclass
class ValueWarnings:
    """Counts of what the value rules changed or could not, one kind per code."""

    counts: Counter[str] = field(default_factory=Counter)
    columns: dict[str, Counter[str]] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)

    def add(self, code: str, count: int, column: str | None = None) -> None:
        """Count `count` cells (of `column`, when the kind names columns) under `code`."""
        if count <= 0:
            return
        self.counts[code] += count
        if column is not None:
            self.columns.setdefault(code, Counter())[column] += count

    def note_values(self, code: str, values: Iterable[str]) -> None:
        """Remember distinct values of a kind (up to MAX_LISTED)."""
        listed = self.values.setdefault(code, [])
        for value in values:
            if value not in listed and len(listed) < MAX_LISTED:
                listed.append(value)

    def as_list(self) -> list[dict[str, Any]]:
        """One entry per kind: code, count, message, and the columns or values it concerns."""
        return [
            {
                "code": code,
                "count": count,
                "message": WARNING_MESSAGES[code],
                **({"columns": dict(self.columns[code])} if code in self.columns else {}),
                **({"values": list(self.values[code])} if code in self.values else {}),
            }
            for code, count in sorted(self.counts.items())
        ]


def merge_warnings(entries: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Sum the warning lists of several chunks into one entry per kind."""
    total = ValueWarnings()
    for listing in entries:
        for entry in listing or ():
            code = str(entry.get("code"))
            if code not in WARNING_MESSAGES:
                continue
            columns = entry.get("columns") or {}
            if columns:
                for column, count in columns.items():
                    total.add(code, int(count), str(column))
            else:
                total.add(code, int(entry.get("count") or 0))
            total.note_values(code, entry.get("values") or [])
    return total.as_list()


def needs_cell_rules(joined: str) -> bool:
    """Whether a row (its cells joined) may hold a wrapped, scientific or mis-decoded cell.

    Cheap enough for every row: plain ASCII rows without `=` or `E+` never do; others are
    shown to ftfy's detector when MOJIBAKE_HINT finds the shape of UTF-8 mis-decoded, and that
    detector finds no mojibake in a cell that it does not find in the whole row."""
    if "=" in joined or "E+" in joined or "e+" in joined:
        return True
    return not joined.isascii() and MOJIBAKE_HINT.search(joined) is not None and is_bad(joined)


def rows_needing_cell_rules(joined: Sequence[str]) -> list[int]:
    """The positions of the rows (each its cells joined) that `needs_cell_rules` flags.

    Found in a few scans of the chunk's text at once, as bytes: a search for each mark and for
    the mojibake hint, which finds nothing in most chunks; only a row a hint falls in is shown
    to ftfy's detector. Rows are put together with NUL between them (a row holding NUL is
    never kept, and none of the marks holds it); should one hold NUL, each row is tested on
    its own."""
    if not joined:
        return []
    text = "\x00".join(joined)
    try:
        # Text that Latin-1 holds (most exports: ASCII and Western European letters) is one
        # byte per character, copied rather than encoded; other text is read as UTF-8.
        data = text.encode("latin-1")
        latin1 = True
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogatepass")
        latin1 = False
    codes = np.frombuffer(data, dtype=np.uint8)
    # `=`, and `E+` or `e+` found from their `+` (memchr-fast searches for a two-byte mark
    # whose first byte is a common letter are not).
    marked = np.flatnonzero(codes == EQUALS) if b"=" in data else np.empty(0, np.int64)
    if b"+" in data:
        plus = np.flatnonzero(codes[1:] == PLUS)
        marked = np.concatenate([marked, plus[np.isin(codes[plus], EXPONENTS)]])
    hinted = (
        latin1_hints(codes)
        if latin1
        else [found.start() for found in MOJIBAKE_HINT_UTF8.finditer(data)]
    )
    if not len(marked) and not len(hinted):
        return []
    ends = np.flatnonzero(codes == 0)
    if len(ends) != len(joined) - 1:
        return [row for row, text in enumerate(joined) if needs_cell_rules(text)]
    flagged = set(np.searchsorted(ends, marked).tolist())
    flagged.update(
        row for row in set(np.searchsorted(ends, hinted).tolist()) - flagged if is_bad(joined[row])
    )
    return sorted(flagged)


def latin1_hints(codes: np.ndarray) -> np.ndarray:
    """Where MOJIBAKE_HINT matches in text encoded as Latin-1 (`codes`, its bytes).

    There its second characters beyond U+00FF cannot occur, so a hint is a byte C2-F4 before
    one 80-BF, or C2 or C3 before a space; only the few bytes above 7F are looked at."""
    high = np.flatnonzero(codes[:-1] >= 0x80)
    lead = high[(codes[high] >= 0xC2) & (codes[high] <= 0xF4)]
    after = codes[lead + 1]
    hinted: np.ndarray = lead[
        ((after >= 0x80) & (after <= 0xBF)) | ((after == 0x20) & (codes[lead] <= 0xC3))
    ]
    return hinted


def clean_cells(raw: pd.DataFrame, flagged: list[Any], headers: Iterable[str]) -> ValueWarnings:
    """Unwrap Excel's text-forcing, count scientific notation and repair mojibake in place,
    in the rows `flagged` (labels of `raw`) only."""
    warnings = ValueWarnings()
    if not flagged:
        return warnings
    labels = [" ".join(h.replace("\ufeff", "").split()) for h in headers]
    part = raw.loc[flagged]
    for column in part.columns:
        cells = part[column]
        fixed: dict[str, str] = {}
        for cell, count in cells.value_counts().items():
            unwrapped = _unwrapped(str(cell))
            value = unwrapped
            if not value.isascii() and is_bad(value):
                value = ftfy.fix_encoding(value, FTFY_CONFIG)
            if unwrapped != cell:
                warnings.add("excel_text_unwrapped", int(count))
            if value != unwrapped:
                warnings.add("mojibake_repaired", int(count))
            if SCIENTIFIC.fullmatch(value.strip()):
                warnings.add("scientific_notation", int(count), labels[int(column)])
            if value != cell:
                fixed[str(cell)] = value
        if fixed:
            raw.loc[flagged, column] = cells.map(fixed).fillna(cells)
    return warnings


@lru_cache(maxsize=1024)
def _unwrapped(cell: str) -> str:
    match = EXCEL_TEXT.fullmatch(cell.strip())
    if match is None:
        return cell
    if match.group(1) is not None:
        return match.group(1).replace('""', '"')
    return match.group(2).replace('""""', '"')


def apply_countries(text: dict[str, pd.Series], warnings: ValueWarnings) -> None:
    """Alpha-2 codes in `shipping_country_code` and `country`, in place.

    The survey's code comes from its code column (a code, or a name put there), else from its
    name column; the backer's from its own column, else the survey's. A value matching no
    country keeps no code: it stays as given (an unknown code moves to the name column when
    that is blank, and an unknown backer country stays in `country`).

    Each column is factorized (Arrow's dictionary encoding for text columns) and each distinct
    value looked up once; the rest is numpy over the rows, and the new columns are taken from
    the few codes found, never rebuilt from Python strings row by row."""
    parts = (text["shipping_country_code"], text["shipping_country_name"], text["country"])
    factorized = [pd.factorize(part) for part in parts]
    if not any(len(uniques) for _, uniques in factorized):
        return
    lookups = [
        [country_code(str(value)) for value in uniques.tolist()] for _, uniques in factorized
    ]
    vocabulary = sorted({code for lookup in lookups for code in lookup if code is not None})
    position: dict[str | None, int] = {code: at for at, code in enumerate(vocabulary)}
    # Per column and row, the position of its code in `vocabulary`; -1: no code, or no cell
    # (factorize codes a missing cell -1, which takes the last entry).
    found = [
        np.array([*(position.get(code, -1) for code in lookup), -1], dtype=np.intp)[codes]
        for (codes, _), lookup in zip(factorized, lookups, strict=True)
    ]
    known = [at >= 0 for at in found]
    present = [codes >= 0 for codes, _ in factorized]
    unknown = [cell & ~code for cell, code in zip(present, known, strict=True)]
    warnings.add("country_code_from_name", int((~known[0] & known[1]).sum()))
    warnings.add("unknown_country", int((unknown[0] | unknown[1] | unknown[2]).sum()))
    warnings.note_values(
        "unknown_country",
        sorted(
            {
                str(value)
                for (codes, uniques), missing in zip(factorized, unknown, strict=True)
                for value in uniques[np.unique(codes[missing])]
            }
        ),
    )
    shipping = np.where(known[0], found[0], found[1])
    resolved = np.where(known[2], found[2], shipping)
    codes_text = pd.array(vocabulary, dtype="str")
    code, name, own = parts
    text["shipping_country_code"] = pd.Series(
        codes_text.take(shipping, allow_fill=True), index=code.index
    )
    text["shipping_country_name"] = name.where(present[1] | known[0], code)
    text["country"] = pd.Series(codes_text.take(resolved, allow_fill=True), index=own.index).where(
        resolved >= 0, own
    )


# Keep every metadata pattern phonenumbers compiles (its own switch, for programs that parse
# numbers of many regions): without it each check asks `re.compile` again, a fifth of a parse.
phonenumbers.enable_pattern_cache()


@lru_cache(maxsize=65_536)
def e164(typed: str, region: str | None) -> str | None:
    """The number in E.164, or None when it does not parse as a valid number (or has an
    extension, which E.164 cannot hold)."""
    try:
        number = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension:
        return None
    national = phonenumbers.national_significant_number(number)
    if not any(
        (not lengths or len(national) in lengths) and pattern.fullmatch(national)
        for lengths, pattern in _general_descriptions(number.country_code)
    ):
        return None  # what is_valid_number finds last, after a search over every region
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@cache
def _general_descriptions(country_code: int) -> tuple[tuple[frozenset[int], re.Pattern[str]], ...]:
    """(possible lengths, national number pattern) of each region of a calling code.

    phonenumbers' validity check holds a number to the general description of the one region
    it picks first (its length, then its pattern), so a number no region's general description
    takes is invalid in all of them; a test holds `e164` to the library's own verdict. A region
    without one is let through (a pattern that takes anything), to the library's own check."""
    descriptions: list[tuple[frozenset[int], re.Pattern[str]]] = []
    for region in phonenumbers.region_codes_for_country_code(country_code):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        general = None if metadata is None else metadata.general_desc
        if general is None or not general.national_number_pattern:
            descriptions.append((frozenset(), re.compile(".*", re.DOTALL)))
            continue
        lengths = frozenset(general.possible_length or ())
        descriptions.append((lengths, re.compile(general.national_number_pattern)))
    return tuple(descriptions)


def phones(typed: pd.Series, regions: pd.Series, warnings: ValueWarnings) -> pd.Series:
    """Phones in E.164 where they parse with the row's country as region, else as typed.

    Each distinct (number, region) pair is parsed once, and a number in international form
    once whatever the region (it parses alike in every region); factorize finds the pairs in
    C (Arrow's dictionary encoding for text columns), and one take spreads the results back
    over the rows."""
    numbers, uniques = pd.factorize(typed)
    if not len(uniques):
        return typed
    if not regions.index.equals(typed.index):
        regions = regions.reindex(typed.index)
    places, region_uniques = pd.factorize(regions)
    distinct_numbers = [str(number) for number in uniques.tolist()]
    distinct_places = [str(place) for place in region_uniques.tolist()]
    present = numbers >= 0
    international = np.array(
        [number.lstrip().startswith("+") for number in distinct_numbers], dtype=bool
    )
    # A pair as one integer: the number's code, and its region's code + 1 (0: no region).
    width = len(distinct_places) + 1
    place = np.where(international[numbers[present]], 0, places[present] + 1)
    pairs, distinct_pairs = pd.factorize(numbers[present].astype("int64") * width + place)
    formatted: list[str] = []
    failed = np.zeros(len(distinct_pairs), dtype=bool)
    rewritten = np.zeros(len(distinct_pairs), dtype=bool)
    for position, pair in enumerate(distinct_pairs.tolist()):
        number = distinct_numbers[pair // width]
        region = pair % width
        parsed = e164(number, distinct_places[region - 1] if region else None)
        formatted.append(number if parsed is None else parsed)
        failed[position] = parsed is None
        rewritten[position] = parsed is not None and parsed != number
    rows_per_pair = np.bincount(pairs, minlength=len(distinct_pairs))
    warnings.add("phone_not_parsed", int(rows_per_pair[failed].sum()))
    warnings.add("phone_e164", int(rows_per_pair[rewritten].sum()))
    # Each row's position among the pairs' results, -1 (missing) for a row without a number.
    taken = np.full(len(numbers), -1, dtype=np.intp)
    taken[present] = pairs
    return pd.Series(
        pd.array(formatted, dtype="str").take(taken, allow_fill=True), index=typed.index
    )


def plain_emails(email: pd.Series) -> np.ndarray:
    """Whether each (stripped, lower-cased) cell fullmatches PLAIN_EMAIL, for the column at
    once: a few passes of Arrow's string kernels on a text column instead of a Python regular
    expression per cell. A missing cell is not plain."""
    plain = (
        email.str.fullmatch(PLAIN_EMAIL_SHAPE)
        & email.str.len().between(6, 128)
        & email.str.match("[^@]{1,32}@")
        & ~email.str.endswith(SPECIAL_ENDINGS)
    )
    return plain.fillna(False).to_numpy(dtype=bool)


def check_emails(cells: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(normalised, lower-cased email, email-validator's reason it is refused) per cell.

    Blank cells get neither (they are `missing_email`); addresses in the plain shape of
    PLAIN_EMAIL are ones the library accepts as they are, so only the others are asked."""
    email = cells.str.strip().str.lower()
    # Blank or plain; a missing cell is neither.
    settled = (email == "").fillna(False).to_numpy(dtype=bool) | plain_emails(email)
    others = cells[~settled].str.strip()
    verdicts = {cell: _email_verdict(cell) for cell in others.unique()}
    normalised = email.copy()
    reasons = pd.Series(None, index=cells.index, dtype=object)
    if len(others):
        normalised[others.index] = others.map(lambda c: verdicts[c][0])
        reasons[others.index] = others.map(lambda c: verdicts[c][1])
    return normalised, reasons


def _email_verdict(cell: str) -> tuple[str, str | None]:
    try:
        valid = email_validator.validate_email(cell, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        return cell.lower(), str(exc)
    return valid.normalized.lower(), None
