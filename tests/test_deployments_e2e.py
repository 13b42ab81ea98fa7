"""End to end: a real Prefect server (auth on) and worker from prefect.yaml, and the webhook."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.staging import stage_file
from pledgeflow.uploads import chunk_name
from pledgeflow_bench.exports import backers, render
from pledgeflow_bench.warm import warm_parents
from tests.helpers import count, export_without_emails, held_pledges, write_file
from tests.services import BIN, run, wait_until
from tests.stack import SECRETS, Stack

# The first test of the stack group pays for starting the whole locked stack (its fixture is
# charged to it), so each module allows what a busy two-core machine needs.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def stage(tmp_path: Path, name: str, rows: int = 30) -> int:
    path = write_file(tmp_path, name, render("2020", backers(rows)))
    return stage_file(path, shop="hook.example.com", project="Hooked", chunk_size=10)


def body(upload_id: object) -> bytes:
    return json.dumps({"upload_id": upload_id}).encode()


def test_deployments_carry_descriptions_tags_and_enforced_schemas(stack: Stack) -> None:
    response = stack.client.post("/deployments/filter", json={})
    deployments = {d["name"]: d for d in response.json()}
    assert set(deployments) == {
        "import-file",
        "process-upload",
        "retry-upload",
        "sweep-stuck-chunks",
    }
    for deployment in deployments.values():
        assert deployment["description"]
        assert "pledgeflow" in deployment["tags"]
        assert deployment["enforce_parameter_schema"] is True
        assert deployment["work_pool_name"] == "pledgeflow-process"
    schema = deployments["process-upload"]["parameter_openapi_schema"]
    assert schema["properties"]["upload_id"]["type"] == "integer"
    assert schema["required"] == ["upload_id"]
    chunk_size = deployments["import-file"]["parameter_openapi_schema"]["properties"]["chunk_size"]
    chunk = next(t for t in chunk_size["anyOf"] if t.get("type") == "integer")
    assert (chunk["minimum"], chunk["maximum"]) == (100, 100_000)
    for name in ("process-upload", "import-file"):
        fraction = deployments[name]["parameter_openapi_schema"]["properties"][
            "max_rejected_fraction"
        ]
        number = next(t for t in fraction["anyOf"] if t.get("type") == "number")
        assert (number["minimum"], number["maximum"]) == (0, 1)
    sweep = stack.client.get(
        f"/deployments/{deployments['sweep-stuck-chunks']['id']}/schedules"
    ).json()
    assert sweep[0]["schedule"]["interval"] == 600


def test_webhook_creates_exactly_one_run_that_imports_the_upload(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    upload_id = stage(tmp_path, "hook.csv")
    before = {r["id"] for r in stack.flow_runs()}  # the server is shared by the session

    first = stack.post(body(upload_id))
    # A redelivery naming the id as a decimal string (how a BigInt id serialises) is the same.
    again = stack.post(body(str(upload_id)))

    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    run_id = first.json()["flow_run_id"]
    assert again.json()["flow_run_id"] == run_id
    assert first.json()["url"].endswith(f"/runs/flow-run/{run_id}")
    assert {r["id"] for r in stack.flow_runs()} - before == {run_id}
    final = stack.wait_for_final(run_id)
    assert final["state_type"] == "COMPLETED", final["state"]
    assert final["name"] == f"upload-{upload_id}"
    assert {"webhook", "shop:hook.example.com", "platform:kickstarter"} <= set(final["tags"])
    assert count(db, "SELECT count(*) FROM pledge WHERE upload_id = :u", u=upload_id) == 30
    with db.connect() as conn:
        upload = conn.execute(
            text("SELECT status, flow_run_id, imported_rows FROM csv_upload WHERE id = :u"),
            {"u": upload_id},
        ).one()
    assert tuple(upload) == ("COMPLETED", run_id, 30)


def test_a_shops_second_upload_without_a_bulk_lane_stays_on_the_deployments_queue(
    stack: Stack, tmp_path: Path
) -> None:
    """Before `pledgeflow limits apply` creates the bulk queue, a shop past its fair share is
    not sent to a queue nobody limits; each delivery and redelivery answers with its one run."""
    shop = "second-lane.example.com"
    first_id = stage_file(
        write_file(tmp_path, "a.csv", render("2020", backers(20))), shop=shop, project="A"
    )
    second_id = stage_file(
        write_file(tmp_path, "b.csv", render("2020", backers(20))), shop=shop, project="B"
    )

    first = stack.post(body(first_id))
    second = stack.post(body(second_id))
    again = stack.post(body(second_id))

    assert [r.status_code for r in (first, second, again)] == [202, 202, 202], second.text
    assert again.json()["flow_run_id"] == second.json()["flow_run_id"]
    queues = stack.client.post("/work_pools/pledgeflow-process/queues/filter", json={}).json()
    assert "bulk" not in {q["name"] for q in queues}
    run = stack.client.get(f"/flow_runs/{second.json()['flow_run_id']}").json()
    assert run["work_queue_name"] != "bulk"
    for response in (first, second):
        final = stack.wait_for_final(response.json()["flow_run_id"])
        assert final["state_type"] == "COMPLETED", final["state"]


def test_webhook_passes_max_rejected_fraction_to_the_run(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    path = export_without_emails(tmp_path, "fraction.csv", 4, missing=[0])
    upload_id = stage_file(path, shop="hook.example.com", project="Fraction", chunk_size=10)

    response = stack.post(
        json.dumps({"upload_id": upload_id, "max_rejected_fraction": 0.2}).encode()
    )

    assert response.status_code == 202, response.text
    final = stack.wait_for_final(response.json()["flow_run_id"])
    assert final["parameters"]["max_rejected_fraction"] == 0.2
    assert final["state_type"] == "FAILED"
    with db.connect() as conn:
        upload = conn.execute(
            text("SELECT status, errors FROM csv_upload WHERE id = :u"), {"u": upload_id}
        ).one()
    assert (upload.status, upload.errors["error"]["code"]) == ("FAILED", "too_many_rejected")


def test_webhook_refuses_bad_requests_without_creating_runs(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    upload_id = stage(tmp_path, "refused.csv", rows=3)
    before = len(stack.flow_runs())
    stale = str(int(time.time()) - 301)

    answers = {
        "bad signature": stack.post(body(upload_id), secret="not-the-secret"),
        "missing signature": stack.post(body(upload_id), signature=""),
        "stale timestamp": stack.post(body(upload_id), timestamp=stale),
        "unknown upload": stack.post(body(upload_id + 10_000)),
        "unknown string id": stack.post(body(str(upload_id + 10_000))),
        "id with a suffix": stack.post(body(f"{upload_id}x")),
        "negative string id": stack.post(body("-1")),
        "string id past bigint": stack.post(body(str(2**63))),
        "not json": stack.post(b"upload_id=1"),
    }

    assert {k: r.status_code for k, r in answers.items()} == {
        "bad signature": 401,
        "missing signature": 401,
        "stale timestamp": 401,
        "unknown upload": 404,
        "unknown string id": 404,
        "id with a suffix": 422,
        "negative string id": 422,
        "string id past bigint": 422,
        "not json": 422,
    }
    answered = "".join(r.text for r in answers.values())
    assert not [name for name, secret in SECRETS.items() if secret in answered]
    assert len(stack.flow_runs()) == before
    assert httpx.get(f"{stack.webhook}/healthz", timeout=5).status_code == 200


def chunk_task_runs(stack: Stack, run_id: str, expected: int) -> list[dict[str, Any]]:
    """The chunk task runs of a flow run, once the server has recorded `expected` of them."""
    found: list[dict[str, Any]] = []

    def recorded() -> bool:
        found[:] = stack.finished_chunk_runs(run_id)
        return len(found) >= expected

    wait_until(recorded, 120, f"{expected} recorded chunk task runs", interval=1)
    return found


def test_retrying_a_failed_run_reprocesses_only_the_failed_chunk(
    stack: Stack, db: Engine, tmp_path: Path, flaky_pledge: str
) -> None:
    rows = backers(30)
    rows[14].extra["Backer Number"] = flaky_pledge  # data row 15: chunk index 1 of 0..2
    path = write_file(tmp_path, "flaky.csv", render("2020", rows))
    upload_id = stage_file(path, shop="hook.example.com", project="Flaky", chunk_size=10)

    run_id = stack.post(body(upload_id)).json()["flow_run_id"]
    failed = stack.wait_for_final(run_id)
    assert failed["state_type"] == "FAILED"
    first_attempt = chunk_task_runs(stack, run_id, 3)
    assert sorted(t["state_name"] for t in first_attempt) == ["Completed", "Completed", "Failed"]
    with db.connect() as conn:
        assert (
            conn.execute(
                text("SELECT status FROM csv_upload WHERE id = :u"), {"u": upload_id}
            ).scalar()
            == "FAILED"
        )

    retried_at = datetime.now(UTC)
    run([str(BIN / "prefect"), "flow-run", "retry", run_id], stack.env)
    wait_until(lambda: stack.flow_run(run_id)["run_count"] >= 2, 300, "the retry to start")
    final = stack.wait_for_final(run_id)

    assert final["state_type"] == "COMPLETED", final["state"]
    assert final["run_count"] == 2
    # The retried run reuses the task runs that completed (they are not run again) and
    # re-runs the failed one; on a new flow run, the chunks' results would come from Redis.
    after = chunk_task_runs(stack, run_id, 4)
    by_name: dict[str, list[tuple[str, datetime]]] = {}
    for task_run in sorted(after, key=lambda t: t["end_time"]):
        ended = datetime.fromisoformat(task_run["end_time"])
        by_name.setdefault(task_run["name"], []).append((task_run["state_name"], ended))
    with db.connect() as conn:
        chunks = {
            chunk_name(r.chunk_index, r.first_row, r.row_count): (
                r.chunk_index,
                r.attempts,
                r.status,
            )
            for r in conn.execute(
                text(
                    "SELECT chunk_index, first_row, row_count, attempts, status "
                    "FROM csv_upload_chunk WHERE upload_id = :u"
                ),
                {"u": upload_id},
            )
        }
        upload = conn.execute(
            text("SELECT status, imported_rows FROM csv_upload WHERE id = :u"), {"u": upload_id}
        ).one()
    for name, (index, attempts, status) in chunks.items():
        assert status == "COMPLETED"
        states = [state for state, _ in by_name[name]]
        if index == 1:
            assert attempts == 2
            assert states == ["Failed", "Completed"]
            assert by_name[name][1][1] > retried_at
        else:
            assert attempts == 1
            assert states == ["Completed"]
            assert by_name[name][0][1] < retried_at
    assert tuple(upload) == ("COMPLETED", 30)


def test_two_runs_of_one_upload_process_each_chunk_once(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    upload_id = stage(tmp_path, "twice.csv", rows=60)
    deployment = stack.client.get("/deployments/name/process-upload/process-upload").json()
    run_ids = [
        stack.client.post(
            f"/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"upload_id": upload_id}},
        ).json()["id"]
        for _ in range(2)
    ]
    assert run_ids[0] != run_ids[1]

    finals = [stack.wait_for_final(r) for r in run_ids]

    assert [f["state_type"] for f in finals] == ["COMPLETED", "COMPLETED"]
    with db.connect() as conn:
        attempts = [
            r.attempts
            for r in conn.execute(
                text("SELECT attempts FROM csv_upload_chunk WHERE upload_id = :u"),
                {"u": upload_id},
            )
        ]
        upload = conn.execute(
            text("SELECT status, imported_rows, completed_chunks FROM csv_upload WHERE id = :u"),
            {"u": upload_id},
        ).one()
    assert attempts == [1] * 6
    assert tuple(upload) == ("COMPLETED", 60, 6)
    assert count(db, "SELECT count(*) FROM pledge WHERE upload_id = :u", u=upload_id) == 60


def test_a_finished_run_leaves_progress_summary_and_completion_event(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    path = export_without_emails(tmp_path, "observed.csv", 12, missing=[4])
    upload_id = stage_file(path, shop="hook.example.com", project="Observed", chunk_size=5)
    run_id = stack.post(body(upload_id)).json()["flow_run_id"]
    assert stack.wait_for_final(run_id)["state_type"] == "COMPLETED"

    def artifact(key: str) -> dict[str, Any]:
        found = stack.client.post(
            "/artifacts/filter", json={"artifacts": {"key": {"any_": [key]}}}
        ).json()
        mine = [a for a in found if a["flow_run_id"] == run_id]
        assert len(mine) == 1, (key, found)
        return dict(mine[0])

    progress = artifact(f"upload-{upload_id}-progress")
    summary = artifact(f"upload-{upload_id}-summary")
    assert progress["type"] == "progress"
    assert progress["data"] == 100.0
    assert summary["type"] == "markdown"
    assert f"# Upload {upload_id}: COMPLETED" in summary["data"]
    assert "| 12 | 11 | 1 | 3 | 3 | 0 |" in summary["data"]
    assert "| 5 | Email | missing_email |" in summary["data"]
    assert "@example.com" not in summary["data"]

    events: list[dict[str, Any]] = []

    def emitted() -> bool:
        found = stack.client.post(
            "/events/filter",
            json={
                "filter": {
                    "event": {"name": ["pledgeflow.upload.completed"]},
                    "resource": {"id": [f"pledgeflow.upload.{upload_id}"]},
                },
                "limit": 50,
            },
        ).json()["events"]
        flow_run = f"prefect.flow-run.{run_id}"
        events[:] = [
            e
            for e in found
            if any(r.get("prefect.resource.id") == flow_run for r in e.get("related", []))
        ]
        return bool(events)

    wait_until(emitted, 120, "the completion event")
    payload = events[0]["payload"]
    assert (payload["imported_rows"], payload["rejected_rows"], payload["status"]) == (
        11,
        1,
        "COMPLETED",
    )
    assert events[0]["resource"]["pledgeflow.shop"] == "hook.example.com"


def test_import_file_runs_refuse_without_an_import_root_and_read_nothing(
    stack: Stack, db: Engine
) -> None:
    # The worker has no PLEDGEFLOW_IMPORT_ROOT: whoever starts a run chooses its path, so
    # every import-file run is refused before the file is opened.
    deployment = stack.client.get("/deployments/name/import-file/import-file").json()
    props = deployment["parameter_openapi_schema"]["properties"]
    assert props["platform"]["enum"] == [
        "detect",
        "kickstarter",
        "indiegogo",
        "backerkit",
        "gamefound",
    ]
    assert all(prop.get("description") for prop in props.values()), props
    secret_lines = [line for line in Path("/etc/passwd").read_text().splitlines() if line]
    created = stack.client.post(
        f"/deployments/{deployment['id']}/create_flow_run",
        json={"parameters": {"path": "/etc/passwd", "shop": "s.example.com", "project": "P"}},
    )
    created.raise_for_status()

    final = stack.wait_for_final(created.json()["id"], timeout=180)

    assert final["state_type"] == "FAILED"
    logs = stack.client.post(
        "/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [final["id"]]}}, "limit": 200},
    ).json()
    text_ = "\n".join(entry["message"] for entry in logs) + (final["state"]["message"] or "")
    assert "PLEDGEFLOW_IMPORT_ROOT" in text_
    assert not any(line in text_ for line in secret_lines)
    for table in ("project", "csv_upload", "csv_upload_chunk"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0


def test_concurrent_deliveries_through_the_csrf_protected_server_are_all_accepted(
    stack: Stack, tmp_path: Path
) -> None:
    """The webhook reuses its Prefect clients between requests; requests served at once must
    not share one, or their CSRF tokens replace each other and the server refuses them (403)."""
    uploads = [stage(tmp_path, f"at-once-{n}.csv", rows=2) for n in range(12)]

    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        answers = list(pool.map(lambda u: stack.post(body(u)), uploads))

    assert [a.status_code for a in answers] == [202] * len(uploads), [
        a.text for a in answers if a.status_code != 202
    ]
    runs = {a.json()["flow_run_id"] for a in answers}
    assert len(runs) == len(uploads)
    for run_id in runs:
        assert stack.wait_for_final(run_id, timeout=600)["state_type"] == "COMPLETED"


def test_a_run_whose_process_is_killed_is_crashed_and_its_upload_failed(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    """A run's process is forked by the worker's warm parent (pledgeflow/warm_start.py). Killed
    mid-chunk, its launcher dies of the same signal, so the worker records the run Crashed and
    runs the flow's on_crashed hook, which marks the upload FAILED."""
    upload_id = stage(tmp_path, "crashed.csv")
    forked: list[psutil.Process] = []
    with held_pledges(db, after_row=5):
        answer = stack.post(body(upload_id))
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["flow_run_id"]

        def writing() -> bool:
            forked[:] = [c for p in warm_parents(stack.worker_pid) for c in p.children()]
            return (
                len(forked) == 1
                and count(
                    db,
                    "SELECT count(*) FROM csv_upload_chunk WHERE upload_id = :u "
                    "AND status = 'PROCESSING'",
                    u=upload_id,
                )
                >= 1
            )

        wait_until(writing, 300, "the run's forked process writing a chunk", interval=0.5)
        forked[0].kill()
        forked[0].wait(timeout=30)
    final = stack.wait_for_final(run_id)
    assert final["state_type"] == "CRASHED", final["state"]
    wait_until(
        lambda: (
            count(
                db,
                "SELECT count(*) FROM csv_upload WHERE id = :u AND status = 'FAILED'",
                u=upload_id,
            )
            == 1
        ),
        120,
        "the on_crashed hook to fail the upload",
    )
