"""``read_log``: the one reader of the append-only JSONL files a killed run resumes."""

from __future__ import annotations

import json

import pytest

from slmstack.data.jsonl_log import read_log
from slmstack.distill import TeacherCache
from slmstack.distill.cache import TeacherLabel
from slmstack.errors import DataError


def row(obj):
    if not isinstance(obj, dict) or "id" not in obj:
        raise KeyError("id")
    return obj["id"]


def read(path, **kw):
    return read_log(path, row, kind="a result file", fix="pass another --output", **kw)


def test_a_torn_last_line_after_rows_is_cut_so_the_next_append_starts_clean(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "ans')
    assert read(path) == [1, 2]
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'


def test_a_whole_last_row_without_its_newline_is_kept_and_given_one(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}')
    assert read(path) == [1, 2]
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'


def test_a_teacher_cache_whose_last_label_lacks_its_newline_stays_readable(tmp_path):
    path = tmp_path / "labels.jsonl"
    first = TeacherLabel("k1", "card", 0.9, 10, 1, 5)
    path.write_text(json.dumps(first.__dict__))  # written by hand, or by a partial flush
    cache = TeacherCache(path)
    cache.add([TeacherLabel("k2", "refund", 0.8, 10, 1, 5)])
    again = TeacherCache(path)  # the second label went on a line of its own
    assert again.get("k1") == first and again.get("k2") is not None and len(again) == 2


def test_a_file_of_other_text_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("my notes\nmore notes")
    with pytest.raises(DataError, match=r"notes.txt:1: is not a result file .*another --output"):
        read(path)
    assert path.read_text() == "my notes\nmore notes"
    path.write_text('{"id": 1}\nnot json\n{"id": 3}\n')  # damage after rows, not a torn tail
    with pytest.raises(DataError, match=r":2: is damaged"):
        read(path)
    path.write_text('{"id": 1}\nthe end')  # an unterminated tail that opens no row
    with pytest.raises(DataError, match=r":2: is damaged"):
        read(path)
    assert path.read_text() == '{"id": 1}\nthe end'


def test_a_torn_first_line_is_cut_only_when_it_opens_like_a_row(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1, "ans')
    with pytest.raises(DataError, match="is not a result file"):
        read(path)  # nothing before it says this file is ours
    assert read(path, opening=b'{"id"') == [] and path.read_text() == ""


def test_an_error_the_parser_raises_itself_passes_through(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1}\n')

    def strict(obj):
        raise DataError("written for another input")

    with pytest.raises(DataError, match="^written for another input$"):
        read_log(path, strict, kind="x", fix="y")
