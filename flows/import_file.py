"""The import flow: stream a CSV file into an upload, then run the upload flow on it."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from flows.process_upload import process_upload
from pledgeflow.uploads import UploadResult
from tasks.uploads import stage_file_task


@flow(
    name="import-file",
    flow_run_name="import-{shop}-{project}",
    description="Stream a CSV export into a new upload and import it.",
)
def import_file(
    path: Annotated[str, Field(description="Path of the CSV file, as the worker sees it.")],
    shop: Annotated[str, Field(min_length=1, description="The merchant's shop domain.")],
    project: Annotated[str, Field(min_length=1, description="The campaign's name.")],
    platform: Annotated[
        str | None, Field(description="Force a platform instead of detecting it.")
    ] = None,
    chunk_size: Annotated[int, Field(ge=1, le=100_000, description="Rows per chunk.")] = 10_000,
    currency: Annotated[
        str | None,
        Field(pattern="^[A-Z]{3}$", description="Project currency for bare symbols/numbers."),
    ] = None,
    mapping: Annotated[
        dict[str, str | list[str]] | None,
        Field(description="Canonical field -> source header, for a layout no platform matches."),
    ] = None,
    dry_run: Annotated[
        bool, Field(description="Predict the outcome and write nothing to the data tables.")
    ] = False,
) -> UploadResult:
    """Stage the file as an upload with chunks, then import it with the upload flow."""
    upload_id = stage_file_task(path, shop, project, platform, chunk_size, currency)
    return process_upload(upload_id, mapping=mapping, dry_run=dry_run)
