"""The value rules on their own: Excel's wrapper, mojibake, countries, phones, emails."""

from __future__ import annotations

import random

import email_validator
import numpy as np
import pandas as pd
import phonenumbers
import pycountry
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pledgeflow.countries import country_code
from pledgeflow.value_rules import (
    MOJIBAKE_HINT,
    MOJIBAKE_HINT_UTF8,
    PLAIN_EMAIL,
    ValueWarnings,
    apply_countries,
    check_emails,
    clean_cells,
    e164,
    latin1_hints,
    merge_warnings,
    needs_cell_rules,
    phones,
    plain_emails,
    rows_needing_cell_rules,
)

# Correct names with diacritics in Latin, Cyrillic, Greek, CJK and Arabic scripts (and more):
# no rule may change one of them.
CORRECT_NAMES = (
    "Grivegnée",
    "Zoë Saldaña-Müller",
    "Łódź, ul. Żółkiewskiego 3",
    "Åsa Bjørnstad, Ærøskøbing",
    "Straße 12, 1090 Wien",
    "São João da Madeira",
    "İstanbul, Çağlayan",
    "Nguyễn Thị Minh Khai",
    "François «Frank» L\u2019Écuyer",
    "Dvořák, Křižíkova 8, Praha",
    "Сергей Прокофьев, Санкт-Петербург",
    "Ёлкина Жанна Щукина",
    "Ελευθέριος Βενιζέλος, Αθήνα",
    "東京都千代田区丸の内1-1",
    "北京市朝阳区",
    "서울특별시 종로구",
    "محمد بن سلمان، الرياض",
    "القاهرة الجديدة",
    "תל אביב-יפו",
    "मुंबई, महाराष्ट्र",
    "กรุงเทพมหานคร",
    "Ångström — “quoted” \u2018text\u2019 …",
    "Irmãos Conceição, Ação Ãvila",
)


def values(cells: pd.Series) -> list[str | None]:
    """A column's cells, None where missing."""
    return [None if pd.isna(cell) else cell for cell in cells]


def frame(cells: list[list[str]]) -> pd.DataFrame:
    rows = range(1, len(cells) + 1)
    return pd.DataFrame(cells, index=pd.Index(rows, dtype="int64")).astype("str")


def test_correct_text_in_many_scripts_is_left_alone() -> None:
    raw = frame([[name, name] for name in CORRECT_NAMES])
    before = raw.copy()

    warnings = clean_cells(raw, list(raw.index), ["Name", "City"])

    pd.testing.assert_frame_equal(raw, before)
    assert warnings.as_list() == []


def test_every_iso_country_name_round_trips_unchanged() -> None:
    names = [c.name for c in pycountry.countries]
    assert len(names) == 249
    raw = frame([[name] for name in names])
    before = raw.copy()
    assert clean_cells(raw, list(raw.index), ["Shipping Country"]).as_list() == []
    pd.testing.assert_frame_equal(raw, before)

    text = {
        "shipping_country_code": pd.Series([None] * len(names), dtype="str"),
        "shipping_country_name": pd.Series(names, dtype="str"),
        "country": pd.Series([None] * len(names), dtype="str"),
    }
    warnings = ValueWarnings()
    apply_countries(text, warnings)

    assert values(text["shipping_country_name"]) == names
    assert values(text["shipping_country_code"]) == [c.alpha_2 for c in pycountry.countries]
    assert values(text["country"]) == [c.alpha_2 for c in pycountry.countries]
    assert warnings.counts == {"country_code_from_name": 249}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("USA", "US"),
        ("UK", "GB"),
        ("United States of America", "US"),
        ("United States", "US"),
        ("united arab emirates", "AE"),
        ("  Belgium ", "BE"),
        ("The Netherlands", "NL"),
        ("Réunion", "RE"),
        ("Reunion", "RE"),
        ("South Korea", "KR"),
        ("Deutschland", "DE"),
        ("Allemagne", "DE"),
        ("España", "ES"),
        ("Ελλάδα", "GR"),
        ("日本", "JP"),
        ("مصر", "EG"),
        ("se", "SE"),
        ("SWE", "SE"),
    ],
)
def test_country_names_codes_and_translations_become_alpha_2(name: str, code: str) -> None:
    assert country_code(name) == code


def test_a_code_column_wins_and_an_unknown_name_is_kept_with_a_warning() -> None:
    text = {
        "shipping_country_code": pd.Series(["be", None, None, "XX", None], dtype="str"),
        "shipping_country_name": pd.Series(
            ["Belgique", "Sweden", "Narnia", None, None], dtype="str"
        ),
        "country": pd.Series(["BE", None, "Narnia", None, "Atlantis"], dtype="str"),
    }
    warnings = ValueWarnings()

    apply_countries(text, warnings)

    assert values(text["shipping_country_code"]) == ["BE", "SE", None, None, None]
    assert values(text["shipping_country_name"]) == ["Belgique", "Sweden", "Narnia", "XX", None]
    assert values(text["country"]) == ["BE", "SE", "Narnia", None, "Atlantis"]
    assert warnings.counts == {"country_code_from_name": 1, "unknown_country": 3}
    assert warnings.values == {"unknown_country": ["Atlantis", "Narnia", "XX"]}


def test_excel_wrapper_is_unwrapped_scientific_notation_counted_mojibake_repaired() -> None:
    raw = frame(
        [
            ['="00971"', "GrivegnÃ©e", "1.23457E+11", "plain"],
            ['"=""4030"""', "CafÃ© MÃ¼ller", "+32 4 123 45 67", "=not a wrapper"],
            ['="He said ""hi"""', "ok", "4.5e+11", '="="'],
        ]
    )
    flagged = [r for r in raw.index if needs_cell_rules("".join(raw.loc[r]))]

    warnings = clean_cells(raw, flagged, ["Zip", "City", "Phone", "Notes"])

    assert raw.values.tolist() == [
        ["00971", "Grivegnée", "1.23457E+11", "plain"],
        ["4030", "Café Müller", "+32 4 123 45 67", "=not a wrapper"],
        ['He said "hi"', "ok", "4.5e+11", "="],
    ]
    assert warnings.counts == {
        "excel_text_unwrapped": 4,
        "mojibake_repaired": 2,
        "scientific_notation": 2,
    }
    assert warnings.columns == {"scientific_notation": {"Phone": 2}}


def test_rows_without_those_marks_are_not_flagged() -> None:
    assert not needs_cell_rules("".join(CORRECT_NAMES[:5]))
    assert not needs_cell_rules("Ada Ng,ada@example.com,US,$5.00 USD")
    assert needs_cell_rules('x,="00971"')
    assert needs_cell_rules("GrivegnÃ©e")


def test_phones_become_e164_with_the_rows_country_as_region() -> None:
    typed = pd.Series(
        [
            "+1 919-555-0001",
            "(919) 555-0001",
            "0046 8 123 456 78",
            "08-123 456 78",
            "020 7946 0000",
            "12",
            None,
            "+19195550001",
        ],
        dtype="str",
    )
    regions = pd.Series(["US", "US", "SE", "SE", "GB", "GB", "GB", None], dtype="str")
    warnings = ValueWarnings()

    result = phones(typed, regions, warnings)

    assert values(result) == [
        "+19195550001",
        "+19195550001",
        "+46812345678",
        "+46812345678",
        "+442079460000",
        "12",
        None,
        "+19195550001",
    ]
    assert warnings.counts == {"phone_e164": 5, "phone_not_parsed": 1}


def test_emails_are_checked_and_normalised_by_email_validator() -> None:
    cells = pd.Series(
        [" Ada@Example.COM ", "john@@example", "jane@example,com", "", "jörg@BÜCHER.de"],
        dtype="str",
    )

    emails, reasons = check_emails(cells)

    assert values(emails)[0] == "ada@example.com"
    assert values(emails)[4] == "jörg@bücher.de"
    assert values(reasons)[0] is None and values(reasons)[3:] == [None, None]
    assert "invalid characters" in reasons[1] and "'@'" in reasons[1]
    assert "invalid characters" in reasons[2] and "','" in reasons[2]


ATOM_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_%+-ßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ"
atoms = st.text(alphabet=ATOM_CHARS, min_size=1, max_size=12)
labels = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
    min_size=1,
    max_size=3,
).map("-".join)
addresses = st.builds(
    lambda local, domain, tld: ".".join(local) + "@" + ".".join([*domain, tld]),
    st.lists(atoms, min_size=1, max_size=4),
    st.lists(labels, min_size=1, max_size=3),
    st.sampled_from(["com", "de", "co", "museum", "xn", "org", "io", "example", "localhost"])
    | st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=24),
)


@settings(max_examples=500, deadline=None)
@given(addresses)
def test_an_address_on_the_fast_path_is_one_email_validator_accepts_as_it_is(
    address: str,
) -> None:
    assume(PLAIN_EMAIL.fullmatch(address))
    valid = email_validator.validate_email(address, check_deliverability=False)
    assert valid.normalized.lower() == address


def test_the_fast_path_leaves_special_domains_and_long_addresses_to_the_library() -> None:
    assert PLAIN_EMAIL.fullmatch("ada.ng1@example.com")
    assert PLAIN_EMAIL.fullmatch("chloé.garcía12@example.com")
    assert not PLAIN_EMAIL.fullmatch("ada@foo.test")
    assert not PLAIN_EMAIL.fullmatch("ada@localhost")
    assert not PLAIN_EMAIL.fullmatch("a" * 33 + "@example.com")
    assert not PLAIN_EMAIL.fullmatch("a..b@example.com")
    assert not PLAIN_EMAIL.fullmatch("ab@exa--mple.com")


# Near misses of the plain shape: other characters, lengths at each bound, special domains.
near_misses = st.builds(
    lambda address, cut, extra: address[:cut] + extra + address[cut:],
    addresses,
    st.integers(min_value=0, max_value=40),
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "@",
            "-",
            "\n",
            " ",
            "A",
            "\u00f7",
            "\u00d7",
            "\u00de",
            "\u0100",
            "é",
            ".test",
            ".localhost",
            "a" * 20,
            "x" * 100,
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(addresses | near_misses | st.text(max_size=40), min_size=1, max_size=30))
def test_the_column_fast_path_is_plain_email_cell_by_cell(cells: list[str]) -> None:
    column = pd.Series(cells, dtype="str")
    assert plain_emails(column).tolist() == [
        PLAIN_EMAIL.fullmatch(cell) is not None for cell in cells
    ]


def test_the_column_fast_path_at_its_bounds() -> None:
    cells = [
        "ab@c.de",  # 7 characters
        "a@c.de",  # 6
        "a@b.c",  # a one-letter top-level domain
        "a" * 32 + "@example.com",
        "a" * 33 + "@example.com",
        "a" * 30 + "@" + "b" * 90 + ".com",  # 125
        "a" * 30 + "@" + "b" * 94 + ".com",  # 129
        "ada@foo.test",
        "ada@foo.contest",
        "ada@localhost",
        "chloé.garcía12@example.com",
        "ada÷@example.com",
        None,
    ]
    column = pd.Series(cells, dtype="str")
    expected = [cell is not None and PLAIN_EMAIL.fullmatch(cell) is not None for cell in cells]
    assert plain_emails(column).tolist() == expected
    assert expected == [
        True,
        True,
        False,
        True,
        False,
        True,
        False,
        False,
        True,
        False,
        True,
        False,
        False,
    ]


def test_warnings_of_chunks_merge_into_one_entry_per_kind() -> None:
    first, second = ValueWarnings(), ValueWarnings()
    first.add("scientific_notation", 2, "Phone")
    first.add("unknown_country", 1)
    first.note_values("unknown_country", ["Narnia"])
    second.add("scientific_notation", 1, "Order No.")
    second.add("unknown_country", 2)
    second.note_values("unknown_country", ["Atlantis", "Narnia"])

    merged = merge_warnings([first.as_list(), second.as_list()])

    assert [(w["code"], w["count"]) for w in merged] == [
        ("scientific_notation", 3),
        ("unknown_country", 3),
    ]
    assert merged[0]["columns"] == {"Phone": 2, "Order No.": 1}
    assert merged[1]["values"] == ["Narnia", "Atlantis"]


def test_the_utf8_hint_finds_what_the_text_hint_finds() -> None:
    # Every pair of a possible first character (and a few others) with every character up to
    # U+02FF and in U+2000-U+21FF, where all of the hint's second characters are.
    firsts = [chr(c) for c in range(0x80, 0x100)] + [" ", "a", "\u0416"]
    seconds = [chr(c) for c in [*range(0x20, 0x300), *range(0x2000, 0x2200)]]
    for first in firsts:
        for second in seconds:
            pair = first + second
            expected = MOJIBAKE_HINT.search(pair) is not None
            assert (MOJIBAKE_HINT_UTF8.search(pair.encode()) is not None) == expected, pair


def test_the_latin1_hint_finds_what_the_text_hint_finds() -> None:
    # Every pair of characters Latin-1 holds, alone and between others.
    for first in range(0x100):
        for second in range(0x100):
            pair = chr(first) + chr(second)
            expected = MOJIBAKE_HINT.search(pair) is not None
            for text in (pair, "a" + pair, pair + "\u00e9"):
                codes = np.frombuffer(text.encode("latin-1"), dtype=np.uint8)
                found = latin1_hints(codes).tolist()
                assert found == ([text.index(pair)] if expected else []), pair


def test_rows_of_a_chunk_are_flagged_as_one_by_one() -> None:
    rows = [
        "Ada Ng,ada@example.com,US,$5.00 USD",
        *CORRECT_NAMES,
        'x,="00971"',
        "1.23457E+11",
        "4.5e+11",
        "GrivegnÃ©e",
        "CafÃ",  # with the next cell's "©" (joined) a hint, alone none
        "CafÃ©",
        "Ã la carte",  # a hint ftfy's detector may or may not confirm
        "â€œquotedâ€\x9d",
        "Zoë\ud800",  # a lone surrogate (a web app's JSON may hold one)
        "😀 =",
        "",
    ]
    expected = [row for row, text in enumerate(rows) if needs_cell_rules(text)]
    assert expected  # the rows above hold each kind of mark
    assert rows_needing_cell_rules(rows) == expected
    assert rows_needing_cell_rules([]) == []
    # A row holding NUL (never kept by build_frames) is tested on its own, alike.
    assert rows_needing_cell_rules(["a\x00=", "b", "GrivegnÃ©e"]) == [0, 2]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet="aZ9 ,=E+e\u00c2\u00c3\u00a9\u00a0\u00bc\u00e9\u00fc\u0152\u2019\u20ac"
            "\u2122\u00f4\u00f5\u0416\U0001f600\x00",
            max_size=10,
        ),
        max_size=8,
    )
)
def test_rows_needing_cell_rules_flags_the_rows_needs_cell_rules_flags(rows: list[str]) -> None:
    assert rows_needing_cell_rules(rows) == [
        row for row, text in enumerate(rows) if needs_cell_rules(text)
    ]


def test_phones_spread_over_rows_as_parsed_one_by_one() -> None:
    index = pd.Index([40, 12, 7, 33, 21, 9, 18, 5], dtype="int64")
    typed = pd.Series(
        [
            "08-123 456 78",
            "08-123 456 78",
            "08-123 456 78",
            "+46 8 123 456 78",
            "+46 8 123 456 78",
            None,
            "12",
            "020 7946 0000",
        ],
        index=index,
        dtype="str",
    )
    # Regions by label, in another order than the numbers.
    regions = pd.Series(
        ["SE", "SE", "FI", "US", None, "SE", "SE", "GB"],
        index=pd.Index([40, 12, 7, 33, 21, 9, 18, 5], dtype="int64"),
        dtype="str",
    ).iloc[::-1]
    warnings = ValueWarnings()

    result = phones(typed, regions, warnings)

    expected: list[str | None] = []
    failed = rewritten = 0
    for label, number in typed.items():
        if pd.isna(number):
            expected.append(None)
            continue
        region = regions.loc[int(str(label))]
        parsed = e164(number, None if number.startswith("+") or pd.isna(region) else region)
        expected.append(number if parsed is None else parsed)
        failed += parsed is None
        rewritten += parsed is not None and parsed != number
    assert list(result.index) == list(index)
    assert values(result) == expected
    assert expected[:2] == ["+46812345678", "+46812345678"]
    assert failed and rewritten
    assert warnings.counts == {"phone_e164": rewritten, "phone_not_parsed": failed}


def test_countries_keep_their_rows_labels() -> None:
    index = pd.Index([30, 10, 20], dtype="int64")
    text = {
        "shipping_country_code": pd.Series([None, "se", "XX"], index=index, dtype="str"),
        "shipping_country_name": pd.Series(["Belgium", None, None], index=index, dtype="str"),
        "country": pd.Series([None, None, "Narnia"], index=index, dtype="str"),
    }
    warnings = ValueWarnings()

    apply_countries(text, warnings)

    for name in text:
        assert list(text[name].index) == list(index)
    assert values(text["shipping_country_code"]) == ["BE", "SE", None]
    assert values(text["shipping_country_name"]) == ["Belgium", None, "XX"]
    assert values(text["country"]) == ["BE", "SE", "Narnia"]
    assert warnings.counts == {"country_code_from_name": 1, "unknown_country": 1}
    assert warnings.values == {"unknown_country": ["Narnia", "XX"]}


def _e164_as_the_library_says(typed: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_e164_gives_the_librarys_verdict_for_numbers_of_every_length() -> None:
    rng = random.Random(19)
    cases: list[tuple[str, str | None]] = []
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for length in range(1, 18):
            digits = "".join(rng.choice("0123456789") for _ in range(length))
            cases.append((f"+{code} {digits}", None))
    for region in ("US", "CA", "GB", "SE", "FI", "DE", "IT", "FR", "AU", "JP", "BR", "RU", "IN"):
        for length in range(1, 16):
            digits = "".join(rng.choice("0123456789") for _ in range(length))
            cases += [(digits, region), ("0" + digits, region)]
    cases += [("+1 919-555-0001", None), ("+1 555 0001", None), ("(08) 123 45", "SE")]
    cases += [("+39 06 6982 0000", None), ("+800 1234 5678", None), ("+882 1234 5678", None)]
    verdicts = [
        (typed, region, _e164_as_the_library_says(typed, region)) for typed, region in cases
    ]
    assert sum(1 for *_, v in verdicts if v) > 100  # valid numbers among them
    for number, place, expected in verdicts:
        assert e164.__wrapped__(number, place) == expected, (number, place)
