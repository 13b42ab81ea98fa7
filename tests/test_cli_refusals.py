"""Every subcommand against each bad input: a non-zero exit, a few lines saying what to do, no
traceback, one JSON document under --json, nothing stored.

Most cases run the console script's entry point (`pledgeflow.cli.app`, as the script calls it)
in this process, which saves a Python start and pledgeflow's imports per case; an exception
escaping it is shown as the interpreter would show it. The cases that change Prefect's settings
(read once per process), start a server, or stand for each kind of failure run the real console
script, and so does the --debug test.
"""

from __future__ import annotations

import json
import os
import subprocess
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import chdir
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from click import Command
from click.testing import CliRunner
from prefect.settings import PREFECT_API_URL
from sqlalchemy.engine import Engine

from pledgeflow.cli import app
from pledgeflow.database import _engine_for
from pledgeflow_bench.exports import backers, render
from tests.helpers import count, reread_settings, write_file

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "pledgeflow"
MAX_LINES = 12
STORED = ("project", "csv_upload", "csv_upload_chunk", "backer", "product", "pledge")


@dataclass
class Case:
    """One command line, the environment it changes, and the error code it must show; `process`
    runs it as the real console script."""

    name: str
    args: list[str]
    code: str
    env: dict[str, str] = field(default_factory=dict)
    process: bool = False


@dataclass
class Outcome:
    case: Case
    result: subprocess.CompletedProcess[str]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    good = write_file(tmp_path, "good.csv", render("2020", backers(3)))
    lines = render("2020", backers(4)).decode().splitlines(keepends=True)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    root = tmp_path / "imports"
    root.mkdir()
    return {
        "good": good,
        "truncated": write_file(
            tmp_path, "cut.csv", ("".join(lines[:3]) + '3,"never closed, cut').encode()
        ),
        "empty": write_file(tmp_path, "empty.csv", b""),
        "latin1": write_file(
            tmp_path, "latin1.csv", "Email,Name\na@x.example,Zoë\n".encode("latin-1")
        ),
        "fifo": fifo,
        "folder": tmp_path,
        "mapping": write_file(tmp_path, "map.yaml", b"email: E-Mail Address\n"),
        "bad_yaml": write_file(tmp_path, "bad.yaml", b"email: [unclosed\n"),
        "root": root,
        "nowhere": tmp_path / "empty-folder",
    }


def cases(f: dict[str, Path]) -> list[Case]:
    good = str(f["good"])
    base = ["--shop", "shop.example.com", "--project", "Campaign"]
    imp = ["import", good, *base]
    pg = "postgresql+psycopg://postgres@127.0.0.1:5432"
    bad_envs = {
        "postgres_scheme": (
            {"PLEDGEFLOW_DATABASE_URL": "postgres://postgres@127.0.0.1/x"},
            "bad_configuration",
        ),
        "missing_pg_database": (
            {"PLEDGEFLOW_DATABASE_URL": f"{pg}/pledgeflow_no_such_db"},
            "database_missing",
        ),
        "unreachable_pg": (
            {"PLEDGEFLOW_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"},
            "database_unreachable",
        ),
        "no_sqlite_file": (
            {"PLEDGEFLOW_DATABASE_URL": f"sqlite:///{f['nowhere']}/pledgeflow.db"},
            "schema_missing",
        ),
        "garbage_url": ({"PLEDGEFLOW_DATABASE_URL": "not a url"}, "bad_database_url"),
    }
    listed = [
        Case("currency DOLLARS", [*imp, "--currency", "DOLLARS"], "bad_parameter", process=True),
        Case("currency zzz --json", [*imp, "--currency", "zzz", "--json"], "bad_parameter"),
        Case("platform foo", [*imp, "--platform", "foo", "--json"], "bad_parameter"),
        Case("chunk size 0", [*imp, "--chunk-size", "0"], "bad_parameter"),
        Case("chunk size 1 --json", [*imp, "--chunk-size", "1", "--json"], "bad_parameter"),
        Case("chunk size 100001", [*imp, "--chunk-size", "100001"], "bad_parameter"),
        Case(
            "chunk size abc --json",
            [*imp, "--chunk-size", "abc", "--json"],
            "usage_error",
            process=True,
        ),
        Case(
            "shop with a space",
            ["import", good, "--shop", "bad shop", "--project", "P"],
            "bad_parameter",
        ),
        Case(
            "blank project",
            ["import", good, "--shop", "s.example.com", "--project", " "],
            "bad_parameter",
        ),
        Case("a directory", ["import", str(f["folder"]), *base, "--json"], "not_a_regular_file"),
        Case("a FIFO", ["import", str(f["fifo"]), *base], "not_a_regular_file"),
        Case("/dev/zero", ["import", "/dev/zero", *base], "not_a_regular_file"),
        Case("missing file", ["import", str(f["folder"] / "nope.csv"), *base], "file_not_found"),
        Case(
            "truncated file --json",
            ["import", str(f["truncated"]), *base, "--json"],
            "truncated_file",
        ),
        Case("empty file", ["import", str(f["empty"]), *base], "empty_file"),
        Case("latin-1 file", ["import", str(f["latin1"]), *base], "invalid_encoding"),
        Case(
            "mapping naming a missing header --json",
            [*imp, "--mapping", str(f["mapping"]), "--json"],
            "invalid_mapping",
        ),
        Case(
            "mapping file missing",
            [*imp, "--mapping", str(f["folder"] / "no.yaml")],
            "invalid_mapping",
        ),
        Case("mapping not YAML", [*imp, "--mapping", str(f["bad_yaml"])], "invalid_mapping"),
        Case(
            "outside the import root",
            ["import", "/etc/passwd", *base],
            "outside_import_root",
            {"PLEDGEFLOW_IMPORT_ROOT": str(f["root"])},
        ),
        Case(
            "unreachable Prefect API --json",
            [*imp, "--json"],
            "prefect_unavailable",
            {"PREFECT_API_URL": "http://127.0.0.1:1/api"},
            process=True,
        ),
        Case(
            "retry, unreachable Prefect API",
            ["retry", "999999"],
            "unknown_upload",
            {"PREFECT_API_URL": "http://127.0.0.1:1/api"},
            process=True,
        ),
        Case(
            "status of an unknown upload --json", ["status", "999999", "--json"], "unknown_upload"
        ),
        Case("errors of an unknown upload", ["errors", "999999"], "unknown_upload"),
        Case("retry of an unknown upload --json", ["retry", "999999", "--json"], "unknown_upload"),
        Case("status of a non-number", ["status", "abc"], "", process=True),
        Case(
            "errors --csv of an unknown upload",
            ["errors", "999999", "--csv", "-"],
            "unknown_upload",
        ),
        Case(
            "webhook without a secret",
            ["webhook", "--port", "1"],
            "",
            {"PLEDGEFLOW_WEBHOOK_SECRET": ""},
            process=True,
        ),
        Case("bench of no rows", ["bench", "--rows", "0"], ""),
        Case(
            "bad chunk size setting",
            ["status", "1"],
            "bad_configuration",
            {"PLEDGEFLOW_CHUNK_SIZE": "1"},
        ),
    ]
    for env_name, (env, code) in bad_envs.items():
        # On the SQLite default, `import` and `db upgrade` create the missing file.
        creating = [] if env_name == "no_sqlite_file" else [[*imp, "--json"], ["db", "upgrade"]]
        limits = (
            [["limits", "plan"]] if env_name in ("unreachable_pg", "missing_pg_database") else []
        )
        for command in (
            *creating,
            *limits,
            ["status", "1", "--json"],
            ["errors", "1"],
            ["retry", "1"],
        ):
            # Each kind of bad database setting once as the real console script.
            process = command[0] == ("import" if creating else "status")
            listed.append(Case(f"{env_name}: {command[0]}", command, code, env, process))
    return listed


class _ConsoleScript:
    """What the console script calls: the app itself (its --json handling of usage errors
    lives in its `__call__`), for click's CliRunner."""

    def main(self, args: Sequence[str], prog_name: str, **extra: Any) -> Any:
        return app(args=list(args), prog_name=prog_name, **extra)


def _in_process(case: Case, env: dict[str, str | None], cwd: Path) -> Outcome:
    """Run `case` through the app in this process, with its environment and working folder;
    what a process would print, an escaping exception's traceback included."""
    reread_settings()
    _engine_for.cache_clear()
    try:
        with chdir(cwd):
            result = CliRunner().invoke(
                cast(Command, _ConsoleScript()),
                case.args,
                env={**env, **case.env},
                prog_name="pledgeflow",
                catch_exceptions=True,
            )
    finally:
        reread_settings()
        _engine_for.cache_clear()
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    done = subprocess.CompletedProcess(case.args, result.exit_code, result.stdout, stderr)
    return Outcome(case, done)


@pytest.fixture
def run_cli(sqlite_db: Engine, prefect_harness: None, tmp_path: Path) -> Callable[[Case], Outcome]:
    """Run a case: as the real console script if it says so, else in this process."""
    database = sqlite_db.url.render_as_string(hide_password=False)
    env = {
        **os.environ,
        "PLEDGEFLOW_DATABASE_URL": database,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    env.pop("PLEDGEFLOW_DEBUG", None)

    def run(case: Case) -> Outcome:
        if not case.process:
            return _in_process(
                case, {"PLEDGEFLOW_DATABASE_URL": database, "PLEDGEFLOW_DEBUG": None}, tmp_path
            )
        result = subprocess.run(
            [str(CLI), *case.args],
            env={**env, **case.env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return Outcome(case, result)

    return run


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~15 runs of the console script; ~30 s each on a loaded machine
def test_every_subcommand_refuses_bad_input_briefly_and_stores_nothing(
    run_cli: Callable[[Case], Outcome], sqlite_db: Engine, files: dict[str, Path]
) -> None:
    listed = cases(files)
    assert 10 <= sum(case.process for case in listed) <= len(listed) // 3
    # The console script's runs in the background, the in-process ones (one at a time: they
    # set the environment) meanwhile.
    with ThreadPoolExecutor(max_workers=3) as pool:
        started = {id(c): pool.submit(run_cli, c) for c in listed if c.process}
        here = {id(c): run_cli(c) for c in listed if not c.process}
        outcomes = [here[id(c)] if id(c) in here else started[id(c)].result() for c in listed]

    problems = []
    for outcome in outcomes:
        case, result = outcome.case, outcome.result
        shown = result.stdout + result.stderr
        lines = [line for line in shown.splitlines() if line.strip()]
        if result.returncode == 0:
            problems.append(f"{case.name}: exit 0")
        if "Traceback" in shown or 'File "' in shown:
            problems.append(f"{case.name}: traceback shown:\n{shown}")
        if len(lines) > MAX_LINES:
            problems.append(f"{case.name}: {len(lines)} lines:\n{shown}")
        if case.code and f"{case.code}" not in shown:
            problems.append(f"{case.name}: no {case.code!r} in:\n{shown}")
        if "--json" in case.args and case.args[0] in ("import", "status", "retry"):
            documents = [line for line in result.stdout.splitlines() if line.strip()]
            if len(documents) != 1:
                problems.append(f"{case.name}: stdout is not one JSON document: {result.stdout!r}")
            else:
                error = json.loads(documents[0]).get("error") or {}
                if case.code and error.get("code") != case.code:
                    problems.append(f"{case.name}: JSON error {error}")
    assert not problems, "\n\n".join(problems)
    assert {t: count(sqlite_db, f"SELECT count(*) FROM {t}") for t in STORED} == dict.fromkeys(
        STORED, 0
    )
    assert not (files["nowhere"] / "pledgeflow.db").exists()
    # Refused exits are 2 (nothing done); none of these ran an upload.
    assert {o.result.returncode for o in outcomes} <= {2}, [
        (o.case.name, o.result.returncode) for o in outcomes if o.result.returncode != 2
    ]


def test_debug_shows_the_traceback(run_cli: Callable[[Case], Outcome]) -> None:
    runs = [
        Case("unknown upload", ["status", "999999"], "unknown_upload", process=True),
        Case("unknown upload, debug", ["--debug", "status", "999999"], "", process=True),
        Case("unknown upload, env", ["status", "999999"], "", {"PLEDGEFLOW_DEBUG": "1"}, True),
    ]
    with ThreadPoolExecutor(max_workers=3) as pool:
        quiet, loud, by_env = pool.map(run_cli, runs)

    assert quiet.result.returncode == 2
    assert quiet.result.stderr.splitlines() == [
        "error: unknown_upload: upload 999999 does not exist",
        "  use the upload id that `pledgeflow import` printed",
    ]
    for outcome in (loud, by_env):
        assert outcome.result.returncode != 0
        assert "Traceback" in outcome.result.stderr
        assert "UploadNotFoundError" in outcome.result.stderr
