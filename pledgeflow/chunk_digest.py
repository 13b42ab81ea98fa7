"""What a chunk's rows are made from, as digests: its stored content and every other input.

The row cache (`pledgeflow.row_cache`) and the skip of unchanged chunks (`pledgeflow.chunk_skip`)
both name a chunk by these inputs: the same content, read with the same platform, mapping,
date styles, currency and code, gives the same rows.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import email_validator
import ftfy
import numpy as np
import pandas as pd
import pandera
import phonenumbers
import psycopg
from sqlalchemy import ColumnElement, Text, cast, func

from pledgeflow.settings import get_settings
from pledgeflow.source_digest import source_digest
from schemas.tables import CsvUploadChunk

FORMAT = 1


# The modules a chunk's rows are read, mapped and validated by (`chunk_rows`), and the row
# cache, whose entries hold them as COPY data (`writers.stages`); with the product modules they
# import, they are the code that shapes rows (`code_digest`). The chunk's claim and status, the
# writers' statements (a cached chunk runs them as a mapped one does), settlement, the CLI, the
# webhook, the flows and the benchmark are not in it: editing them keeps every entry and skip.
ROW_MODULES = ("pledgeflow.chunk_rows", "pledgeflow.row_cache")
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def code_digest(root: Path = SOURCE_ROOT) -> str:
    """A digest of the code that shapes rows: the source files of `ROW_MODULES` and of the
    product modules they import, as this process loaded them, and the versions of the libraries
    that parse and format values."""
    digest = hashlib.sha256(source_digest(ROW_MODULES, root).encode())
    versions = (platform.python_version(), pd.__version__, np.__version__, pandera.__version__)
    value_rules = (
        ftfy.__version__,
        phonenumbers.__version__,
        email_validator.__version__,
        importlib.metadata.version("pycountry"),
    )
    digest.update(repr((*versions, psycopg.__version__, *value_rules)).encode())
    return digest.hexdigest()


# Read at import: code replaced on disk under a running process does not relabel its output.
CODE_DIGEST = code_digest()


def data_digest_column(dialect: str) -> ColumnElement[Any]:
    """The chunk's JSON as stored, digested by PostgreSQL (so the data stays there), or as text
    elsewhere (`as_data_digest` digests it)."""
    stored = cast(CsvUploadChunk.data, Text)
    if dialect == "postgresql":
        return func.sha256(func.convert_to(stored, "UTF8"))
    return stored


def as_data_digest(value: object) -> bytes:
    """The SHA-256 of a chunk's stored JSON from what `data_digest_column` selected."""
    if isinstance(value, bytes | memoryview):
        return bytes(value)
    return hashlib.sha256(str(value).encode()).digest()


def chunk_inputs(
    *,
    data_digest: bytes,
    first_row: int,
    shop: str,
    platform: str | None,
    mapping: dict[str, Any] | None,
    currency: str | None,
    dates: dict[str, Any] | None = None,
    value_answers: list[int] | None = None,
) -> dict[str, Any]:
    """Everything a chunk's mapped rows depend on, as one JSON-ready document."""
    return {
        "code": CODE_DIGEST,
        "data": data_digest.hex(),
        "first_row": first_row,
        "shop": shop,
        "platform": platform,
        "mapping": mapping,
        "currency": currency,
        # The upload's date styles: the same chunk may belong to a file whose other chunks
        # settle day and month the other way.
        "dates": dates or {},
        "value_answers": value_answers or [],
        "max_cell_chars": get_settings().max_cell_chars,
    }


def digest_of(inputs: dict[str, Any]) -> str:
    """The hex SHA-256 of a document of inputs (key order does not matter)."""
    # The json module: a mapping read from PostgreSQL may hold what orjson refuses.
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def inputs_digest(inputs: dict[str, Any]) -> str:
    """The digest of a chunk's rows' inputs alone, which a completed chunk keeps in its stats
    (`"inputs"`): chunks with the same one map to the same rows and reject the same ones."""
    return digest_of({"format": FORMAT, "rows": inputs})


def chunk_digest(inputs: dict[str, Any], superseded: dict[str, Any] | None) -> str:
    """The digest a completed chunk stores: its rows' inputs and which of them a later row
    supersedes (the same rows settled otherwise write otherwise)."""
    marks = {kind: sorted(rows) for kind, rows in sorted((superseded or {}).items())}
    return digest_of({"format": FORMAT, "rows": inputs, "superseded": marks})
