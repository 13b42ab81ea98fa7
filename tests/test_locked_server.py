"""The locked stack of README's "Running it for real": basic auth and CSRF on the Prefect server,
every client with the auth string, worker and webhook as the import role, and no secret shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine, make_url
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from pledgeflow.staging import stage_file
from pledgeflow_bench.exports import backers, render
from tests.helpers import count, run_command, store_web_app_upload, write_file
from tests.services import BIN, ROOT, free_port, wait_until
from tests.stack import AUTH_PASSWORD, AUTH_STRING, AUTH_USER, IMPORT_ROLE, SECRETS, Stack

# The first test to use the stack also pays for starting it (about 40 s on a quiet machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
PROTECTED = [
    "/version",
    "/csrf-token?client=someone",
    "/deployments/name/process-upload/process-upload",
    "/work_pools/pledgeflow-process",
    "/flow_runs/00000000-0000-0000-0000-000000000000",
]


def test_the_api_answers_401_without_the_auth_string_and_403_without_a_csrf_token(
    stack: Stack,
) -> None:
    wrong = ("admin", "not-" + AUTH_PASSWORD)
    answers = {
        (path, who): httpx.get(f"{stack.api}{path}", auth=auth, timeout=10).status_code
        for path in PROTECTED
        for who, auth in (("nobody", None), ("wrong password", wrong))
    }
    assert set(answers.values()) == {401}, answers
    assert stack.client.get("/deployments/name/process-upload/process-upload").status_code == 200

    query = {"limit": 1}
    csrf = {k: v for k, v in stack.client.headers.items() if k.lower().startswith("prefect-csrf")}
    posts = {
        "no auth, no token": httpx.post(f"{stack.api}/flow_runs/filter", json=query),
        "auth, no token": httpx.post(
            f"{stack.api}/flow_runs/filter", json=query, auth=(AUTH_USER, AUTH_PASSWORD)
        ),
        "token, no auth": httpx.post(f"{stack.api}/flow_runs/filter", json=query, headers=csrf),
        "token, wrong auth": httpx.post(
            f"{stack.api}/flow_runs/filter", json=query, headers=csrf, auth=wrong
        ),
        "token and auth": stack.client.post("/flow_runs/filter", json=query),
    }
    assert {k: r.status_code for k, r in posts.items()} == {
        "no auth, no token": 403,
        "auth, no token": 403,
        "token, no auth": 401,
        "token, wrong auth": 401,
        "token and auth": 200,
    }


def test_websockets_need_the_auth_string_too(stack: Stack) -> None:
    url = stack.api.replace("http://", "ws://") + "/events/out"

    def first_answer(token: str | None) -> Any:
        try:
            with connect(url, subprotocols=["prefect"], open_timeout=10) as ws:  # type: ignore[list-item]
                if token is not None:
                    ws.send(json.dumps({"type": "auth", "token": token}))
                return json.loads(ws.recv(timeout=10))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else "closed"

    assert first_answer(AUTH_STRING) == {"type": "auth_success"}
    assert first_answer("admin:wrong") == 1008
    assert first_answer("") == 1008


def test_only_probes_the_ui_shell_and_the_api_description_are_open(stack: Stack) -> None:
    open_paths = {
        path: httpx.get(
            f"{stack.base}{path}",
            headers={"accept": "text/html"},
            timeout=10,
            follow_redirects=True,
        ).status_code
        for path in ("/api/health", "/api/ready", "/ui-settings", "/docs", "/openapi.json", "/")
    }
    assert set(open_paths.values()) == {200}, open_paths
    ui = httpx.get(f"{stack.base}/ui-settings", timeout=10).json()
    assert (ui["auth"], ui["csrf_enabled"]) == ("BASIC", True)
    # A POST to the probes is no probe: it needs the token (and then the auth string).
    assert httpx.post(f"{stack.api}/health").status_code == 403


def cli(stack: Stack, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run the `pledgeflow` console script with the stack's client environment."""
    return run_command([BIN / "pledgeflow", *args], env=env or stack.env, cwd=tmp_path, timeout=180)


def secrets_in(text: str) -> list[str]:
    """Names of the stack's secrets that `text` shows."""
    return [name for name, secret in SECRETS.items() if secret in text]


def everything_the_server_keeps(stack: Stack) -> dict[str, str]:
    """Flow runs (parameters, job variables, states), deployments, work pools, logs,
    artifacts, variables, blocks and events, as JSON text."""
    client = stack.client

    def paged(path: str, size: int = 200) -> list[Any]:
        found: list[Any] = []
        while True:
            page = client.post(path, json={"limit": size, "offset": len(found)}).json()
            found += page
            if len(page) < size:
                return found

    events: list[Any] = []
    page = client.post("/events/filter", json={"limit": 50}).json()
    while True:
        events += page["events"]
        if not page.get("next_page") or len(events) > 20_000:
            break
        page = client.get(page["next_page"]).json()
    return {
        "flow runs": json.dumps(paged("/flow_runs/filter")),
        "task runs": json.dumps(paged("/task_runs/filter")),
        "deployments": json.dumps(paged("/deployments/filter")),
        "work pools": json.dumps(client.post("/work_pools/filter", json={}).json()),
        "logs": json.dumps(paged("/logs/filter")),
        "artifacts": json.dumps(paged("/artifacts/filter")),
        "variables": json.dumps(client.post("/variables/filter", json={}).json()),
        "blocks": json.dumps(client.post("/block_documents/filter", json={}).json()),
        "events": json.dumps(events),
    }


def test_the_cli_webhook_and_worker_run_as_the_import_role_and_never_show_a_secret(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    # A completed run and a failed one from the CLI, against the locked server.
    good = write_file(stack.imports, "good.csv", render("2020", backers(25)))
    bad = write_file(stack.imports, "bad.csv", b"colour,shape\nred,round\n")
    imported = cli(
        stack,
        tmp_path,
        "import",
        str(good),
        "--shop",
        "cli.example.com",
        "--project",
        "Locked",
        "--chunk-size",
        "100",
        "--json",
    )
    refused = cli(
        stack,
        tmp_path,
        "import",
        str(bad),
        "--shop",
        "cli.example.com",
        "--project",
        "Locked",
        "--json",
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert refused.returncode == 1, refused.stderr[-2000:]
    done = json.loads(imported.stdout)
    assert (done["status"], done["imported_rows"]) == ("COMPLETED", 25)
    assert json.loads(refused.stdout)["error"]["code"] == "unknown_layout"
    # The CLI's import is an import-file run tagged with its upload. Upload ids restart in each
    # test's emptied database: the newest run with that tag is this one.
    tagged = {"flow_runs": {"tags": {"all_": [f"upload:{done['upload_id']}"]}}}
    runs = stack.client.post("/flow_runs/filter", json=tagged).json()
    assert max(runs, key=lambda r: r["created"])["state_type"] == "COMPLETED"
    status = cli(stack, tmp_path, "status", str(done["upload_id"]), "--json")
    assert status.returncode == 0

    # A completed and a failed run from the webhook (signed with the previous key, which is
    # still accepted), run by the worker as the import role.
    completed_upload = stage_file(
        write_file(tmp_path, "hook.csv", render("2020", backers(12))),
        shop="hook.example.com",
        project="Locked",
        chunk_size=5,
    )
    # A web-app upload whose chunk has no header row fails before import (an unknown layout
    # would suspend the run to ask for a mapping: tests/test_ui_runs.py).
    failing_upload = store_web_app_upload(db, [], [[["red", "round"]]])
    answers = []
    finals = []
    for upload_id in (completed_upload, failing_upload):
        body = json.dumps({"upload_id": upload_id}).encode()
        answer = stack.post(body, secret=SECRETS["previous webhook secret"])
        assert answer.status_code == 202, answer.text
        answers.append(answer.text)
        finals.append(stack.wait_for_final(answer.json()["flow_run_id"]))
    assert [f["state_type"] for f in finals] == ["COMPLETED", "FAILED"]
    assert count(db, "SELECT count(*) FROM pledge WHERE upload_id = :u", u=completed_upload) == 12
    sessions = count(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE usename = :r AND datname = current_database()",
        r=IMPORT_ROLE,
    )
    assert sessions >= 1  # the webhook's pool (the worker's flow processes have exited)

    # An error message about the database carries no password.
    unreachable = make_url(stack.env["PLEDGEFLOW_DATABASE_URL"]).set(port=free_port())
    broken_env = {
        **stack.env,
        "PLEDGEFLOW_DATABASE_URL": unreachable.render_as_string(hide_password=False),
    }
    broken = cli(stack, tmp_path, "status", "1", "--json", env=broken_env)
    assert broken.returncode != 0

    def shipped() -> bool:
        """The run logs and events of the last runs have reached the server."""
        kept = everything_the_server_keeps(stack)
        return (
            "pledgeflow.upload" in kept["events"]
            and f"upload {failing_upload} failed before import" in kept["logs"]
            and all(f["id"] in kept["logs"] for f in finals)
        )

    wait_until(shipped, 120, "the last runs' logs and events", interval=3)
    shown = everything_the_server_keeps(stack)
    shown["cli output"] = "".join(p.stdout + p.stderr for p in (imported, refused, status, broken))
    shown["webhook answers"] = "".join(answers)
    for name in ("server.log", "worker.log", "webhook.log"):
        shown[name] = (stack.logs / name).read_text(errors="replace")
    assert "upload-" in shown["flow runs"] and "pledgeflow.upload" in shown["events"]
    assert f"upload {failing_upload} failed before import" in shown["logs"]
    assert all(f["id"] in shown["logs"] for f in finals)  # the worker's runs are searched
    leaks = {where: secrets_in(text) for where, text in shown.items() if secrets_in(text)}
    assert leaks == {}


def test_a_client_without_the_auth_string_cannot_use_the_server(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    env = {k: v for k, v in stack.env.items() if k != "PREFECT_API_AUTH_STRING"}
    # pledgeflow's CLI says so in a line before it stores anything (the health check it asks
    # first is open): missing and wrong alike.
    good = write_file(stack.imports, "unauthorised.csv", render("2020", backers(3)))
    uploads = count(db, "SELECT count(*) FROM csv_upload")
    for name, client_env in {
        "missing": env,
        "wrong": {**env, "PREFECT_API_AUTH_STRING": f"{AUTH_USER}:not-{AUTH_PASSWORD}"},
    }.items():
        refused = cli(
            stack, tmp_path, "import", str(good), "--shop", "noauth.example.com",
            "--project", "NoAuth", "--json", env=client_env,
        )  # fmt: skip
        assert refused.returncode == 2, (name, refused.stdout, refused.stderr[-2000:])
        error = json.loads(refused.stdout)["error"]
        assert error["code"] == "prefect_unauthorized", (name, error)
        assert "PREFECT_API_AUTH_STRING" in error["hint"]
        assert "Traceback" not in refused.stderr
        assert not secrets_in(refused.stdout + refused.stderr), name
    assert count(db, "SELECT count(*) FROM csv_upload") == uploads
    # The webhook refuses to start, rather than answer 500 to every delivery.
    hook = cli(stack, tmp_path, "webhook", "--port", str(free_port()), env=env)
    assert hook.returncode == 2, hook.stderr[-2000:]
    assert "prefect_unauthorized" in hook.stderr and "PREFECT_API_AUTH_STRING" in hook.stderr
    assert len(hook.stderr.strip().splitlines()) <= 3 and "Traceback" not in hook.stderr
    assert not secrets_in(hook.stdout + hook.stderr)

    listed = run_command([BIN / "prefect", "deployment", "ls"], env=env, cwd=ROOT, timeout=120)
    assert listed.returncode != 0
    assert "401" in listed.stdout + listed.stderr or "Unauthorized" in listed.stdout + listed.stderr
    assert not secrets_in(listed.stdout + listed.stderr)
