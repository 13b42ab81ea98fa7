"""The web app's TypeScript client (clients/typescript), run with Node as a web app runs it:
Prisma Client writes an upload of a real-shaped export and its chunks in one transaction, the
signed webhook (a decimal-string id, then a BigInt) starts one run on the real stack, and Prisma
reads back COMPLETED, the counters and pledges with their backer, product and survey.

`make clients` (a step of `make test`) installs the npm packages from package-lock.json inside
the clone and runs `prisma generate` offline: Prisma Client 7 (WASM query compiler,
@prisma/adapter-pg) needs no native engine, and the CLI only needs PRISMA_SCHEMA_ENGINE_BINARY
to name an existing file, since it cannot download its schema engine here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from pledgeflow_bench.exports import backers, render
from tests.helpers import UPLOAD_COUNTERS, write_file
from tests.stack import WEBHOOK_SECRET, Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "typescript"
SCRIPT = CLIENT / "dist" / "e2e.js"


def test_the_typescript_client_stores_notifies_and_reads_an_upload(
    stack: Stack, db: Engine, import_role_url: str, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None or not SCRIPT.exists():
        pytest.fail("Node and the built client are required: run `make clients` (needs node, npm)")
    people = backers(40)
    people[5].email = ""  # one rejected row
    path = write_file(tmp_path, "web-export.csv", render("2020", people))
    # The web app logs in as a role that may write rows, not change the schema.
    url = make_url(import_role_url).set(drivername="postgresql")
    env = {
        "PATH": str(Path(node).parent),
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "WEBHOOK_URL": stack.webhook,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CSV_PATH": str(path),
        "SHOP": "prisma.example.com",
        "PROJECT": "Prisma Campaign",
        "CHUNK_SIZE": "15",
    }

    done = subprocess.run(
        [node, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=420, check=False
    )

    assert done.returncode == 0, done.stderr[-3000:]
    read = json.loads(done.stdout)
    upload_id = int(read["uploadId"])
    assert read["uploadId"] == str(upload_id)
    assert read["stored"]["status"] == "PENDING"
    assert read["queued"]["flow_run_id"] == read["again"]["flow_run_id"]
    progress = read["progress"]
    assert progress["status"] == "COMPLETED", progress
    with db.connect() as conn:
        upload = (
            conn.execute(text("SELECT * FROM csv_upload WHERE id = :u"), {"u": upload_id})
            .mappings()
            .one()
        )
        total = conn.execute(
            text("SELECT sum(amount) FROM pledge WHERE upload_id = :u"), {"u": upload_id}
        ).scalar_one()
        chunks = conn.execute(
            text("SELECT count(*) FROM csv_upload_chunk WHERE upload_id = :u"), {"u": upload_id}
        ).scalar_one()
    camel = {
        c: "".join(p if i == 0 else p.title() for i, p in enumerate(c.split("_")))
        for c in UPLOAD_COUNTERS
    }
    assert {c: progress[camel[c]] for c in UPLOAD_COUNTERS} == {
        c: upload[c] for c in UPLOAD_COUNTERS
    }
    assert (upload["total_rows"], upload["total_chunks"], chunks) == (40, 3, 3)
    assert (upload["imported_rows"], upload["rejected_rows"]) == (39, 1)
    assert upload["flow_run_id"] == read["queued"]["flow_run_id"]
    assert progress["stats"]["tables"]["pledge"]["created"] == 39
    assert progress["errors"]["by_code"] == {"missing_email": 1}
    # Money read as Decimal and summed exactly, written to JSON as its decimal string.
    assert Decimal(read["totalPledged"]) == total
    pledges = read["pledges"]
    assert len(pledges) == 39
    first = pledges[0]
    assert isinstance(first["id"], str) and isinstance(first["backer"]["id"], str)
    assert "@" in first["backer"]["email"]
    rewarded = [p for p in pledges if p["product"] is not None]
    assert rewarded and {p["product"]["kind"] for p in rewarded} <= {"REWARD"}
    assert read["rewarded"] == len(rewarded)
    assert all(p["survey"]["pledgeId"] == p["id"] for p in pledges)
    assert [c["status"] for c in read["chunks"]] == ["COMPLETED"] * 3
