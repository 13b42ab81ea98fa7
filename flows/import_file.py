"""The import flow: stream a CSV file into an upload, then import it in the same run."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import State
from prefect.runtime import deployment, flow_run
from prefect.states import Failed

from flows.process_upload import import_upload, upload_flow
from pledgeflow.parameters import (
    DETECT,
    ChunkSize,
    CurrencyCode,
    ImportPathText,
    MappingParameter,
    PlatformChoice,
    ProjectName,
    RowFraction,
    ShopDomain,
    titled,
)
from pledgeflow.status import UploadResult
from tasks.observability import label_flow_run, log_pledgeflow_to_run
from tasks.uploads import stage_file_task


# No flow_run_name: the run keeps the name it was created with (typed in the UI's form, or
# Prefect's generated one); its upload is in its `upload:<id>` tag and artifacts.
@upload_flow("import-file")
def import_file(
    path: Annotated[ImportPathText, titled("File path")],
    shop: Annotated[ShopDomain, titled("Shop domain")],
    project: Annotated[ProjectName, titled("Project")],
    platform: Annotated[PlatformChoice, titled("Platform")] = "detect",
    chunk_size: Annotated[ChunkSize | None, titled("Rows per chunk")] = None,
    currency: Annotated[CurrencyCode | None, titled("Currency")] = None,
    mapping: MappingParameter = None,
    dry_run: Annotated[bool, titled("Dry run")] = False,
    max_rejected_fraction: Annotated[RowFraction | None, titled("Most rejected rows")] = None,
) -> UploadResult | State[Any]:
    """Stream a CSV export into a new upload and import it.

    The file is staged as an upload with chunks, then imported in this same run. Retrying the
    run (Retry in the UI) finds the upload it staged and resumes it: completed chunks are kept,
    failed ones run again.

    `pledgeflow import` runs this flow in its own process: its path may be anywhere its user
    can read (inside PLEDGEFLOW_IMPORT_ROOT when that is set), and it watches the staging
    through `pledgeflow.staging_watch`. A deployment's run always needs the root.

    Args:
        path: Path of the CSV export on the worker, inside PLEDGEFLOW_IMPORT_ROOT.
        shop: The merchant's shop domain, e.g. shop.example.com.
        project: The campaign's name within the shop.
        platform: The export's platform, or detect it from the header row.
        chunk_size: Rows per chunk task, 100 to 100,000; default PLEDGEFLOW_CHUNK_SIZE.
        currency: ISO 4217 code of bare symbols and plain numbers, e.g. USD.
        mapping: Canonical field to source header(s), for a layout no platform matches.
        dry_run: Predict the outcome and write nothing to the data tables.
        max_rejected_fraction: Fail the upload when more of its rows are rejected (0 to 1).
    """
    log_pledgeflow_to_run()
    label_flow_run(shop, None if platform == DETECT else platform)
    run_id = flow_run.id
    staged = stage_file_task(
        path,
        shop,
        project,
        None if platform == DETECT else platform,
        chunk_size,
        currency,
        mapping,
        # Whoever can start a deployment run picks the path: confine it to the import root.
        root_required=deployment.get_id() is not None,
        flow_run_id=str(run_id) if run_id else None,
    )
    if isinstance(staged, State):
        # The file was refused, nothing stored: the run ends with the reason alone.
        return Failed(message=staged.message)
    return import_upload(
        staged, mapping=mapping, dry_run=dry_run, max_rejected_fraction=max_rejected_fraction
    )
