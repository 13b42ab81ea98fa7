"""Values fit to ship to, through the upload flow into PostgreSQL: fixtures shaped like the
platforms' exports (platform-formats.md), checked field by field in the stored rows."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.reports import rejected_rows
from pledgeflow.status import UploadResult
from pledgeflow.summaries import chunk_outcomes, summary_markdown
from pledgeflow_bench.exports import HEADERS, Backer, render
from pledgeflow_bench.exports import _cell as _ks_cell
from tests import exports_backerkit as bk
from tests import exports_indiegogo as igg
from tests.helpers import checksums, import_path, run_plain, store_web_app_upload, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")


def surveys(db: Engine) -> dict[str, dict[str, Any]]:
    """The stored survey and backer of every pledge, by pledge key."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                """SELECT p.pledge_id, s.shipping_name, s.shipping_city, s.shipping_postal_code,
                          s.shipping_country_name, s.shipping_country_code, s.shipping_phone,
                          b.email, b.name, b.phone, b.country, b.external_id
                   FROM pledge p JOIN backer b ON b.id = p.backer_id
                   LEFT JOIN survey s ON s.pledge_id = p.id"""
            )
        ).mappings()
        return {row["pledge_id"]: dict(row) for row in rows}


def warnings_of(result: UploadResult) -> dict[str, dict[str, Any]]:
    """The upload's warnings by code."""
    return {w["code"]: w for w in (result.stats or {}).get("warnings", [])}


def reimport_changes_nothing(db: Engine, path: Path) -> None:
    before = checksums(db)
    again = import_path(path)
    assert checksums(db) == before
    tables = (again.stats or {})["tables"]
    assert all(c["created"] == c["updated"] == c["deleted"] == 0 for c in tables.values())


def indiegogo_file(tmp_path: Path) -> Path:
    """Contributions as Indiegogo writes them: postal codes and phones forced to text with
    `="…"` (written raw, and quoted once more as a CSV writer would), countries by name."""
    places = [
        ("United Arab Emirates", '="00971"', "+971 4 234 5678"),
        ("Belgium", '="4030"', '="+32 470 12 34 56"'),
        ("USA", '="02134"', "(617) 555-0123"),
        ("UK", "SW1A 1AA", "020 7946 0000"),
        ("Deutschland", '="01067"', "1.23457E+11"),
        ("Narnia", "12345", ""),
    ]
    rows = []
    for n, (country, postal, phone) in enumerate(places, start=1):
        row = igg.cells(igg.Contribution(2000 + n, f"p{n}@example.com", f"Person {n}"))
        row[igg.HEADERS.index("Shipping Country")] = country
        row[igg.HEADERS.index("Shipping Zip/Postal Code")] = postal
        row[igg.HEADERS.index("Shipping Phone Number")] = phone
        rows.append(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(igg.HEADERS)
    for row in rows:
        writer.writerow(row)
    # Excel writes `="00971"` unquoted; the csv module quoted it (`"=""00971"""`). Undo that
    # for the first two rows so both forms are in the file.
    data = out.getvalue()
    data = data.replace('"=""00971"""', '="00971"').replace('"=""4030"""', '="4030"')
    return write_file(tmp_path, "contributions.csv", data.encode())


def test_indiegogo_postal_codes_unwrapped_and_countries_coded(db: Engine, tmp_path: Path) -> None:
    path = indiegogo_file(tmp_path)
    assert b',="00971",' in path.read_bytes() and b'"=""02134"""' in path.read_bytes()

    result = import_path(path)

    assert (result.status, result.imported_rows) == ("COMPLETED", 6)
    stored = surveys(db)
    expected = {
        "2001": ("00971", "United Arab Emirates", "AE", "+97142345678"),
        "2002": ("4030", "Belgium", "BE", "+32470123456"),
        "2003": ("02134", "USA", "US", "+16175550123"),
        "2004": ("SW1A 1AA", "UK", "GB", "+442079460000"),
        "2005": ("01067", "Deutschland", "DE", "1.23457E+11"),
        "2006": ("12345", "Narnia", None, None),
    }
    for key, (postal, name, code, phone) in expected.items():
        row = stored[key]
        assert (
            row["shipping_postal_code"],
            row["shipping_country_name"],
            row["shipping_country_code"],
            row["shipping_phone"],
            row["phone"],
            row["country"],
        ) == (postal, name, code, phone, phone, code), key
    warnings = warnings_of(result)
    assert warnings["excel_text_unwrapped"]["count"] == 5  # four postal codes, one phone
    assert warnings["country_code_from_name"]["count"] == 5
    assert (warnings["unknown_country"]["count"], warnings["unknown_country"]["values"]) == (
        1,
        ["Narnia"],
    )
    assert warnings["scientific_notation"]["columns"] == {"Shipping Phone Number": 1}
    assert warnings["phone_not_parsed"]["count"] == 1
    assert warnings["phone_e164"]["count"] == 4
    reimport_changes_nothing(db, path)


def test_backerkit_code_column_wins_and_full_country_fills_a_blank_code(
    db: Engine, tmp_path: Path
) -> None:
    rows = [
        bk.Backer(1, "ada@example.com", "Ada", guid="101"),
        bk.Backer(
            2, "bo@example.com", "Bo", extra={"Address Country": "", "Full Country": "Belgium"}
        ),
        bk.Backer(
            3, "cy@example.com", "Cy", extra={"Address Country": "se", "Full Country": "Sweden"}
        ),
        bk.Backer(
            4,
            "di@example.com",
            "Di",
            extra={
                "Address Country": "",
                "Full Country": "United Kingdom of Great Britain and Northern Ireland",
            },
        ),
    ]
    path = write_file(tmp_path, "backerkit.csv", bk.render(rows))

    result = import_path(path)

    assert (result.status, result.imported_rows) == ("COMPLETED", 4)
    stored = surveys(db)
    assert {k: (r["shipping_country_code"], r["country"]) for k, r in stored.items()} == {
        "1": ("US", "US"),
        "2": ("BE", "BE"),
        "3": ("SE", "SE"),
        "4": ("GB", "GB"),
    }
    assert stored["1"]["shipping_country_name"] == "United States of America"
    assert stored["1"]["external_id"] is None  # Service Guid is a per-project number
    assert stored["1"]["phone"] == "555-0100"  # no valid US number: kept as typed
    assert warnings_of(result)["country_code_from_name"]["count"] == 2
    reimport_changes_nothing(db, path)


def kickstarter_rows() -> list[Backer]:
    """A 2017-2019 report: phones in US, Swedish and British national styles, a mojibake
    city and name, an address email-validator refuses."""
    people = [
        ("US", "United States", "+1 919-555-0001", "Raleigh", "Ann Lee"),
        ("SE", "Sweden", "08-123 456 78", "Stockholm", "Åsa Öberg"),
        ("GB", "United Kingdom", "020 7946 0000", "London", "Zoë Smith"),
        ("BE", "Belgium", "0470 12 34 56", "GrivegnÃ©e", "JosÃ© MÃ¼ller"),
        ("JP", "Japan", "03-1234-5678", "東京", "山田 太郎"),
    ]
    out = []
    for n, (code, name, phone, city, person) in enumerate(people, start=1):
        out.append(
            Backer(
                number=n,
                email=f"k{n}@example.com",
                name=person,
                survey_at="2019/01/02, 03:04",
                extra={
                    "Shipping Country": code,
                    "Shipping Country Code": code,
                    "Shipping Country Name": name,
                    "Shipping Phone Number": phone,
                    "Shipping City": city,
                    "Shipping Name": person,
                },
            )
        )
    out.append(Backer(number=6, email="john@@example", name="John", survey_at=""))
    out.append(Backer(number=7, email="jane@example,com", name="Jane", survey_at=""))
    return out


def test_kickstarter_phones_e164_mojibake_repaired_bad_emails_rejected(
    db: Engine, tmp_path: Path
) -> None:
    path = write_file(tmp_path, "kickstarter.csv", render("2017", kickstarter_rows()))

    result = import_path(path)

    assert (result.status, result.imported_rows, result.rejected_rows) == ("COMPLETED", 5, 2)
    stored = surveys(db)
    assert {k: (r["shipping_phone"], r["phone"]) for k, r in stored.items()} == {
        "1": ("+19195550001", "+19195550001"),
        "2": ("+46812345678", "+46812345678"),
        "3": ("+442079460000", "+442079460000"),
        "4": ("+32470123456", "+32470123456"),
        "5": ("+81312345678", "+81312345678"),
    }
    assert (stored["4"]["shipping_city"], stored["4"]["name"], stored["4"]["shipping_name"]) == (
        "Grivegnée",
        "José Müller",
        "José Müller",
    )
    assert [stored[k]["name"] for k in ("2", "3", "5")] == ["Åsa Öberg", "Zoë Smith", "山田 太郎"]
    assert stored["1"]["external_id"] == "1000000001"  # Backer UID: a person
    warnings = warnings_of(result)
    assert warnings["mojibake_repaired"]["count"] == 3
    assert warnings["phone_e164"]["count"] == 5
    assert "phone_not_parsed" not in warnings
    refused = {r["row"]: r for r in rejected_rows(result.upload_id)}
    assert {r: (e["code"], e["column"]) for r, e in refused.items()} == {
        6: ("invalid_email", "Email"),
        7: ("invalid_email", "Email"),
    }
    assert "'@'" in refused[6]["message"] and "','" in refused[7]["message"]
    reimport_changes_nothing(db, path)


def test_a_windows_1252_file_is_decoded_and_stores_what_its_utf8_twin_stores(
    db: Engine, tmp_path: Path
) -> None:
    people = [
        Backer(
            number=n,
            email=f"w{n}@example.com",
            name=name,
            survey_at="2019/01/02, 03:04",
            extra={"Shipping City": city, "Shipping Country Name": "Belgium"},
        )
        for n, (name, city) in enumerate(
            [
                ("José Müller", "Grivegnée"),
                ("François Lefèvre", "Liège"),
                ("Zoë Dubois", "Besançon"),
                ("Jürgen Groß", "Düsseldorf"),
                ("Åsa Öberg", "Malmö"),
                ("Renée Façade", "Genève"),
            ],
            start=1,
        )
    ]
    utf8 = render("2017", people)
    cp1252 = write_file(tmp_path, "excel.csv", utf8.decode().encode("cp1252"))

    result = import_path(cp1252, project="Windows")
    stored = surveys(db)

    assert (result.status, result.imported_rows) == ("COMPLETED", 6)
    assert (result.stats or {})["encoding"] == {"name": "cp1252", "detected": True}
    assert warnings_of(result)["decoded_as"]["values"] == ["cp1252"]
    assert {(r["name"], r["shipping_city"]) for r in stored.values()} == {
        (p.name, p.extra["Shipping City"]) for p in people
    }
    twin = import_path(write_file(tmp_path, "utf8.csv", utf8), project="Windows")
    assert twin.status == "COMPLETED"
    assert all(c["created"] == c["updated"] == 0 for c in (twin.stats or {})["tables"].values())


def test_warnings_reach_the_summary_artifact_with_counts(db: Engine, tmp_path: Path) -> None:
    result = import_path(indiegogo_file(tmp_path))

    markdown = summary_markdown(result, chunk_outcomes(result.upload_id))

    assert "## Warnings" in markdown
    assert "| excel_text_unwrapped | 5 |" in markdown
    assert "| unknown_country | 1 |" in markdown and "Narnia" in markdown
    assert "Shipping Phone Number: 1" in markdown


def items_file() -> tuple[list[str], list[Backer]]:
    """A 2020+ report with items named `Expansion: Frost & Fire` and `Mini: Hero?`, a yes/no
    question among them, and a custom question after `Survey Response`."""
    headers = [*HEADERS["2020"]]
    at = headers.index("Notes") + 1
    headers[at:at] = ["Expansion: Frost & Fire", "Mini: Hero?", "Gift Wrap?"]
    headers.append("What Is Your T-Shirt Size?")
    people = [
        Backer(number=n, email=f"i{n}@example.com", name=f"I {n}", survey_at="2021/01/02, 03:04")
        for n in range(1, 5)
    ]
    cells = {
        1: ("1", "2", "yes", "M"),
        2: ("0", "", "no", "L"),
        3: ("3", "1", "", ""),
        4: ("", "0", "yes", "XL"),
    }
    for person in people:
        frost, hero, wrap, size = cells[person.number]
        person.extra = {
            "Expansion: Frost & Fire": frost,
            "Mini: Hero?": hero,
            "Gift Wrap?": wrap,
            "What Is Your T-Shirt Size?": size,
        }
    return headers, people


def test_items_are_decided_by_their_values_not_their_punctuation(
    db: Engine, tmp_path: Path
) -> None:
    headers, people = items_file()
    rows = [[_ks_cell("2020", h, person) for h in headers] for person in people]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerows([headers, *rows])
    path = write_file(tmp_path, "items.csv", out.getvalue().encode())

    result = import_path(path)

    assert (result.status, result.imported_rows) == ("COMPLETED", 4)
    detection = (result.stats or {})["detection"]
    assert detection["item_columns"][:2] == ["Expansion: Frost & Fire", "Mini: Hero?"]
    assert "Gift Wrap?" not in detection["item_columns"]
    assert {"Gift Wrap?", "What Is Your T-Shirt Size?"} <= set(detection["unmapped_columns"])
    assert warnings_of(result)["items_block_answers"]["values"] == ["Gift Wrap?"]
    markdown = summary_markdown(result, chunk_outcomes(result.upload_id))
    assert "Item columns (4): Expansion: Frost & Fire, Mini: Hero?, Dice Tower," in markdown
    assert "Gift Wrap?" in markdown.split("Kept in answers", 1)[1].split("\n", 1)[0]
    with db.connect() as conn:
        kinds: dict[str, str] = dict(
            conn.execute(text("SELECT name, kind::text FROM product")).all()
        )
        lines = set(
            conn.execute(
                text(
                    """SELECT p.pledge_id, pr.name, i.quantity FROM inventory i
                       JOIN survey s ON s.id = i.survey_id JOIN pledge p ON p.id = s.pledge_id
                       JOIN product pr ON pr.id = i.product_id
                       WHERE pr.name IN ('Expansion: Frost & Fire', 'Mini: Hero?')"""
                )
            ).all()
        )
        answers: dict[str, dict[str, str]] = dict(
            conn.execute(
                text(
                    "SELECT p.pledge_id, s.answers "
                    "FROM survey s JOIN pledge p ON p.id = s.pledge_id"
                )
            ).all()
        )
    assert kinds["Expansion: Frost & Fire"] == kinds["Mini: Hero?"] == "item"
    assert "Gift Wrap?" not in kinds and "What Is Your T-Shirt Size?" not in kinds
    assert lines == {
        ("1", "Expansion: Frost & Fire", 1),
        ("1", "Mini: Hero?", 2),
        ("3", "Expansion: Frost & Fire", 3),
        ("3", "Mini: Hero?", 1),
    }
    assert answers["1"]["Gift Wrap?"] == "yes" and answers["1"]["What Is Your T-Shirt Size?"] == "M"
    assert "Expansion: Frost & Fire" not in answers["1"]
    reimport_changes_nothing(db, path)


def test_a_web_app_upload_is_decided_by_its_values_in_the_database(db: Engine) -> None:
    headers, people = items_file()
    rows = [[_ks_cell("2020", h, person) for h in headers] for person in people]
    upload_id = store_web_app_upload(db, headers, [rows[:2], rows[2:]])

    result = run_plain(upload_id)

    assert (result.status, result.imported_rows) == ("COMPLETED", 4)
    detection = (result.stats or {})["detection"]
    assert detection["answers_in_items_block"] == ["Gift Wrap?"]
    assert detection["item_columns"][:2] == ["Expansion: Frost & Fire", "Mini: Hero?"]
    with db.connect() as conn:
        units: dict[str, int] = dict(
            conn.execute(
                text(
                    """SELECT pr.name, sum(i.quantity) FROM inventory i
                       JOIN product pr ON pr.id = i.product_id GROUP BY pr.name"""
                )
            ).all()
        )
    assert (units["Expansion: Frost & Fire"], units["Mini: Hero?"]) == (4, 3)
