"""Read a column-mapping file (JSON, or YAML for any other extension) into a `ColumnMapping`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from schemas.mappings import ColumnMapping, MappingError


def read_mapping_file(path: Path) -> ColumnMapping:
    """Parse and check a mapping file; every problem is a `MappingError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise MappingError(f"{path.name} is not valid {kind}: {exc}") from exc
    try:
        return ColumnMapping.from_dict(data)
    except MappingError as exc:
        raise MappingError(f"{path.name}: {exc}") from exc
