"""Header normalization, platform detection and column layout (platform-formats.md 1.2, 1.4)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from pledgeflow_bench.exports import HEADERS, VARIANT_NAMES, backers, render
from schemas.kickstarter import KICKSTARTER, REPORTS, report_headers
from schemas.layout import EMAIL, PLEDGE_KEY, normalize_header
from schemas.platforms import (
    LAYOUTS,
    PLATFORMS,
    UnknownLayoutError,
    UnsupportedPlatformError,
    detect_platform,
    resolve_layout,
)
from tests import exports_backerkit, exports_gamefound, exports_indiegogo

VARIANTS = ["2013", "2014", "2017", "2020", "2024", "no-reward"]


def header_row(variant: str, *, bom: bool = False) -> tuple[str, ...]:
    """The header row of a rendered file, read back as the importer reads it (BOM kept)."""
    data = render(variant, backers(1), bom=bom).decode("utf-8")
    return tuple(next(csv.reader(io.StringIO(data))))


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("\ufeffBacker Number", "backer number"),
        ("  Backer UID  ", "backer uid"),
        ("Pledged   Status", "pledged status"),
        ("PLEDGED\tAT (UTC)", "pledged at (utc)"),
        ("\ufeff  Email ", "email"),
        ("Rewards Sent?", "rewards sent?"),
        ("", ""),
    ],
)
def test_normalize_header(raw: str, normalized: str) -> None:
    assert normalize_header(raw) == normalized


@pytest.mark.parametrize(
    "variant",
    VARIANTS,
)
def test_each_generated_variant_is_detected(variant: str) -> None:
    layout = resolve_layout(header_row(variant, bom=True))
    assert layout.platform == "kickstarter"
    assert layout.variant == VARIANT_NAMES[variant]


@pytest.mark.parametrize("variant", VARIANTS)
def test_detection_ignores_bom_spacing_and_case(variant: str) -> None:
    messy = tuple(f"  {h.upper().replace(' ', '  ')} " for h in HEADERS[variant])
    messy = ("\ufeff" + messy[0], *messy[1:])
    clean = resolve_layout(tuple(HEADERS[variant]))
    layout = resolve_layout(messy)
    assert (layout.platform, layout.variant) == ("kickstarter", clean.variant)
    assert layout.fields == clean.fields
    assert detect_platform(messy).platform == "kickstarter"


def test_detection_signatures() -> None:
    assert detect_platform(HEADERS["2013"]).name == "backer id + pledged status + rewards sent?"
    for variant in ("2014", "2017", "2020", "2024", "no-reward"):
        assert detect_platform(HEADERS[variant]).name == "backer uid + pledged status"


@pytest.mark.parametrize("variant", VARIANTS)
def test_key_fields_map_to_their_columns(variant: str) -> None:
    headers = HEADERS[variant]
    layout = resolve_layout(tuple(headers))
    key_header = "Backer Id" if variant == "2013" else "Backer Number"
    assert layout.fields[PLEDGE_KEY] == headers.index(key_header)
    assert layout.fields[EMAIL] == headers.index("Email")
    assert layout.fields["amount"] == headers.index("Pledge Amount")
    assert layout.fields["status"] == headers.index("Pledged Status")


def test_2024_layout_maps_renamed_columns() -> None:
    headers = HEADERS["2024"]
    layout = resolve_layout(tuple(headers))
    assert layout.fields["pledged_at"] == headers.index("Pledged At (UTC)")
    assert layout.fields["reward_minimum"] == headers.index("Backing Minimum")
    assert layout.fields["backer_external_id"] == headers.index("Backer UID")
    assert layout.fields["responded_at"] == headers.index("Survey Response")


def test_2013_backer_id_is_the_pledge_key_only() -> None:
    headers = HEADERS["2013"]
    layout = resolve_layout(tuple(headers))
    index = headers.index("Backer Id")
    assert layout.fields[PLEDGE_KEY] == index
    assert "backer_external_id" not in layout.fields  # a per-project number, not a person


def test_addon_columns_are_parsed() -> None:
    headers = HEADERS["2020"]
    layout = resolve_layout(tuple(headers))
    assert layout.addon_columns == (
        (headers.index("[Addon: 1001] Dice Tower"), "1001", "Dice Tower"),
        (headers.index("[Addon: 1002] Sleeves"), "1002", "Sleeves"),
    )
    layout_2024 = resolve_layout(tuple(HEADERS["2024"]))
    assert layout_2024.addon_columns == (
        (HEADERS["2024"].index("[Addon: 1001] Dice Tower"), "1001", "Dice Tower"),
    )


def test_item_columns_in_2020_and_2024() -> None:
    h20, h24 = HEADERS["2020"], HEADERS["2024"]
    assert resolve_layout(tuple(h20)).item_columns == (
        (h20.index("Dice Tower"), "Dice Tower"),
        (h20.index("Wooden Insert"), "Wooden Insert"),
    )
    assert resolve_layout(tuple(h24)).item_columns == ((h24.index("ambient one"), "ambient one"),)


def test_any_column_in_the_items_block_is_an_item_until_its_values_say_otherwise() -> None:
    h20 = HEADERS["2020"]
    at = h20.index("Notes") + 1
    headers = (*h20[:at], "Expansion: Frost & Fire", "Mini: Hero?", "Size?", *h20[at:])
    layout = resolve_layout(headers)
    assert [name for _, name in layout.item_columns] == [
        "Expansion: Frost & Fire",
        "Mini: Hero?",
        "Size?",
        "Dice Tower",
        "Wooden Insert",
    ]

    answered = layout.with_value_answers([headers.index("Size?")])

    assert [name for _, name in answered.item_columns] == [
        "Expansion: Frost & Fire",
        "Mini: Hero?",
        "Dice Tower",
        "Wooden Insert",
    ]
    assert (headers.index("Size?"), "Size?") in answered.answer_columns
    detection: dict[str, Any] = answered.detection()
    assert detection["item_columns"][:2] == ["Expansion: Frost & Fire", "Mini: Hero?"]
    assert "Size?" in detection["unmapped_columns"]


@pytest.mark.parametrize("variant", ["2013", "2014", "2017", "no-reward"])
def test_no_item_columns_before_2020(variant: str) -> None:
    layout = resolve_layout(tuple(HEADERS[variant]))
    assert layout.item_columns == ()
    assert layout.addon_columns == ()


@pytest.mark.parametrize(
    ("variant", "answers"),
    [
        ("2013", ["Rewards Sent?", "Notes"]),
        ("2014", ["Rewards Sent?", "Notes"]),
        (
            "2017",
            [
                "Rewards Sent?",
                "Notes",
                "Billing State/Province",
                "Billing Country",
                "What Is Your Region/Continent?",
            ],
        ),
        ("2020", ["Bonus Support", "Fulfillment Status", "Notes"]),
        (
            "2024",
            [
                "Bonus Support",
                "Fulfillment Status",
                "Notes",
                "Late Pledge",
                "Pledge Over Time",
                "Amount Due",
                "Amount Paid",
                "ambient one colour: Which colour do you want?",
            ],
        ),
        ("no-reward", ["Notes", "Billing State/Province", "Billing Country"]),
    ],
)
def test_unmapped_headers_go_to_answer_columns(variant: str, answers: list[str]) -> None:
    headers = HEADERS[variant]
    layout = resolve_layout(tuple(headers))
    assert layout.unmapped_headers == answers
    assert layout.answer_columns == tuple((headers.index(a), a) for a in answers)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_column_lands_somewhere_exactly_once(variant: str) -> None:
    headers = HEADERS[variant]
    layout = resolve_layout(tuple(headers))
    used = (
        set(layout.fields.values())
        | {i for i, _, _ in layout.addon_columns}
        | {i for i, _ in layout.item_columns}
    )
    answer_indexes = [i for i, _ in layout.answer_columns]
    assert len(answer_indexes) == len(set(answer_indexes))
    assert not used & set(answer_indexes)
    assert used | set(answer_indexes) == set(range(len(headers)))


def test_custom_questions_and_repeated_headers_are_answers() -> None:
    headers = (
        *HEADERS["2017"],
        "Add On: How Many Additional Copies Did You Pledge For?",
        "Twitter",
        "Notes",
    )
    layout = resolve_layout(headers)
    keys = layout.unmapped_headers
    assert "Add On: How Many Additional Copies Did You Pledge For?" in keys
    assert "Twitter" in keys
    assert keys.count("Notes") == 1 and "Notes (2)" in keys
    assert len(set(keys)) == len(keys)


def test_2020_question_before_survey_is_an_answer_once_its_values_are_seen() -> None:
    headers = list(HEADERS["2020"])
    at = headers.index("Survey Response")
    headers.insert(at, "What Is Your Region/Continent?")
    layout = resolve_layout(tuple(headers)).with_value_answers([at])
    assert "What Is Your Region/Continent?" in layout.unmapped_headers
    assert [name for _, name in layout.item_columns] == ["Dice Tower", "Wooden Insert"]


@pytest.mark.parametrize(
    ("headers", "closest", "missing"),
    [
        ([h for h in HEADERS["2020"] if h != "Backer UID"], "kickstarter", ["Backer UID"]),
        (
            [h if h != "Pledged Status" else "Pledge Status" for h in HEADERS["2017"]],
            "kickstarter",
            ["Pledged Status"],
        ),
        (
            [h for h in HEADERS["2013"] if h != "Rewards Sent?"],
            "kickstarter",
            ["Rewards Sent?"],
        ),
        (
            # An Indiegogo contributions header without Perk ID.
            ["Order No.", "Pledge ID", "Name", "Email", "Amount", "Perk"],
            "indiegogo",
            ["Perk ID"],
        ),
        (
            # A BackerKit export without Survey Answered At (Pledge Status, not Pledged Status).
            ["Id", "Service Guid", "Name", "Email", "Pledge Amount", "Pledge Status"],
            "backerkit",
            ["Survey Answered At"],
        ),
        (
            # A Gamefound import template without the pledge amount.
            ["Backer number", "Backer name", "E-mail", "Reward title"],
            "gamefound",
            ["Pledge amount"],
        ),
        (
            ["Foo", "Bar"],
            "kickstarter",
            ["Backer Number", "Backer UID", "Email", "Pledge Amount", "Pledged Status"],
        ),
    ],
)
def test_unknown_layout_names_closest_platform_and_missing_headers(
    headers: list[str], closest: str, missing: list[str]
) -> None:
    with pytest.raises(UnknownLayoutError) as info:
        resolve_layout(tuple(headers))
    error = info.value
    assert error.closest_platform == closest
    assert error.missing_headers == missing
    assert error.as_error() == {
        "code": "unknown_layout",
        "message": str(error),
        "closest_platform": closest,
        "missing_headers": missing,
    }
    for header in missing:
        assert header in str(error)


def test_signature_without_key_columns_names_them() -> None:
    headers = [h for h in HEADERS["2020"] if h not in ("Backer Number", "Email")]
    assert detect_platform(headers).platform == "kickstarter"
    with pytest.raises(UnknownLayoutError) as info:
        resolve_layout(tuple(headers))
    assert info.value.closest_platform == "kickstarter"
    assert info.value.missing_headers == ["Backer Number", "Email"]


@pytest.mark.parametrize("platform", ["crowdox", "pledgebox", "custom", ""])
def test_forced_unknown_platform_raises(platform: str) -> None:
    with pytest.raises(UnsupportedPlatformError) as info:
        resolve_layout(tuple(HEADERS["2020"]), platform)
    assert info.value.code == "unsupported_platform"
    assert repr(platform) in str(info.value)


def test_forced_kickstarter_skips_the_signature() -> None:
    # No Pledged Status: detection fails, forcing the platform still maps the file.
    headers = tuple(h for h in HEADERS["2014"] if h != "Pledged Status")
    with pytest.raises(UnknownLayoutError):
        resolve_layout(headers)
    layout = resolve_layout(headers, "kickstarter")
    assert layout.platform == "kickstarter"
    assert layout.signature == "forced by caller"
    assert layout.fields[PLEDGE_KEY] == 0


def test_empty_trailing_header_is_not_an_item() -> None:
    headers = (*HEADERS["2020"][: HEADERS["2020"].index("Survey Response")], "")
    layout = resolve_layout(headers)
    assert [name for _, name in layout.item_columns] == ["Dice Tower", "Wooden Insert"]


BACKERKIT = tuple(exports_backerkit.HEADERS)
INDIEGOGO = tuple(exports_indiegogo.HEADERS)
GAMEFOUND = tuple(exports_gamefound.WITH_NUMBER)


@pytest.mark.parametrize(
    ("headers", "platform", "signature"),
    [
        (BACKERKIT, "backerkit", "funds added in backerkit"),
        (
            tuple(h for h in BACKERKIT if h != "Funds Added in BackerKit"),
            "backerkit",
            "service guid + pledge status + survey answered at",
        ),
        (INDIEGOGO, "indiegogo", "perk id + perk + pledge id or order no."),
        (GAMEFOUND, "gamefound", "backer name + e-mail + pledge amount"),
        # Precedence: every file below also satisfies a later platform's signature.
        ((*INDIEGOGO, "Funds Added in BackerKit"), "backerkit", "funds added in backerkit"),
        (
            (*HEADERS["2020"], "Perk ID", "Perk", "Pledge ID"),
            "indiegogo",
            "perk id + perk + pledge id or order no.",
        ),
        ((*HEADERS["2020"], *GAMEFOUND), "kickstarter", "backer uid + pledged status"),
        ((*GAMEFOUND, "Funds Added in BackerKit"), "backerkit", "funds added in backerkit"),
    ],
)
def test_detection_follows_the_precedence_table(
    headers: tuple[str, ...], platform: str, signature: str
) -> None:
    detected = detect_platform(headers)
    assert (detected.platform, detected.name) == (platform, signature)


def test_kickstarter_headers_rule_gamefound_out() -> None:
    # Kickstarter 2020 without Backer UID holds every Gamefound template column, but its
    # Pledged Status says it is a damaged Kickstarter report, not a Gamefound file.
    headers = tuple(h for h in HEADERS["2020"] if h != "Backer UID")
    with pytest.raises(UnknownLayoutError) as info:
        detect_platform(headers)
    assert info.value.closest_platform == "kickstarter"


def test_indiegogo_order_number_keys_pledges_without_pledge_id() -> None:
    headers = tuple(h for h in INDIEGOGO if h != "Pledge ID")
    layout = resolve_layout(headers)
    assert layout.fields[PLEDGE_KEY] == headers.index("Order No.")
    assert "Order No." not in layout.unmapped_headers


@pytest.mark.parametrize(
    ("headers", "detection"),
    [
        (
            tuple(HEADERS["2017"]),
            {
                "platform": "kickstarter",
                "signature": "backer uid + pledged status",
                "variant": "2017-2019",
                "pledge_key": "Backer Number",
                "item_columns": [],
                "unmapped_columns": [
                    "Rewards Sent?",
                    "Notes",
                    "Billing State/Province",
                    "Billing Country",
                    "What Is Your Region/Continent?",
                ],
            },
        ),
        (
            GAMEFOUND,
            {
                "platform": "gamefound",
                "signature": "backer name + e-mail + pledge amount",
                "variant": "pledge import template",
                "pledge_key": "Backer number",
                "item_columns": [],
                "unmapped_columns": ["Bonus support"],
            },
        ),
    ],
)
def test_detection_report(headers: tuple[str, ...], detection: dict[str, object]) -> None:
    assert resolve_layout(headers).detection() == detection


@pytest.mark.parametrize(
    ("platform", "missing"),
    [("indiegogo", ["Pledge ID"]), ("backerkit", ["Id"]), ("gamefound", [])],
)
def test_forcing_a_platform_maps_by_its_columns(platform: str, missing: list[str]) -> None:
    headers = tuple(HEADERS["2020"])
    if missing:
        with pytest.raises(UnknownLayoutError) as info:
            resolve_layout(headers, platform)
        assert (info.value.closest_platform, info.value.missing_headers) == (platform, missing)
    else:
        layout = resolve_layout(headers, platform)
        assert (layout.platform, layout.signature) == (platform, "forced by caller")
        assert layout.fields[PLEDGE_KEY] == headers.index("Backer Number")


def test_every_column_of_every_kickstarter_report_is_mapped_or_a_known_answer() -> None:
    # The one list of Kickstarter's columns (schemas.kickstarter) and its layout agree.
    known = {*KICKSTARTER.columns, *KICKSTARTER.answers_only}
    for year, (pledge, survey) in REPORTS.items():
        assert [h for h in (*pledge, *survey) if h not in known] == [], year
        layout = resolve_layout(tuple(report_headers(year)))
        assert layout.answer_columns == tuple(
            (i, h) for i, h in enumerate(report_headers(year)) if h in KICKSTARTER.answers_only
        )


def test_every_platform_layout_is_a_platform_a_caller_may_name() -> None:
    # Detection and forcing read the same layouts: an unlisted layout would be unreachable by
    # name and break the closest-platform tie order.
    assert sorted(layout.platform for layout in LAYOUTS) == sorted(PLATFORMS)
