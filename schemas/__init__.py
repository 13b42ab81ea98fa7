"""Table models, pandera frame models and platform column maps: one source of names and types."""

import sys
import types


def _pandera_without_dask_frames() -> None:
    """The first time a pandera model builds its schema, pandera asks which dataframe libraries
    are installed by importing them; dask comes with prefect-dask (the optional Dask task
    runner), and importing `dask.dataframe` costs about 0.5 s of CPU in every flow-run process
    for frames that are all pandas. pandera's dask typing module is replaced by one saying dask
    has no dataframes here, before anything imports it."""
    if "pandera.typing.dask" not in sys.modules:
        stub = types.ModuleType("pandera.typing.dask", "Stands in for pandera's dask typing.")
        stub.DASK_INSTALLED = False  # type: ignore[attr-defined]
        sys.modules["pandera.typing.dask"] = stub


_pandera_without_dask_frames()
