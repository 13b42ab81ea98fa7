"""The Prefect UI's paths on a real server and process worker: a run started from the form,
retried with the UI's Retry, watched through its tags, artifacts, logs and events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from pledgeflow.cli import app
from pledgeflow.staging import stage_file
from pledgeflow.uploads import chunk_name
from pledgeflow_bench.exports import backers, render
from tests.helpers import count, write_file
from tests.services import wait_until
from tests.stack import Stack
from tests.test_locked_server import everything_the_server_keeps

# Several tests start two or three flow-run processes each, and the first test of the stack
# group pays for starting the stack.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FOUR = ("import-file", "process-upload", "retry-upload", "sweep-stuck-chunks")


def deployment(stack: Stack, name: str) -> dict[str, Any]:
    response = stack.client.get(f"/deployments/name/{name}/{name}")
    response.raise_for_status()
    return dict(response.json())


def start_import(stack: Stack, **parameters: Any) -> str:
    """Create an import-file run as the UI's form does, the worker's import root set for it
    (the deployment's own environment kept)."""
    found = deployment(stack, "import-file")
    env = {**found["job_variables"].get("env", {}), "PLEDGEFLOW_IMPORT_ROOT": str(stack.imports)}
    response = stack.client.post(
        f"/deployments/{found['id']}/create_flow_run",
        json={"parameters": parameters, "job_variables": {"env": env}},
    )
    response.raise_for_status()
    return str(response.json()["id"])


def retry_as_the_ui_does(stack: Stack, run_id: str) -> None:
    """The UI's Retry (the run page's menu): the failed run set to AwaitingRetry, a Scheduled
    state. Prefect 3.9's default UI sends it forced; unforced here, so the server's
    orchestration rules must accept it as well."""
    state = {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}
    response = stack.client.post(
        f"/flow_runs/{run_id}/set_state", json={"state": state, "force": False}
    )
    response.raise_for_status()
    assert response.json()["status"] == "ACCEPT", response.json()


def run_logs(stack: Stack, run_id: str) -> str:
    logs = stack.client.post(
        "/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "sort": "TIMESTAMP_DESC"},
    ).json()
    return "\n".join(entry["message"] for entry in logs)


def wait_for_log_line(stack: Stack, run_id: str, line: str) -> None:
    """Wait for a line in the run's logs (the worker ships logs in batches)."""
    wait_until(lambda: line in run_logs(stack, run_id), 120, f"the log line {line!r}")


def artifacts(stack: Stack, run_id: str, key: str) -> list[dict[str, Any]]:
    found = stack.client.post(
        "/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [run_id]}}},
    ).json()
    return sorted(found, key=lambda a: a["updated"])


def events_named(stack: Stack, event: str, **labels: str) -> list[dict[str, Any]]:
    # The server pages events by at most 50; the labels narrow the page to the ones wanted.
    wanted = {
        "event": {"name": [event]},
        "resource": {"labels": {k: [v] for k, v in labels.items()}},
    }
    response = stack.client.post("/events/filter", json={"filter": wanted, "limit": 50})
    assert response.status_code == 200, response.text
    found = response.json()["events"]
    return [e for e in found if all(e["resource"].get(k) == v for k, v in labels.items())]


def upload_chunks(db: Engine, upload_id: int) -> dict[str, tuple[int, int, str]]:
    with db.connect() as conn:
        return {
            chunk_name(r.chunk_index, r.first_row, r.row_count): (
                r.chunk_index,
                r.attempts,
                str(r.status),
            )
            for r in conn.execute(
                text(
                    "SELECT chunk_index, first_row, row_count, attempts, status "
                    "FROM csv_upload_chunk WHERE upload_id = :u"
                ),
                {"u": upload_id},
            )
        }


def test_retry_in_the_ui_resumes_the_upload_the_import_run_staged(
    stack: Stack, db: Engine, flaky_pledge: str
) -> None:
    rows = backers(300)
    rows[149].extra["Backer Number"] = flaky_pledge  # data row 150: chunk index 1 of 0..2
    write_file(stack.imports, "retried.csv", render("2020", rows))
    uploads_before = count(db, "SELECT count(*) FROM csv_upload")
    run_id = start_import(
        stack, path="retried.csv", shop="retry.example.com", project="Retried", chunk_size=100
    )

    failed = stack.wait_for_final(run_id, timeout=240)

    assert failed["state_type"] == "FAILED"
    assert count(db, "SELECT count(*) FROM csv_upload") == uploads_before + 1
    upload_id = count(db, "SELECT id FROM csv_upload WHERE flow_run_id = :r", r=run_id)
    assert f"upload {upload_id} failed: chunks_failed" in failed["state"]["message"]
    assert {"shop:retry.example.com", "platform:kickstarter", f"upload:{upload_id}"} <= set(
        failed["tags"]
    )
    wait_until(lambda: len(stack.finished_chunk_runs(run_id)) >= 3, 60, "3 chunk task runs")
    first = {t["name"]: t["state_name"] for t in stack.finished_chunk_runs(run_id)}
    assert first == {
        "chunk-0-rows-1-100": "Completed",
        "chunk-1-rows-101-200": "Failed",
        "chunk-2-rows-201-300": "Completed",
    }
    summary = artifacts(stack, run_id, f"upload-{upload_id}-summary")[-1]["data"]
    failed_line = next(line for line in summary.splitlines() if "| 101-200 |" in line)
    assert failed_line.startswith("| 1 | 101-200 | FAILED | 0 | 0 | 1 |")
    assert "injected first-attempt failure" in failed_line

    # `pledgeflow status` names the failed chunk as the task run and the summary do.
    status = CliRunner().invoke(app, ["status", str(upload_id)])
    assert "failed chunk-1-rows-101-200: " in status.output, status.output
    assert "injected first-attempt failure" in status.output

    retry_as_the_ui_does(stack, run_id)
    wait_until(lambda: stack.flow_run(run_id)["run_count"] >= 2, 300, "the retry to start")
    final = stack.wait_for_final(run_id, timeout=240)

    assert final["state_type"] == "COMPLETED", final["state"]
    assert count(db, "SELECT count(*) FROM csv_upload") == uploads_before + 1
    with db.connect() as conn:
        upload = conn.execute(
            text("SELECT status, imported_rows, completed_chunks FROM csv_upload WHERE id = :u"),
            {"u": upload_id},
        ).one()
    assert tuple(upload) == ("COMPLETED", 300, 3)
    # The completed chunks were claimed once; only the failed one ran again.
    assert upload_chunks(db, upload_id) == {
        "chunk-0-rows-1-100": (0, 1, "COMPLETED"),
        "chunk-1-rows-101-200": (1, 2, "COMPLETED"),
        "chunk-2-rows-201-300": (2, 1, "COMPLETED"),
    }
    progress = artifacts(stack, run_id, f"upload-{upload_id}-progress")[-1]
    assert progress["data"] == 100.0
    assert progress["description"].startswith("3 of 3 chunks completed, 300 of 300 rows")
    wait_for_log_line(
        stack, run_id, f"upload {upload_id} COMPLETED: 300 rows, 300 imported, 0 rejected"
    )
    # Filtering runs by the shop's tag finds this run, the one with Retry.
    tagged = stack.client.post(
        "/flow_runs/filter",
        json={"flow_runs": {"tags": {"all_": ["shop:retry.example.com"]}}, "limit": 50},
    ).json()
    assert [r["id"] for r in tagged] == [run_id]


def test_a_run_started_from_the_form_carries_its_outcome(stack: Stack, db: Engine) -> None:
    write_file(stack.imports, "formed.csv", render("2020", backers(12)))
    found = deployment(stack, "import-file")
    env = {**found["job_variables"].get("env", {}), "PLEDGEFLOW_IMPORT_ROOT": str(stack.imports)}
    created = stack.client.post(
        f"/deployments/{found['id']}/create_flow_run",
        json={
            "name": "march-backers",
            "parameters": {"path": "formed.csv", "shop": "form.example.com", "project": "Form"},
            "job_variables": {"env": env},
        },
    )
    created.raise_for_status()
    run_id = created.json()["id"]

    final = stack.wait_for_final(run_id, timeout=240)

    assert final["state_type"] == "COMPLETED", final["state"]
    assert final["name"] == "march-backers"  # the name typed in the form is kept
    upload_id = count(db, "SELECT id FROM csv_upload WHERE flow_run_id = :r", r=run_id)
    assert {"shop:form.example.com", "platform:kickstarter", f"upload:{upload_id}"} <= set(
        final["tags"]
    )
    summary = artifacts(stack, run_id, f"upload-{upload_id}-summary")
    assert len(summary) == 1
    assert f"# Upload {upload_id}: COMPLETED" in summary[0]["data"]
    wait_for_log_line(
        stack, run_id, f"upload {upload_id} COMPLETED: 12 rows, 12 imported, 0 rejected"
    )
    assert "@example.com" not in run_logs(stack, run_id)  # ids and counts only


def test_a_refused_file_ends_the_run_with_its_reason_and_an_event_naming_the_shop(
    stack: Stack, db: Engine
) -> None:
    write_file(stack.imports, "empty.csv", b"")
    uploads_before = count(db, "SELECT count(*) FROM csv_upload")
    run_id = start_import(stack, path="empty.csv", shop="refused.example.com", project="Empty")

    final = stack.wait_for_final(run_id, timeout=240)

    assert final["state_type"] == "FAILED"
    assert final["state"]["message"].startswith("empty_file: empty.csv is empty")
    assert "shop:refused.example.com" in final["tags"]
    logs = run_logs(stack, run_id)
    assert "Traceback" not in logs, logs
    assert count(db, "SELECT count(*) FROM csv_upload") == uploads_before
    wait_until(
        lambda: bool(
            events_named(
                stack, "pledgeflow.upload.failed", **{"pledgeflow.shop": "refused.example.com"}
            )
        ),
        120,
        "the failure event",
    )
    event = events_named(
        stack, "pledgeflow.upload.failed", **{"pledgeflow.shop": "refused.example.com"}
    )[0]
    assert event["payload"]["error_code"] == "empty_file"
    assert event["resource"]["pledgeflow.cause"] == "data"


@pytest.mark.parametrize("target", ["/etc/passwd", "link out"])
def test_a_path_out_of_the_import_root_is_refused_and_nothing_of_the_file_is_kept(
    stack: Stack, db: Engine, tmp_path: Path, target: str
) -> None:
    """/etc/passwd, and a symlink inside the root to a file outside it: the run fails before
    reading, and no upload, chunk, log line, event or artifact holds a line of the file."""
    if target == "/etc/passwd":
        path, outside = target, Path(target)
    else:
        people = backers(3)
        for person in people:  # rows no other test's file holds
            person.email = f"outside-{uuid.uuid4().hex}@example.com"
        outside = write_file(tmp_path, "elsewhere.csv", render("2020", people))
        path = f"link-{uuid.uuid4().hex[:8]}.csv"
        (stack.imports / path).symlink_to(outside)
    lines = [line for line in outside.read_text().splitlines() if line.strip()]
    if target != "/etc/passwd":
        lines = lines[1:]  # the header row is Kickstarter's public layout, not the file's data
    assert lines
    shop = f"root-{uuid.uuid4().hex[:8]}.example.com"
    before = {t: count(db, f"SELECT count(*) FROM {t}") for t in ("csv_upload", "csv_upload_chunk")}

    run_id = start_import(stack, path=path, shop=shop, project="Outside")
    final = stack.wait_for_final(run_id, timeout=240)

    assert final["state_type"] == "FAILED"
    assert final["state"]["message"].startswith(f"outside_import_root: {path} is outside")
    after = {t: count(db, f"SELECT count(*) FROM {t}") for t in ("csv_upload", "csv_upload_chunk")}
    assert after == before
    wait_for_log_line(stack, run_id, "outside_import_root")  # the state's, in the run's logs
    wait_until(
        lambda: bool(events_named(stack, "pledgeflow.upload.failed", **{"pledgeflow.shop": shop})),
        120,
        "the failure event",
    )
    kept = everything_the_server_keeps(stack)  # runs, logs, artifacts, events, ...
    assert run_id in kept["logs"] and shop in kept["events"]
    leaks = {where: [line for line in lines if line in held] for where, held in kept.items()}
    assert {where: found for where, found in leaks.items() if found} == {}


def test_every_parameter_of_the_four_deployments_explains_itself(stack: Stack) -> None:
    for name in FOUR:
        properties = deployment(stack, name)["parameter_openapi_schema"]["properties"]
        for key, prop in properties.items():
            assert prop.get("description"), (name, key)
            assert prop.get("title") and prop["title"] != key, (name, key, prop.get("title"))
    form = deployment(stack, "import-file")["parameter_openapi_schema"]["properties"]
    assert form["platform"]["enum"] == [
        "detect",
        "kickstarter",
        "indiegogo",
        "backerkit",
        "gamefound",
    ]
    assert "ISO 4217" in form["currency"]["description"]
    assert "email" in form["mapping"]["description"]
    assert form["mapping"]["examples"][0]["email"]
    size = next(t for t in form["chunk_size"]["anyOf"] if t.get("type") == "integer")
    assert (size["minimum"], size["maximum"]) == (100, 100_000)


@pytest.mark.parametrize(
    "bad", [{"platform": "myspace"}, {"currency": "DOLLARS"}, {"chunk_size": 5}]
)
def test_the_server_refuses_a_run_with_a_bad_parameter(stack: Stack, bad: dict[str, Any]) -> None:
    found = deployment(stack, "import-file")
    before = len(stack.flow_runs("import-file"))
    response = stack.client.post(
        f"/deployments/{found['id']}/create_flow_run",
        json={"parameters": {"path": "a.csv", "shop": "s.example.com", "project": "P", **bad}},
    )
    assert response.status_code in (409, 422), response.text
    assert len(stack.flow_runs("import-file")) == before


UNKNOWN_LAYOUT = (
    "E-mail address,Order,Total,Date,Notes\r\n"
    + "".join(
        f"fan{i}@example.com,{1000 + i},{10 + i}.00 USD,2024-01-{i + 1:02d} 10:00,note {i}\r\n"
        for i in range(6)
    )
).encode()


def wait_for_state(stack: Stack, run_id: str, state_type: str, timeout: float = 240) -> None:
    wait_until(
        lambda: stack.flow_run(run_id)["state_type"] == state_type,
        timeout,
        f"flow run {run_id} to be {state_type}",
        interval=1,
    )


def resume_as_the_ui_does(stack: Stack, run_id: str, answer: dict[str, Any]) -> None:
    """The Resume form's button, as Prefect 3.9's default UI sends it: the values are checked
    first (posted as both the schema and the values; on an error the form stays open and
    nothing is resumed), then the run is resumed with them."""
    checked = stack.client.post("/ui/schemas/validate", json={"schema": answer, "values": answer})
    assert checked.status_code == 200, checked.text
    resumed = stack.client.post(f"/flow_runs/{run_id}/resume", json={"run_input": answer})
    resumed.raise_for_status()
    assert resumed.json()["status"] == "ACCEPT", resumed.json()


def test_an_unknown_layout_pauses_for_a_mapping_and_imports_with_the_one_given(
    stack: Stack, db: Engine
) -> None:
    write_file(stack.imports, "custom.csv", UNKNOWN_LAYOUT)
    run_id = start_import(stack, path="custom.csv", shop="ask.example.com", project="Asked")

    wait_for_state(stack, run_id, "PAUSED")

    upload_id = count(db, "SELECT id FROM csv_upload WHERE flow_run_id = :r", r=run_id)
    run = stack.flow_run(run_id)
    # Suspended, not paused in its process: the process exits and gives its deployment
    # concurrency slot back (a run paused in its process is Crashed by Prefect ~4 minutes in).
    assert run["state"]["name"] == "Suspended", run["state"]
    with db.connect() as conn:
        waiting = conn.execute(
            text("SELECT status::text, errors FROM csv_upload WHERE id = :u"), {"u": upload_id}
        ).one()
    # Until someone answers, the upload says what the CLI says.
    assert (waiting.status, waiting.errors["error"]["code"]) == ("FAILED", "unknown_layout")
    keyset = run["state"]["state_details"]["run_input_keyset"]
    schema = stack.client.get(f"/flow_runs/{run_id}/input/{keyset['schema']}").json()
    schema = schema if isinstance(schema, dict) else {}
    suggested = {k: p.get("default") for k, p in schema["properties"].items()}
    assert suggested["email"] == "E-mail address"
    assert suggested["pledged_at"] == "Date"
    description = stack.client.get(f"/flow_runs/{run_id}/input/{keyset['description']}").json()
    assert "E-mail address, Order, Total, Date, Notes" in description
    # The person confirms the suggestion and adds what it missed, as the UI's form sends it.
    answer = {**suggested, "pledge_key": "Order", "amount": "Total"}
    resume_as_the_ui_does(stack, run_id, answer)

    final = stack.wait_for_final(run_id, timeout=240)

    assert final["state_type"] == "COMPLETED", final["state"]
    with db.connect() as conn:
        upload = conn.execute(
            text("SELECT status, imported_rows, mapping FROM csv_upload WHERE id = :u"),
            {"u": upload_id},
        ).one()
    assert (upload.status, upload.imported_rows) == ("COMPLETED", 6)
    assert upload.mapping["pledge_key"] == "Order"
    assert count(db, "SELECT count(*) FROM pledge WHERE upload_id = :u", u=upload_id) == 6

    # The project's next upload with those headers imports with the saved mapping, unasked.
    write_file(stack.imports, "custom-2.csv", UNKNOWN_LAYOUT)
    second = start_import(stack, path="custom-2.csv", shop="ask.example.com", project="Asked")
    assert stack.wait_for_final(second, timeout=240)["state_type"] == "COMPLETED"
    states = stack.client.get("/flow_run_states/", params={"flow_run_id": second}).json()
    assert "PAUSED" not in {s["type"] for s in states}


def test_deploy_ships_an_automation_that_retries_transient_failures_later(
    stack: Stack, tmp_path: Path
) -> None:
    automations = stack.client.post("/automations/filter", json={}).json()
    shipped = [
        a for a in automations if "pledgeflow.upload.failed" in a["trigger"].get("expect", [])
    ]
    assert [a["name"] for a in shipped] == ["pledgeflow-retry-transient-failures"]
    trigger, action = shipped[0]["trigger"], shipped[0]["actions"][0]
    assert trigger["match"] == {
        "prefect.resource.id": "pledgeflow.upload.*",
        "pledgeflow.cause": "transient",
        "pledgeflow.auto_retry": "yes",
    }
    retry = deployment(stack, "retry-upload")
    assert (action["type"], action["deployment_id"]) == ("run-deployment", retry["id"])

    # A transient failure's event, as pledgeflow emits it: a retry-upload run of that upload,
    # one attempt later, scheduled five minutes ahead.
    upload_id = stage_file(
        write_file(tmp_path, "later.csv", render("2020", backers(3))),
        shop="later.example.com",
        project="Later",
    )
    sent = datetime.now(UTC)
    event = {
        "id": str(uuid.uuid4()),
        "occurred": sent.isoformat(),
        "event": "pledgeflow.upload.failed",
        "resource": {
            "prefect.resource.id": f"pledgeflow.upload.{upload_id}",
            "pledgeflow.upload_id": str(upload_id),
            "pledgeflow.shop": "later.example.com",
            "pledgeflow.cause": "transient",
            "pledgeflow.auto_retry": "yes",
        },
        "payload": {"upload_id": upload_id, "attempt": 0, "error_code": "chunks_failed"},
    }
    stack.client.post("/events", json=[event]).raise_for_status()

    def scheduled() -> list[dict[str, Any]]:
        return [
            r
            for r in stack.flow_runs("retry-upload")
            if r["parameters"].get("upload_id") == upload_id
        ]

    wait_until(lambda: bool(scheduled()), 90, "the automation's retry-upload run")
    run = scheduled()[0]
    assert run["parameters"] == {"upload_id": upload_id, "attempt": 1}
    start = datetime.fromisoformat(run["expected_start_time"])
    # Five minutes after the action ran (a busy server may take a while to act on the event).
    assert start - sent > timedelta(seconds=240)
    delay = start - datetime.fromisoformat(run["created"])
    assert timedelta(seconds=290) <= delay <= timedelta(seconds=310), delay
    stack.client.delete(f"/flow_runs/{run['id']}").raise_for_status()
