"""The JSON text pledgeflow writes into json and jsonb columns."""

from __future__ import annotations

import json

import pytest

from pledgeflow.database import dumps_json


@pytest.mark.parametrize(
    "value",
    [
        {"rejected": [{"row": 1, "value": "caf\u00e9 \U0001f600"}], "error": None},
        # A lone surrogate can reach a rejected row's value from a web app's chunk JSON, and
        # a web app may keep integers over 64 bits in stats: orjson refuses both.
        {"value": "x\ud800"},
        {"stats": 2**70},
        {1: "non-text keys become text, as with the json module"},
    ],
)
def test_what_is_written_reads_back_as_the_json_module_would_write_it(value: object) -> None:
    assert json.loads(dumps_json(value)) == json.loads(json.dumps(value))
