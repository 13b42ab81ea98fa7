"""The benchmark lives apart from the product: no product module imports it, editing it (or any
other code that does not shape rows) keeps every row cache key, and `pledgeflow bench` says in
one line when it is not installed."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pledgeflow.chunk_digest import ROW_MODULES
from pledgeflow.source_digest import PRODUCT, module_closure

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (*sorted(PRODUCT), "pledgeflow_bench")

# A row cache key of one chunk, computed by the code of the tree the process runs from.
KEY = """
from pledgeflow.row_cache import RowCache
cache = RowCache("redis://127.0.0.1:1/0", "test", 60)
print(cache.key(data_digest=b"chunk", first_row=1, shop="s.example.com", platform=None,
                mapping=None, currency=None, encoding="utf-8"))
"""


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_product_module_imports_the_benchmark() -> None:
    product = [p for package in sorted(PRODUCT) for p in (ROOT / package).rglob("*.py")]
    assert len(product) > 50
    importing = [
        str(path.relative_to(ROOT))
        for path in product
        if any(name.split(".")[0] == "pledgeflow_bench" for name in _imports(path))
    ]
    assert importing == []
    # Nor does the text of a product module name it (an importlib call with its name).
    assert [p for p in product if b"pledgeflow_bench" in p.read_bytes()] == []


def test_the_code_that_shapes_rows_is_the_mapping_and_staging_not_the_status_bench_or_cli() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in module_closure(ROW_MODULES, ROOT)}

    assert {
        "pledgeflow/chunk_rows.py",
        "pledgeflow/transform.py",
        "pledgeflow/values.py",
        "pledgeflow/dates.py",
        "pledgeflow/row_cache.py",
        "pledgeflow/writers/stages.py",
        "schemas/platforms.py",
        "schemas/kickstarter.py",
    } <= files
    assert (
        not {
            "pledgeflow/status.py",
            "pledgeflow/chunks.py",
            "pledgeflow/settlement.py",
            "pledgeflow/uploads.py",
            "pledgeflow/writers/chunk.py",
            "pledgeflow/writers/pledges.py",
            "pledgeflow/cli.py",
            "deployments/webhook.py",
            "flows/process_upload.py",
        }
        & files
    )
    assert not any(name.startswith("pledgeflow_bench/") for name in files)


def _key(tree: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-P", "-c", KEY],
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.slow
def test_editing_the_benchmark_keeps_every_row_cache_key(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    caches = shutil.ignore_patterns("__pycache__")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=caches)
    before = _key(tree)
    assert before.startswith("test:rows:")

    for name in ("bench.py", "exports.py", "baselines.py"):
        with (tree / "pledgeflow_bench" / name).open("a") as handle:
            handle.write("\n# edited\nTUNED = 2\n")
    # Nor does the code around the rows: the CLI, the state machine and aggregation, a chunk's
    # claim, the writers' statements (a cached chunk runs them too).
    for name in ("cli.py", "status.py", "chunks.py", "writers/pledges.py"):
        with (tree / "pledgeflow" / name).open("a") as handle:
            handle.write("\n# edited\n")
    assert _key(tree) == before

    # The same edit to the code that maps rows is a new key, and to a platform's layout another
    # one: the test can tell.
    with (tree / "pledgeflow" / "transform.py").open("a") as handle:
        handle.write("\n# edited\n")
    mapped = _key(tree)
    assert mapped != before
    with (tree / "schemas" / "kickstarter.py").open("a") as handle:
        handle.write("\n# edited\n")
    assert _key(tree) not in {before, mapped}


def test_bench_without_its_package_says_so_in_one_line() -> None:
    # The benchmark package cannot be imported: the CLI's `bench` stands in with one line.
    code = (
        "import sys; sys.modules['pledgeflow_bench'] = None; sys.argv = ['pledgeflow', 'bench', "
        "'--rows', '100']; from pledgeflow.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: pledgeflow bench is not installed: pip install -e '.[bench]' in a checkout"
    ]
