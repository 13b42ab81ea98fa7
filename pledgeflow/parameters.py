"""The validated parameter types of every door: the CLI's options, the flows' parameter forms
(the Prefect UI reads their JSON schema) and the webhook's body.

Each type normalises and checks its value the same way wherever it is accepted, so a bad value
is refused before anything is stored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

import idna
import pycountry
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from schemas.mappings import MAPPING_KEYS

# Small chunks multiply task runs (Prefect records tens per second, so 20,000 one-row chunks
# took ~40 minutes); large ones hold more rows in memory per task. README, Benchmarks.
CHUNK_SIZE_MIN = 100
CHUNK_SIZE_MAX = 100_000
DETECT: Literal["detect"] = "detect"

PlatformName = Literal["kickstarter", "indiegogo", "backerkit", "gamefound"]
# What a caller may ask for: a known platform, or detection from the header row.
PlatformChoice = Literal["detect", "kickstarter", "indiegogo", "backerkit", "gamefound"]
PLATFORM_NAMES: tuple[str, ...] = get_args(PlatformName)


class ParameterError(ValueError):
    """A parameter refused at the door; nothing was stored."""

    def __init__(self, message: str, code: str = "bad_parameter", hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


def currency_code(value: Any) -> Any:
    """An ISO 4217 code, trimmed and upper-cased; anything else is refused."""
    if not isinstance(value, str):
        return value
    code = value.strip().upper()
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError(
            f"{value!r} is not an ISO 4217 currency code (a three-letter code such as USD, "
            "EUR, GBP, SEK)"
        )
    return code


def shop_domain(value: Any) -> Any:
    """A shop's domain, trimmed and lower-cased (IDNA-checked); anything else is refused."""
    if not isinstance(value, str):
        return value
    domain = value.strip().lower().rstrip(".")
    try:
        ascii_form = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        ascii_form = ""
    if "." not in ascii_form:
        raise ValueError(
            f"{value!r} is not a domain name (a shop is named by its domain, e.g. shop.example.com)"
        )
    return idna.decode(ascii_form)


def titled(text: str) -> Any:
    """A parameter's label in the UI's form: Prefect titles each parameter with its Python
    name, and a `title` in the JSON schema's extra keys replaces it."""
    return Field(json_schema_extra={"title": text})


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# Constraints first, then the validator: pydantic then keeps them all in the JSON schema.
CurrencyCode = Annotated[
    str,
    Field(pattern="^[A-Z]{3}$", min_length=3, max_length=3),
    BeforeValidator(currency_code),
]
ShopDomain = Annotated[str, Field(min_length=3, max_length=253), BeforeValidator(shop_domain)]
ProjectName = Annotated[str, Field(min_length=1, max_length=255), BeforeValidator(_stripped)]
ChunkSize = Annotated[int, Field(ge=CHUNK_SIZE_MIN, le=CHUNK_SIZE_MAX)]
ImportPathText = Annotated[str, Field(min_length=1, max_length=4096)]
# A share of an upload's rows, e.g. the most that may be rejected before it fails.
RowFraction = Annotated[float, Field(ge=0, le=1)]
MAPPING_EXAMPLE: dict[str, str | list[str]] = {
    "email": "E-mail address",
    "pledge_key": "Order",
    "amount": "Total",
    "pledged_at": "Date",
    "items": ["Mug", "Poster"],
}
MAPPING_DESCRIPTION = (
    "For a layout no platform matches: each canonical field names the header it is read "
    "from (email required; without pledge_key, pledges are keyed by email), items lists "
    f"quantity columns. Keys: {', '.join(MAPPING_KEYS)}."
)
# An optional column mapping as a form field, its keys and an example in the schema the UI
# shows (above the docstring's line, which Prefect would use otherwise).
MappingParameter = Annotated[
    dict[str, str | list[str]] | None,
    Field(
        json_schema_extra={
            "title": "Column mapping",
            "description": MAPPING_DESCRIPTION,
            "examples": [MAPPING_EXAMPLE],
        }
    ),
]


def decimal_id(value: Any) -> Any:
    """A decimal string of digits (`"42"`, how a BigInt id serialises) as its integer; any
    other value is left for the integer check to refuse (`"42x"`, `"-1"`, `" 42"`)."""
    if isinstance(value, str) and DECIMAL_ID.fullmatch(value):
        return int(value)
    return value


# csv_upload.id is a PostgreSQL bigint, given as a JSON integer or a decimal string: the web
# app's ids are BigInts, which a JavaScript client can send exactly only as text.
MAX_BIGINT = 2**63 - 1
DECIMAL_ID = re.compile(r"[1-9][0-9]{0,19}")
UploadId = Annotated[int, Field(gt=0, le=MAX_BIGINT), BeforeValidator(decimal_id)]


class ImportRequest(BaseModel):
    """What `pledgeflow import` and the import-file flow are asked to do, checked."""

    model_config = ConfigDict(extra="forbid")

    shop: ShopDomain
    project: ProjectName
    platform: PlatformChoice = DETECT
    chunk_size: ChunkSize
    currency: CurrencyCode | None = None

    @property
    def forced_platform(self) -> str | None:
        """The platform the caller forced, None to detect it."""
        return None if self.platform == DETECT else self.platform


def _option(loc: tuple[int | str, ...]) -> str:
    return "--" + str(loc[0]).replace("_", "-") if loc else "value"


def check_import(**values: Any) -> ImportRequest:
    """Validate an import's parameters; a bad one is a ParameterError naming the option."""
    try:
        return ImportRequest.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "literal_error" and error["loc"][:1] == ("platform",):
                message = f"{error['input']!r} is not one of {', '.join(get_args(PlatformChoice))}"
            problems.append(f"{_option(error['loc'])}: {message}")
        raise ParameterError("; ".join(problems)) from None
