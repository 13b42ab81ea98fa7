"""Helpers shared by tests: write files, stage them, read tables back."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import text
from sqlalchemy.engine import Engine

from deployments.webhook import sign
from pledgeflow.settings import get_settings
from pledgeflow.staging import stage_file
from pledgeflow.status import UploadResult
from pledgeflow.uploads import read_upload
from pledgeflow_bench.exports import Backer, backers, render
from pledgeflow_bench.web_app import insert_web_app_upload, web_app_project
from schemas.mappings import ColumnMapping

# The inputs a chunk's rows depend on, and another value for each: the chunk digest and the row
# cache's key must change with every one of them.
ROW_INPUTS: dict[str, Any] = {
    "data_digest": b"\x01" * 32,
    "first_row": 1,
    "shop": "a.example.com",
    "platform": "kickstarter",
    "mapping": None,
    "currency": None,
    "value_answers": [],
}
OTHER_ROW_INPUTS: dict[str, Any] = {
    "data_digest": b"\x02" * 32,
    "first_row": 9,
    "shop": "b.example.com",
    "platform": "backerkit",
    "mapping": {"email": "E-mail"},
    "currency": "EUR",
    "value_answers": [17],
}
# The counters of an upload, each 0 when it is stored.
UPLOAD_COUNTERS = (
    "total_rows",
    "total_chunks",
    "completed_chunks",
    "failed_chunks",
    "imported_rows",
    "rejected_rows",
)

# Business content of each table, without surrogate ids or bookkeeping columns, so two
# imports can be compared row for row.
CONTENT = {
    "backer": "SELECT shop, email, name, phone, country, external_id FROM backer",
    "product": "SELECT p.name, kind, external_id, price, currency FROM product p",
    "pledge": """SELECT pl.pledge_id, b.email, pr.name AS product, amount, shipping_amount,
                        pl.currency, status, pledged_at, platform
                 FROM pledge pl JOIN backer b ON b.id = pl.backer_id
                 LEFT JOIN product pr ON pr.id = pl.product_id""",
    "survey": """SELECT pl.pledge_id, responded_at, shipping_name, shipping_address_1,
                        shipping_address_2, shipping_city, shipping_state,
                        shipping_postal_code, shipping_country_name, shipping_country_code,
                        shipping_phone, delivery_notes, CAST(answers AS TEXT)
                 FROM survey s JOIN pledge pl ON pl.id = s.pledge_id""",
    "inventory": """SELECT pl.pledge_id, pr.name, quantity FROM inventory i
                    JOIN survey s ON s.id = i.survey_id JOIN pledge pl ON pl.id = s.pledge_id
                    JOIN product pr ON pr.id = i.product_id""",
}


def reread_settings() -> None:
    """Make the next `get_settings()` read the environment again (the one place tests clear
    its cache)."""
    get_settings.cache_clear()


def configure(monkeypatch: pytest.MonkeyPatch, **fields: str | None) -> None:
    """Set pledgeflow's settings for this test: each field `name=value` becomes the variable
    `PLEDGEFLOW_<NAME>` (`None` unsets it), so subprocesses and flow runs in this process see it
    too, and the next `get_settings()` reads it. `monkeypatch` restores the variables at the
    test's end and the autouse `settings_read_afresh` fixture then clears the cache again."""
    for name, value in fields.items():
        variable = f"PLEDGEFLOW_{name.upper()}"
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    reread_settings()


@contextmanager
def configured(**fields: str | None) -> Iterator[pytest.MonkeyPatch]:
    """`configure` for a block only (or for a fixture wider than one test): on leaving it the
    variables are as before and the next `get_settings()` reads them. Yields the block's
    MonkeyPatch, for further `configure` calls inside the block."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        try:
            configure(monkeypatch, **fields)
            yield monkeypatch
        finally:
            monkeypatch.undo()
            reread_settings()


def table_contents(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table's business content, sorted."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # Read right after an import, the tables may carry the statistics of an autoanalyze
            # that ran while a chunk's rows were uncommitted (0 rows on hundreds of pages): the
            # joins below were planned as nested loops over 50,000-row tables and ran for
            # minutes. Whole tables are read here, so hash or merge joins are always right.
            conn.execute(text("SET LOCAL enable_nestloop = off"))
        return {
            name: sorted((tuple(r) for r in conn.execute(text(sql))), key=repr)
            for name, sql in CONTENT.items()
        }


def checksums(engine: Engine) -> dict[str, tuple[int, str]]:
    """Row count and a content digest per table."""
    return {
        name: (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()[:16])
        for name, rows in table_contents(engine).items()
    }


def count(engine: Engine, sql: str, **params: Any) -> int:
    """Run a COUNT query."""
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def fetch_rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run a query; its rows as tuples, in the order it returns them."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def fetch_pairs(engine: Engine, sql: str, **params: Any) -> dict[Any, Any]:
    """Run a two-column query; the first column's values mapped to the second's."""
    with engine.connect() as conn:
        return dict(conn.execute(text(sql), params).all())


def write_file(tmp_path: Path, name: str, data: bytes) -> Path:
    """Write `data` to a file under the test's temporary folder."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


def export_without_emails(tmp_path: Path, name: str, rows: int, missing: Sequence[int]) -> Path:
    """A Kickstarter 2020 report named `name` of `rows` synthetic backers, those at the indexes
    `missing` without an email (each a row rejected as missing_email)."""
    people = backers(rows)
    for index in missing:
        people[index].email = ""
    return write_file(tmp_path, name, render("2020", people))


def run_command(
    args: Sequence[str | Path],
    *,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end with its output captured as text; never raises on its exit
    code (the test asserts it)."""
    return subprocess.run(
        [str(arg) for arg in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def slow_on_harness(timeout: int) -> list[pytest.MarkDecorator]:
    """The `pytestmark` of a slow module whose tests run flows on the Prefect harness, each
    test allowed `timeout` seconds."""
    return [
        pytest.mark.usefixtures("prefect_harness"),
        pytest.mark.slow,
        pytest.mark.timeout(timeout),
    ]


def stage_export(
    tmp_path: Path,
    name: str,
    people: Sequence[Backer],
    *,
    shop: str,
    project: str,
    year: str = "2020",
    chunk_size: int | None = None,
) -> int:
    """Write `people` as a Kickstarter `year` report named `name` and stage it; the upload's id."""
    path = write_file(tmp_path, name, render(year, people))
    return stage_file(path, shop=shop, project=project, chunk_size=chunk_size)


def import_path(
    path: Path,
    *,
    chunk_size: int = 2000,
    shop: str = "shop.example.com",
    project: str = "Campaign",
    platform: str | None = None,
    currency: str | None = None,
    mapping: ColumnMapping | None = None,
) -> UploadResult:
    """Stage a file and run the upload flow on it: what the import-file flow (`pledgeflow
    import`'s) does, with the staging outside the flow run."""
    from flows.process_upload import process_upload

    upload_id = stage_file(
        path,
        shop=shop,
        project=project,
        platform=platform,
        chunk_size=chunk_size,
        currency=currency,
        mapping=mapping,
    )
    process_upload(upload_id, return_state=True)
    return read_upload(upload_id)


def outcome(engine: Engine, project: str = "Campaign") -> dict[str, Any]:
    """What a project holds: backers, pledges, products by kind, surveys, inventory lines,
    units per product, and pledge sums per currency (as text)."""
    scope = "JOIN project j ON j.id = p.project_id WHERE j.name = :project"
    with engine.connect() as conn:

        def scalar(sql: str) -> int:
            return int(conn.execute(text(sql), {"project": project}).scalar_one())

        def pairs(sql: str) -> dict[str, Any]:
            return {str(k): v for k, v in conn.execute(text(sql), {"project": project}).all()}

        return {
            "backers": scalar(f"SELECT count(DISTINCT p.backer_id) FROM pledge p {scope}"),
            "pledges": scalar(f"SELECT count(*) FROM pledge p {scope}"),
            "products": pairs(f"SELECT kind, count(*) FROM product p {scope} GROUP BY kind"),
            "surveys": scalar(
                f"SELECT count(*) FROM survey s JOIN pledge p ON p.id = s.pledge_id {scope}"
            ),
            "inventory": scalar(
                "SELECT count(*) FROM inventory i JOIN survey s ON s.id = i.survey_id "
                f"JOIN pledge p ON p.id = s.pledge_id {scope}"
            ),
            "units": pairs(
                "SELECT pr.name, sum(i.quantity) FROM inventory i "
                "JOIN product pr ON pr.id = i.product_id "
                "JOIN survey s ON s.id = i.survey_id "
                f"JOIN pledge p ON p.id = s.pledge_id {scope} GROUP BY pr.name"
            ),
            "sums": pairs(
                "SELECT coalesce(p.currency, 'unknown'), CAST(sum(p.amount) AS TEXT) "
                f"FROM pledge p {scope} GROUP BY p.currency"
            ),
        }


def rejected(result: UploadResult) -> list[tuple[int, str, str]]:
    """(row, code, column) of every rejected cell in the upload's sample, in file order."""
    return [(e["row"], e["code"], e["column"]) for e in (result.errors or {})["sample"]]


def run_plain(upload_id: int) -> UploadResult:
    """Process an upload with the plain functions the flow's tasks wrap (no Prefect)."""
    from pledgeflow.chunks import process_chunk
    from pledgeflow.uploads import aggregate_upload, start_upload

    plan = start_upload(upload_id)
    for chunk_id in plan.chunk_ids:
        process_chunk(chunk_id)
    return aggregate_upload(upload_id)


def store_web_app_upload(
    db: Engine,
    headers: Sequence[str],
    chunks: Sequence[Sequence[Sequence[object]]],
    *,
    shop: str = "web.example.com",
    filename: str = "web.csv",
    project_id: int | None = None,
) -> int:
    """An upload stored as the web app stores one: plain SQL naming only its own columns, chunk
    rows as JSON. Without `project_id`, a project named 'Web' of `shop` is created."""
    with db.begin() as conn:
        if project_id is None:
            project_id = web_app_project(conn, shop, "Web")
        return insert_web_app_upload(conn, project_id, shop, filename, headers, chunks)


@contextmanager
def pledge_trigger(
    engine: Engine,
    name: str,
    body: str,
    *,
    when: str = "BEFORE INSERT OR UPDATE",
    each: str = "ROW",
) -> Iterator[None]:
    """While open, the PL/pgSQL `body` runs as the trigger `name` on pledge (`when`, for each
    `each`): a fault or a delay that lives in the database, where no user can reach it."""
    with engine.begin() as conn:
        conn.execute(
            text(f"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {body} END $$;
            CREATE TRIGGER {name} {when} ON pledge
            FOR EACH {each} EXECUTE FUNCTION {name}();
        """)
        )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER {name} ON pledge; DROP FUNCTION {name}();"))


@contextmanager
def slow_pledge_statements(engine: Engine, seconds: float) -> Iterator[None]:
    """While open, every statement inserting pledges takes `seconds` longer (a trigger in the
    database), so chunks overlap and faults land mid-import."""
    sleep = f"PERFORM pg_sleep({float(seconds)}); RETURN NULL;"
    with pledge_trigger(engine, "test_slow", sleep, when="AFTER INSERT", each="STATEMENT"):
        yield


@contextmanager
def held_pledges(engine: Engine, after_row: int) -> Iterator[Callable[[], None]]:
    """While open, a pledge of a source row past `after_row` is not written until the
    `release()` it yields is called (a trigger waits on an advisory lock the test holds), so the
    chunks holding such rows are certainly unfinished while the test looks."""
    holder = engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(4242, 1)"))
    holder.commit()
    wait = f"""
        IF NEW.source_row > {int(after_row)} THEN
            PERFORM pg_advisory_lock_shared(4242, 1);
            PERFORM pg_advisory_unlock_shared(4242, 1);
        END IF;
        RETURN NEW;"""
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            holder.execute(text("SELECT pg_advisory_unlock(4242, 1)"))
            holder.commit()
            released = True

    with pledge_trigger(engine, "test_hold", wait, when="BEFORE INSERT"):
        try:
            yield release
        finally:
            release()
            holder.close()


def failed_events(flow_run_id: Any) -> list[dict[str, Any]]:
    """The `pledgeflow.upload.failed` events the Prefect server holds for a flow run."""
    found = httpx.post(
        f"{PREFECT_API_URL.value()}/events/filter",
        json={"filter": {"event": {"name": ["pledgeflow.upload.failed"]}}, "limit": 50},
        timeout=10,
    ).json()["events"]
    related = f"prefect.flow-run.{flow_run_id}"
    return [e for e in found if any(r.get("prefect.resource.id") == related for r in e["related"])]


class Poster(Protocol):
    """What posts to the webhook: FastAPI's TestClient or an httpx client."""

    def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> Any: ...


def deliver(client: Poster, secret: str, payload: dict[str, Any]) -> Any:
    """POST `payload` to the webhook as the web app does: JSON, stamped now, signed."""
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    return client.post(
        "/webhooks/uploads",
        content=body,
        headers={
            "X-Pledgeflow-Timestamp": stamp,
            "X-Pledgeflow-Signature": sign(secret, stamp, body),
        },
    )
