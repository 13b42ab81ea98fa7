"""Run by tests/test_warm_start.py where a flow run's `python -m prefect.engine` would run: it
reports what the process was given, then sleeps or exits with the code it was asked for."""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    report = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": os.getcwd(),
        "run": os.environ.get("PREFECT__PROBE_RUN"),
        "mark": os.environ.get("PLEDGEFLOW_PROBE_MARK"),
        "preloaded": "flows.process_upload" in sys.modules,
    }
    print(json.dumps(report), flush=True)
    print(f"probe {report['run']} on stderr", file=sys.stderr, flush=True)
    if os.environ.get("PREFECT__PROBE_SLEEP"):
        time.sleep(120)
    raise SystemExit(int(os.environ.get("PREFECT__PROBE_EXIT", "0")))


if __name__ == "__main__":
    main()
