"""Typed models of the JSON columns the web app writes or shows (DESIGN.md section 1).

`clients/json-schema/*.schema.json` are these models' JSON Schemas (`python -m
schemas.json_columns clients/json-schema` writes them; tests/test_json_columns.py fails when
they differ, and checks real imports' rows against them); the TypeScript client's types are
generated from those files. What pledgeflow writes to these columns is built through the models
(`pledgeflow.status`): the errors, and the stats an aggregation writes, are checked as written.

What the web app writes is closed (`ChunkData`). What pledgeflow writes for the web app to show
is closed where the web app reads it (rejections, counts, the failure's code and message) and
open elsewhere: a failure carries details per code, and `stats` holds more keys (detection,
staging, dry-run figures) than a merchant needs, which may grow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from schemas.frames import REASON_CODES


def _reason_code(code: str) -> str:
    if code not in REASON_CODES:
        raise ValueError(f"{code!r} is not a reason code ({', '.join(REASON_CODES)})")
    return code


ReasonCode = Annotated[
    str,
    AfterValidator(_reason_code),
    WithJsonSchema({"type": "string", "enum": list(REASON_CODES)}),
]
# A cell as the web app may send it: text as parsed, or a JSON number or null (kept exactly).
Cell = str | int | float | None
Count = Annotated[int, Field(ge=0)]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChunkData(Closed):
    """`csv_upload_chunk.data`: a slice of the parsed CSV, header row repeated in each chunk."""

    headers: list[str] = Field(min_length=1)
    rows: list[list[Cell]]


class Rejection(Closed):
    """One rejected cell of a data row."""

    row: int = Field(ge=1, description="the data-row number in the file (1 = first row)")
    column: str = Field(description="the header of the cell")
    value: str = Field(description="the cell as text")
    code: ReasonCode
    message: str


class Failure(Open):
    """Why a chunk or upload failed as a whole; more fields per code (e.g. `unknown_layout`:
    `closest_platform`, `missing_headers`; `chunks_failed`: `chunks`)."""

    code: str
    message: str


class ChunkErrors(Closed):
    """`csv_upload_chunk.errors`."""

    rejected: list[Rejection]
    error: Failure | None


class UploadErrors(Closed):
    """`csv_upload.errors`."""

    by_code: dict[str, Count] = Field(description="rejected rows per reason code")
    sample: list[Rejection] = Field(max_length=100)
    error: Failure | None


class TableCounts(Closed):
    """Distinct rows of one table the upload created, updated, left unchanged or deleted."""

    created: Count
    updated: Count
    unchanged: Count
    deleted: Count


class CurrencySum(Closed):
    amount: str = Field(description="the sum as a decimal string")
    pledges: Count


class Warning(Open):
    """What a value rule changed or could not (e.g. a country name matching no country)."""

    code: str
    count: Count
    message: str


class Note(Open):
    """Something a merchant should know, e.g. `mixed_currency`."""

    code: str
    message: str


class Detection(Open):
    """How the layout was recognised."""

    platform: str


class UploadStats(Open):
    """`csv_upload.stats` once the upload has been aggregated; other keys are informational."""

    tables: dict[Literal["backer", "product", "pledge", "survey", "inventory"], TableCounts]
    duration_seconds: float | None
    rows_per_second: float | None
    currencies: dict[str, CurrencySum]
    notes: list[Note]
    warnings: list[Warning]
    detection: Detection | None = None


MODELS: dict[str, type[BaseModel]] = {
    "chunk-data": ChunkData,
    "chunk-errors": ChunkErrors,
    "upload-errors": UploadErrors,
    "upload-stats": UploadStats,
}


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema (draft 2020-12), titled after the column it describes."""
    return model.model_json_schema(mode="serialization")


def write_schemas(folder: Path) -> list[Path]:
    """Write every model's schema into `folder` as NAME.schema.json."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in MODELS.items():
        path = folder / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(model), indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1])):
        print(path)
