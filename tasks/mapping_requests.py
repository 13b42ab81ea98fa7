"""Ask a person for a column mapping instead of failing: an unknown layout suspends the run
with a form (Prefect's interactive workflows) holding a suggested mapping.

The run is suspended, not paused: its process exits and gives up its deployment concurrency
slot while nobody answers, and the resume schedules it again; it re-runs from the start (every
step is idempotent, and staging finds the upload this run staged) and this time the suspension
returns the answer. A run paused in its process would keep the worker's process for up to an
hour, and Prefect 3.9 revokes a paused run's concurrency lease while the process keeps renewing
it: about four minutes after pausing, the renewal is refused and the run is Crashed."""

from __future__ import annotations

import logging
from typing import Any

import pydantic
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import deployment

from pledgeflow.retries import retry_transient
from pledgeflow.saved_mappings import saved_project_mapping, upload_headers
from pledgeflow.settings import get_settings
from pledgeflow.uploads import UploadPlan
from schemas.layout import CANONICAL_FIELDS
from schemas.mappings import ITEMS
from schemas.suggested_mappings import suggest_mapping
from tasks.uploads import start_upload_task

logger = logging.getLogger(__name__)
# The form's name for the mapping's `items`: Prefect 3.9's default UI checks a resume form's
# values by posting them as the JSON schema too, and a key named `items` (a schema keyword
# whose value must be a schema) gets 422, so Resume did nothing.
ITEM_COLUMNS = "item_columns"


def mapping_form(headers: list[str], suggestion: dict[str, str]) -> type[RunInput]:
    """The resume form: one text field per canonical field (the suggested header filled in),
    and the item quantity columns; a field left empty is not mapped."""
    fields: dict[str, Any] = {
        name: (
            str | None,
            pydantic.Field(
                default=suggestion.get(name),
                title=name.replace("_", " ").capitalize(),
                description="The header this field is read from; empty: not mapped.",
            ),
        )
        for name in CANONICAL_FIELDS
    }
    fields[ITEM_COLUMNS] = (
        list[str] | None,  # a form whose list was cleared sends null
        pydantic.Field(
            default=[],
            title="Item quantity columns",
            description="Headers whose values are quantities of an item product.",
        ),
    )
    form: type[RunInput] = pydantic.create_model("ColumnMappingInput", __base__=RunInput, **fields)
    form._description = (
        "No platform matches this file's header row. Confirm or edit the suggested mapping "
        "(each field: the header it is read from; email is required), then resume. "
        f"The file's headers: {', '.join(headers)}"
    )
    return form


def chosen_mapping(answer: RunInput) -> dict[str, Any]:
    """The mapping a resumed run was given: the fields filled in, and items if any."""
    values = answer.model_dump()
    mapping: dict[str, Any] = {
        name: values[name].strip()
        for name in CANONICAL_FIELDS
        if isinstance(values.get(name), str) and values[name].strip()
    }
    items = [str(i).strip() for i in values.get(ITEM_COLUMNS) or [] if str(i).strip()]
    if items:
        mapping[ITEMS] = items
    return mapping


def ask_for_mapping(upload_id: int) -> dict[str, Any] | None:
    """A mapping for an upload whose layout is unknown, in a deployment run: the one the
    project's last mapped upload used if this file has its headers, else the one a person
    confirms in the UI. The first time, the run is suspended (its process exits; the upload
    stays FAILED with unknown_layout) and can be resumed for PLEDGEFLOW_MAPPING_WAIT_SECONDS;
    the resumed run gets here again and receives the answer. None outside deployment runs
    (the CLI refuses)."""
    if deployment.get_id() is None:
        return None
    saved = retry_transient(saved_project_mapping)(upload_id)
    if saved is not None:
        logger.info("upload %s: the project's saved mapping fits its headers, used", upload_id)
        return saved
    headers = retry_transient(upload_headers)(upload_id)
    suggestion = suggest_mapping(headers)
    logger.info(
        "upload %s: unknown layout, asking for a mapping (%s of %s fields suggested; "
        "a resumed run receives it)",
        upload_id,
        len(suggestion),
        len(CANONICAL_FIELDS),
    )
    answer = suspend_flow_run(
        wait_for_input=mapping_form(headers, suggestion),
        timeout=get_settings().mapping_wait_seconds,
        key=f"mapping-{upload_id}",
    )
    logger.info("upload %s: resumed with a mapping", upload_id)
    return chosen_mapping(answer)


def needs_mapping(
    error: dict[str, Any] | None, mapping: dict[str, Any] | None, dry_run: bool
) -> bool:
    """Whether to ask for a mapping: the layout is unknown and the caller gave none."""
    return bool(error and error.get("code") == "unknown_layout" and not mapping and not dry_run)


def plan_upload(
    upload_id: int,
    mapping: dict[str, Any] | None = None,
    dry_run: bool = False,
    max_rejected_fraction: float | None = None,
) -> UploadPlan:
    """Start the upload; when no platform matches its headers and no mapping was given, start
    it again with the mapping `ask_for_mapping` finds or a person gives (a deployment run)."""
    plan = start_upload_task(upload_id, mapping, dry_run, max_rejected_fraction)
    if needs_mapping(plan.error, mapping, dry_run):
        asked = ask_for_mapping(upload_id)
        if asked is not None:
            plan = start_upload_task(upload_id, asked, dry_run, max_rejected_fraction)
    return plan
