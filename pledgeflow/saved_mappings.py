"""The mapping a project's earlier upload was imported with, for its later uploads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pledgeflow.database import first_value, get_engine
from schemas.layout import normalize_header
from schemas.mappings import ITEMS, ColumnMapping, MappingError
from schemas.tables import UPLOAD, CsvUploadChunk, UploadStatus


def upload_headers(upload_id: int) -> list[str]:
    """The header row of an upload, from its first chunk (empty if it has none)."""
    data = first_value(
        select(CsvUploadChunk.data)
        .where(CsvUploadChunk.upload_id == upload_id)
        .order_by(CsvUploadChunk.chunk_index)
    )
    headers = (data or {}).get("headers") if isinstance(data, dict) else None
    return [str(h) for h in headers] if isinstance(headers, list) else []


def _headers_named(mapping: dict[str, Any]) -> set[str]:
    named: set[str] = set()
    for key, value in mapping.items():
        values = value if key == ITEMS or isinstance(value, list) else [value]
        named |= {normalize_header(str(v)) for v in values}
    return named


def saved_project_mapping(upload_id: int) -> dict[str, Any] | None:
    """The mapping of the project's latest completed upload that had one, if this upload's
    header row has every header it names; None otherwise."""
    present = {normalize_header(h) for h in upload_headers(upload_id)}
    with get_engine().connect() as conn:
        project_id = conn.scalar(select(UPLOAD.c.project_id).where(UPLOAD.c.id == upload_id))
        earlier = conn.execute(
            select(UPLOAD.c.mapping)
            .where(
                UPLOAD.c.project_id == project_id,
                UPLOAD.c.id != upload_id,
                UPLOAD.c.mapping.is_not(None),
                UPLOAD.c.status == UploadStatus.COMPLETED,
            )
            .order_by(UPLOAD.c.id.desc())
            .limit(20)
        ).scalars()
        for mapping in earlier:
            if not isinstance(mapping, dict) or not mapping:
                continue
            try:
                ColumnMapping.from_dict(mapping)
            except MappingError:
                continue
            if _headers_named(mapping) <= present:
                return dict(mapping)
    return None
