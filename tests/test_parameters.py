"""The door's parameter types, the flows' parameter forms, import paths and report cells."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from prefect.utilities.callables import parameter_schema
from pydantic import ValidationError

from deployments.webhook import UploadStored
from flows.import_file import import_file
from flows.process_upload import process_upload
from flows.retry_upload import retry_upload
from pledgeflow.import_paths import ImportPathError, resolve_import_path
from pledgeflow.parameters import PLATFORM_NAMES, ParameterError, check_import
from pledgeflow.reports import neutralize
from pledgeflow.settings import Settings
from schemas.platforms import PLATFORMS
from tests.helpers import configure

GOOD = {"shop": "shop.example.com", "project": "Campaign", "chunk_size": 10_000}


def test_platform_names_are_the_platforms_detection_knows() -> None:
    assert PLATFORM_NAMES == PLATFORMS


@pytest.mark.parametrize(
    ("given", "stored"), [("usd", "USD"), (" eur ", "EUR"), ("SEK", "SEK"), (None, None)]
)
def test_a_currency_is_an_iso_4217_code_upper_cased(given: str | None, stored: str | None) -> None:
    assert check_import(**GOOD, currency=given).currency == stored


@pytest.mark.parametrize("given", ["DOLLARS", "zzz", "US", "$", "", "U S"])
def test_anything_else_is_refused_as_a_currency(given: str) -> None:
    with pytest.raises(ParameterError) as refused:
        check_import(**GOOD, currency=given)

    assert str(refused.value).startswith("--currency: ")
    assert "ISO 4217" in str(refused.value)


@pytest.mark.parametrize(
    "given", ["B.EXAMPLE.COM", " b.example.com ", "b.example.com", "b.example.com."]
)
def test_a_shop_is_trimmed_and_lower_cased(given: str) -> None:
    assert check_import(**{**GOOD, "shop": given}).shop == "b.example.com"


@pytest.mark.parametrize("given", ["bad shop", "", "   ", "localhost", "-a.example.com", "a..b"])
def test_a_shop_that_is_no_domain_is_refused(given: str) -> None:
    with pytest.raises(ParameterError, match=r"^--shop: "):
        check_import(**{**GOOD, "shop": given})


@pytest.mark.parametrize(
    ("size", "ok"),
    [(0, False), (1, False), (99, False), (100, True), (100_000, True), (100_001, False)],
)
def test_the_chunk_size_is_bounded(size: int, ok: bool) -> None:
    if ok:
        assert check_import(**{**GOOD, "chunk_size": size}).chunk_size == size
    else:
        with pytest.raises(ParameterError, match=r"^--chunk-size: "):
            check_import(**{**GOOD, "chunk_size": size})


def test_the_platform_is_a_known_name_or_detect() -> None:
    assert check_import(**GOOD).forced_platform is None
    assert check_import(**GOOD, platform="indiegogo").forced_platform == "indiegogo"
    with pytest.raises(ParameterError, match="'foo' is not one of detect, kickstarter"):
        check_import(**GOOD, platform="foo")


def test_settings_bound_the_chunk_size_and_refuse_a_postgres_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, chunk_size="1")
    with pytest.raises(ValidationError):
        Settings()
    configure(monkeypatch, chunk_size="500", database_url="postgres://u@h/db")
    with pytest.raises(ValidationError, match="postgresql\\+psycopg"):
        Settings()


def _properties(fn: Any) -> dict[str, dict[str, Any]]:
    schema = parameter_schema(fn).model_dump()
    return {name: prop for name, prop in schema["properties"].items()}


@pytest.mark.parametrize("flow_", [import_file, process_upload, retry_upload])
def test_every_flow_parameter_has_a_one_line_description(flow_: Any) -> None:
    for name, prop in _properties(flow_).items():
        description = prop.get("description")
        assert description, f"{flow_.name}.{name} has no description"
        assert "\n" not in description, f"{flow_.name}.{name}: {description!r}"


def test_the_import_form_offers_platforms_checks_currency_and_bounds_chunks() -> None:
    props = _properties(import_file)

    assert props["platform"]["enum"] == ["detect", *PLATFORMS]
    assert props["platform"]["default"] == "detect"
    currency = next(s for s in props["currency"]["anyOf"] if s.get("type") == "string")
    assert currency["pattern"] == "^[A-Z]{3}$"
    chunk = next(s for s in props["chunk_size"]["anyOf"] if s.get("type") == "integer")
    assert (chunk["minimum"], chunk["maximum"]) == (100, 100_000)
    assert props["chunk_size"]["default"] is None  # None: PLEDGEFLOW_CHUNK_SIZE decides
    assert props["shop"]["minLength"] == 3
    assert props["project"]["minLength"] == 1
    upload = _properties(process_upload)["upload_id"]
    assert (upload["exclusiveMinimum"], upload["maximum"]) == (0, 2**63 - 1)


def test_the_import_flow_refuses_a_bad_currency_before_it_runs() -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match="ISO 4217"):
        import_file.validate_parameters(
            {"path": "x.csv", "shop": "s.example.com", "project": "P", "currency": "DOLLARS"}
        )
    checked = import_file.validate_parameters(
        {"path": "x.csv", "shop": " S.Example.COM ", "project": " P ", "currency": "usd"}
    )
    assert (checked["shop"], checked["project"], checked["currency"]) == (
        "s.example.com",
        "P",
        "USD",
    )


def test_the_webhook_normalises_and_checks_the_shop() -> None:
    event = UploadStored.model_validate_json('{"upload_id": 1, "shop": " B.EXAMPLE.COM "}')
    assert event.shop == "b.example.com"
    with pytest.raises(ValidationError):
        UploadStored.model_validate_json('{"upload_id": 1, "shop": "not a shop"}')


@pytest.mark.parametrize(
    ("upload_id", "expected"),
    [(42, 42), ("42", 42), ("9223372036854775807", 2**63 - 1), (2**63 - 1, 2**63 - 1)],
)
def test_webhook_takes_an_upload_id_as_an_integer_or_its_decimal_string(
    upload_id: object, expected: int
) -> None:
    body = json.dumps({"upload_id": upload_id})
    assert UploadStored.model_validate_json(body).upload_id == expected


@pytest.mark.parametrize(
    "upload_id",
    ["42x", "-1", "9223372036854775808", "0", "042", " 42", "4.2e1", "", -1, 0, 2**63, 4.2, True],
)
def test_webhook_refuses_other_upload_ids(upload_id: object) -> None:
    with pytest.raises(ValidationError):
        UploadStored.model_validate_json(json.dumps({"upload_id": upload_id}))


@pytest.fixture
def import_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "imports"
    root.mkdir()
    configure(monkeypatch, import_root=str(root))
    return root


def _refused(path: str | Path, **kwargs: Any) -> ImportPathError:
    with pytest.raises(ImportPathError) as refused:
        resolve_import_path(path, **kwargs)
    return refused.value


def test_a_directory_fifo_or_device_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)

    for path, kind in ((tmp_path, "a directory"), (fifo, "a FIFO"), ("/dev/zero", "device")):
        refused = _refused(path)
        assert refused.code == "not_a_regular_file"
        assert "is not a regular file" in str(refused) and kind in str(refused)
    assert _refused(tmp_path / "missing.csv").code == "file_not_found"


def test_without_a_root_the_cli_reads_any_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("a\n")

    assert resolve_import_path(path) == path.resolve()
    assert _refused(path, root_required=True).code == "import_root_required"


def test_the_import_root_confines_paths_symlinks_and_dot_dots(
    import_root: Path, tmp_path: Path
) -> None:
    inside = import_root / "export.csv"
    inside.write_text("a\n")
    outside = tmp_path / "secret.csv"
    outside.write_text("secret\n")
    (import_root / "link.csv").symlink_to(outside)
    (import_root / "sub").mkdir()

    assert resolve_import_path("export.csv", root_required=True) == inside.resolve()
    assert resolve_import_path(inside, root_required=True) == inside.resolve()
    assert resolve_import_path("sub/../export.csv") == inside.resolve()
    for path in ("link.csv", "../secret.csv", str(outside), "/etc/passwd", "sub/../../secret.csv"):
        refused = _refused(path, root_required=True)
        assert refused.code == "outside_import_root", path
        assert "secret" not in str(refused).replace("secret.csv", "")
    # Whether a file exists outside the root is not told.
    assert _refused("/no/such/file.csv").code == "outside_import_root"


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        (" =1+1", "' =1+1"),
        ("\n=cmd|' /C calc'!A0", "'\n=cmd|' /C calc'!A0"),
        ("  +SUM(A1)", "'  +SUM(A1)"),
        ("\t@x", "'\t@x"),
        ("-5", "'-5"),
        ("plain", "plain"),
        (" plain", " plain"),
        ("a=b", "a=b"),
    ],
)
def test_report_cells_are_neutralised_after_leading_blanks_too(cell: str, shown: str) -> None:
    assert neutralize(cell) == shown
