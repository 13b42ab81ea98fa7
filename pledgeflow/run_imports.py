"""What an upload's flow run would otherwise load in the middle of its first run, loaded with the
flows instead: once per process, before any clock a caller starts, and in a worker's warm
parent (`warm_start`) before it forks the runs.

Measured on the first 10,000-row import of a process (thread CPU inside the run): Prefect's
`Flow.serialize_parameters` imported FastAPI and Starlette for `jsonable_encoder` (0.10 s),
pandera registered its pandas backends on the first validation (0.09 s; with hypothesis
installed, as in dev installs, it also imports hypothesis' strategies), and `Flow.__call__`
imported the flow engine and the graph visualisation (graphviz).
"""

from __future__ import annotations

import importlib
from functools import cache

import pandas as pd
from pandera.api.pandas.container import DataFrameSchema

# Imported by Prefect inside a flow or task call, not when `prefect` is imported.
RUN_MODULES = (
    "fastapi.encoders",  # Flow.serialize_parameters
    "prefect.flow_engine",  # Flow.__call__
    "prefect.task_engine",  # Task.__call__
    "prefect.utilities.visualization",  # Flow.__call__ (graphviz)
)


@cache
def load_run_modules() -> None:
    """Import the modules a flow run imports on first use, and register pandera's backends for
    pandas frames (what its first `validate` does). Starts no thread and opens no socket, so
    a warm parent may still fork after it."""
    for name in RUN_MODULES:
        importlib.import_module(name)
    DataFrameSchema.register_default_backends(pd.DataFrame)
