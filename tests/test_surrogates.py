"""A JSONL line may escape half of a UTF-16 pair ("\\ud83d"); no UTF-8 output can hold it."""

from __future__ import annotations

import json

import pytest

from slmstack.batchjob.inputs import read_rows
from slmstack.data.readers import read_records
from slmstack.data.utf8 import lone_surrogate
from slmstack.errors import DataError
from slmstack.workflows.batch import read_inputs

LINES = [
    '{"text": "fine \\ud83d\\ude00 pair", "label": "a"}',  # a whole pair: an emoji
    '{"text": "half \\ud83d of it", "label": "b"}',
]


def write(tmp_path, lines):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_lone_surrogate_finds_half_pairs_anywhere_and_passes_whole_ones():
    assert lone_surrogate(LINES[0], json.loads(LINES[0])) is None
    assert "\\ud83d" in lone_surrogate(LINES[1], json.loads(LINES[1]))
    nested = '{"meta": [{"\\udc00": 1}]}'
    assert lone_surrogate(nested, json.loads(nested)) is not None


def test_training_and_run_readers_name_the_row(tmp_path):
    path = write(tmp_path, LINES)
    with pytest.raises(DataError, match=r"in\.jsonl.*2.*lone UTF-16 surrogate"):
        read_records(path)
    with pytest.raises(DataError, match=r"in\.jsonl.*2.*lone UTF-16 surrogate"):
        read_inputs(path)


def test_a_batch_job_fails_only_that_row(tmp_path):
    rows = read_rows(write(tmp_path, LINES))
    assert rows[0].error == "" and rows[0].text == "fine \U0001f600 pair"
    assert "lone UTF-16 surrogate" in rows[1].error
    rows[1].text.encode("utf-8")  # the raw line, writable to the job's error output
