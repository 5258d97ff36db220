import json
import warnings

import pytest

from slmstack import DataError, DataWarning, read_examples
from slmstack.data import drop_duplicates, read_records
from slmstack.data.fields import FieldExample
from slmstack.data.splits import shuffled_groups, stratified_split
from slmstack.data.tagging import TaggedExample
from slmstack.types import Example, Span


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_csv_tsv_jsonl_with_custom_columns(tmp_path):
    csv_file = write(
        tmp_path / "d.csv", "query,intent\nhello there,greet\nhi,greet\nbye,leave\nsee you,leave\n"
    )
    tsv_file = write(
        tmp_path / "d.tsv",
        "query\tintent\nhello, there\tgreet\nhi\tgreet\nbye\tleave\nciao\tleave\n",
    )
    rows = [
        {"q": "a b", "y": "x"},
        {"q": "c d", "y": "x"},
        {"q": "e", "y": "z"},
        {"q": "f", "y": "z"},
    ]
    jsonl_file = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    a = read_examples(csv_file, text_column="query", label_column="intent")
    b = read_examples(tsv_file, text_column="query", label_column="intent")
    c = read_examples(jsonl_file, text_column="q", label_column="y")
    assert [e.label for e in a] == ["greet", "greet", "leave", "leave"]
    assert b[0].text == "hello, there"
    assert c[2].text == "e" and c[2].source.endswith(":3")
    assert a[1].source.endswith("d.csv:3")  # header is line 1


def test_missing_column_names_file_row_and_fix(tmp_path):
    f = write(tmp_path / "d.csv", "text,category\na,x\nb,y\n")
    with pytest.raises(
        DataError, match=r"d\.csv:2: missing label column 'label'.*'category'.*--label-column"
    ):
        read_examples(f)


def test_empty_text_names_row(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\n  ,x\nb,y\nc,y\n")
    with pytest.raises(DataError, match=r"d\.csv:3: empty text"):
        read_examples(f)


def test_label_with_one_example(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\nb,x\nc,y\nd,y\ne,lonely\n")
    with pytest.raises(
        DataError, match=r"d\.csv:6: labels with fewer than 2 examples: 'lonely' \(1\)"
    ):
        read_examples(f)


def test_single_class(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x\nb,x\n")
    with pytest.raises(DataError, match="only one class"):
        read_examples(f)


def test_non_utf8_bytes_name_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes(b"text,label\na,x\nb,x\ncaf\xe9,y\nd,y\n")
    with pytest.raises(DataError, match=r"d\.csv:4: bytes .* are not UTF-8"):
        read_examples(f)


def test_file_too_large_for_memory(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\n" + "some text,x\n" * 100)
    with pytest.raises(DataError, match=r"too large to load into memory.*Split it"):
        read_examples(f, max_bytes=100)


def test_unsupported_suffix_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'"):
        read_examples(write(tmp_path / "d.xlsx", "x"))
    with pytest.raises(DataError, match="no such file"):
        read_examples(tmp_path / "nope.csv")


def test_bad_json_line(tmp_path):
    f = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{oops\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        read_examples(f)


def test_ragged_csv_row(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,x,extra\n")
    with pytest.raises(DataError, match=r"d\.csv:2: row has 3 fields, the header has 2"):
        read_examples(f)


def test_near_duplicates_and_conflicts_warn_with_counts(tmp_path):
    # exact copies (a,x twice more) are not warned about here: every fit drops and reports
    # them; copies that differ in spaces at the ends are kept, so they are (2 of them)
    f = write(tmp_path / "d.csv", 'text,label\na,x\na,x\na,x\n" a",x\n"a ",x\nb,x\nb,y\nc,y\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_examples(f)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert any("2 rows repeat another row's text and label but for spaces" in m for m in messages)
    assert not any("weigh more" in m and m.startswith(("4 ", f"{f}: 4 ")) for m in messages)
    assert any("1 texts appear with conflicting labels" in m for m in messages)


def test_shuffled_groups_keep_each_group_whole_and_depend_only_on_keys_and_seed():
    groups = ["acme", "zeta", "acme", "beta", "zeta", "acme", "gamma"]
    order = shuffled_groups(groups, seed=3)
    assert sorted(i for rows in order for i in rows) == list(range(len(groups)))
    assert all(len({groups[i] for i in rows}) == 1 for rows in order)  # one key per group
    assert len(order) == 4  # every row of a key in one group: a split never cuts one
    assert order == shuffled_groups(groups, seed=3)
    # The same keys in another row order: the same order of keys.
    keys = [groups[rows[0]] for rows in order]
    again = shuffled_groups(list(reversed(groups)), seed=3)
    assert [list(reversed(groups))[rows[0]] for rows in again] == keys
    orders = {tuple(groups[r[0]] for r in shuffled_groups(groups, seed=s)) for s in range(8)}
    assert len(orders) > 1  # the seed matters


def test_stratified_split_keeps_every_class_on_both_sides():
    labels = ["a"] * 10 + ["b"] * 2 + ["c"] * 3
    items = list(range(len(labels)))
    train, val = stratified_split(items, labels, fraction=0.2, seed=1)
    assert sorted(train + val) == items
    assert {labels[i] for i in val} == {"a", "b", "c"}
    assert {labels[i] for i in train} == {"a", "b", "c"}
    assert stratified_split(items, labels, fraction=0.2, seed=1) == (train, val)


def test_semicolon_and_tab_files_named_csv_are_sniffed(tmp_path):
    semi = write(tmp_path / "semi.csv", "text;label\nhello, there;greet\nhi;greet\nbye;leave\n")
    tab = write(tmp_path / "tab.csv", "text\tlabel\nhello; there\tgreet\nhi\tgreet\n")
    comma = write(tmp_path / "comma.tsv", "text,label\nhello there,greet\nhi,greet\n")
    assert [(e.text, e.label) for e in read_examples(semi, validate=False)] == [
        ("hello, there", "greet"),
        ("hi", "greet"),
        ("bye", "leave"),
    ]
    assert read_examples(tab, validate=False)[0].text == "hello; there"
    assert read_examples(comma, validate=False)[1].label == "greet"


def test_one_column_file_keeps_its_semicolons(tmp_path):
    f = write(tmp_path / "q.csv", "text\n" + "where; when\n" * 20)
    assert [r.fields for r in read_records(f)][:1] == [{"text": "where; when"}]


def test_missing_column_names_the_delimiter_seen_in_the_header(tmp_path):
    # Unquoted semicolons in the texts: no delimiter is consistent, so it reads as commas.
    f = write(tmp_path / "d.csv", "text;label\na;x\nb;c;d;y\ne;f;x\ng;h;i;j;y\n")
    with pytest.raises(
        DataError,
        match=r"d\.csv:2: missing text column 'text'.*contains a semicolon \(';'\).*"
        r"read as comma-separated.*quote every field that contains a semicolon",
    ):
        read_examples(f)


def test_ragged_row_names_the_delimiter_seen_in_the_header(tmp_path):
    f = write(tmp_path / "d.csv", "text;label\na, b;x\nc;d;e, f;y\ng,,h;x\n")
    with pytest.raises(DataError, match=r"d\.csv:2: row has 2 fields.*contains a semicolon"):
        read_records(f)


def test_one_megabyte_field_reads(tmp_path):
    big = "word " * 200_000
    f = write(tmp_path / "d.csv", f'text,label\n"{big}",x\nshort,y\n')
    records = read_records(f)
    assert len(records[0].fields["text"]) == len(big) and records[1].fields["label"] == "y"


def test_drop_duplicates_keeps_the_first_of_each_and_warns(tmp_path):
    rows = [
        Example("hi", "greet", "d.csv:2"),
        Example("bye", "leave", "d.csv:3"),
        Example("hi", "greet", "d.csv:4"),  # a copy of line 2
        Example("hi", "leave", "d.csv:5"),  # same text, other label: kept
        Example("hi ", "greet", "d.csv:6"),  # not exact: kept
        Example("hi", "greet", "d.csv:7"),
    ]
    with pytest.warns(DataWarning, match=r"dropped 2 exact duplicate rows of 6.*d\.csv:4"):
        kept, dropped = drop_duplicates(rows)
    assert dropped == 2
    assert [ex.source for ex in kept] == ["d.csv:2", "d.csv:3", "d.csv:5", "d.csv:6"]


def test_drop_duplicates_is_generic():
    pairs = [("a", "x"), ("a", "y"), ("a", "x")]
    with pytest.warns(DataWarning, match="dropped 1"):
        assert drop_duplicates(pairs) == ([("a", "x"), ("a", "y")], 1)
    fields = [
        FieldExample("inv 7", {"total": "7", "date": None}, source="f.jsonl:1"),
        FieldExample("inv 7", {"date": None, "total": "7"}, source="f.jsonl:2"),
        FieldExample("inv 7", {"total": "8"}, source="f.jsonl:3"),
    ]
    with pytest.warns(DataWarning, match="dropped 1"):
        kept, dropped = drop_duplicates(fields)
    assert dropped == 1 and [f.source for f in kept] == ["f.jsonl:1", "f.jsonl:3"]
    tagged = [
        TaggedExample("Ann", (Span("PER", 0, 3, "Ann"),), source="t:1"),
        TaggedExample("Ann", (Span("ORG", 0, 3, "Ann"),), source="t:2"),
        TaggedExample("Ann", (Span("PER", 0, 3, "Ann"),), source="t:3"),
    ]
    with pytest.warns(DataWarning):
        assert drop_duplicates(tagged)[1] == 1


def test_drop_duplicates_without_duplicates_is_silent():
    rows = [Example("a", "x"), Example("b", "x")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert drop_duplicates(iter(rows)) == (rows, 0)


def test_a_misspelt_label_key_is_refused_not_read_as_unlabelled(tmp_path):
    from slmstack.data.documents import read_clause_examples, read_field_examples
    from slmstack.data.tagging import read_span_jsonl

    clauses = tmp_path / "c.jsonl"
    clauses.write_text('{"text": "Venue is Paris.", "label": ["Venue"]}\n')
    with pytest.raises(DataError, match=r"c.jsonl:1: the row has 'label' but no 'labels'"):
        read_clause_examples(clauses)
    fields = tmp_path / "f.jsonl"
    fields.write_text('{"text": "TOTAL 5.00", "value": {"total": "5.00"}}\n')
    with pytest.raises(DataError, match="has 'value' but no 'values'"):
        read_field_examples(fields)
    spans = tmp_path / "s.jsonl"
    spans.write_text('{"text": "Ann lives in Paris", "entities": []}\n')
    with pytest.raises(DataError, match="has 'entities' but no 'spans'"):
        read_span_jsonl(spans)
    clauses.write_text('{"text": "Venue is Paris.", "id": 7}\n')  # other keys are fine
    assert read_clause_examples(clauses)[0].labels == ()


def test_json_labels_are_one_label_per_value_and_never_a_printed_list(tmp_path):
    p = tmp_path / "n.jsonl"
    rows = [{"text": f"t{i}", "label": v} for i, v in enumerate([1, 1.0, 0, 0.0, 0.5, 0.5])]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [ex.label for ex in read_examples(p)] == ["1", "1", "0", "0", "0.5", "0.5"]
    p.write_text('{"text": "a", "label": ["x"]}\n{"text": "b", "label": ["y"]}\n')
    with pytest.raises(DataError, match=r"n.jsonl:1: the label column 'label' holds a JSON list"):
        read_examples(p)


def test_jsonl_text_holding_a_unicode_line_separator_is_one_record(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 and U+0085 raw inside a string; they
    # are not line ends in JSONL (only \n is), so str.splitlines() cut the record in two.
    rows = [{"text": "first\u2028second", "label": "a"}, {"text": "nel\x85here", "label": "b"}]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    records = read_records(path)
    assert [r.fields["text"] for r in records] == ["first\u2028second", "nel\x85here"]
    assert [r.line for r in records] == [1, 2]


def test_a_csv_row_with_a_quoted_newline_keeps_the_line_it_starts_on(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\n"two\nlines",a\n\nnext,b\n')
    assert [r.line for r in read_records(path)] == [2, 5]


def test_a_csv_header_naming_one_column_twice_is_refused(tmp_path):
    # dict(zip(header, row)) kept the last of the two: the other column was lost silently.
    path = write(tmp_path / "d.csv", "text,label,text\nfirst,a,second\n")
    with pytest.raises(DataError, match=r"d\.csv:1: .*'text'.*twice"):
        read_records(path)


def test_saved_jsonl_and_ticket_files_keep_records_with_a_line_separator(tmp_path):
    from slmstack.artifacts import read_jsonl
    from slmstack.retrieval import read_documents

    # A skill's kb.jsonl is written with ensure_ascii=False: an answer pasted from a web
    # page with U+2028 in it made the saved FAQ skill unloadable ("damaged").
    line = json.dumps({"text": "reset\u2028then retry"}, ensure_ascii=False) + "\n"
    path = write(tmp_path / "t.jsonl", line + line)
    assert [r["text"] for r in read_jsonl(path, dict)] == ["reset\u2028then retry"] * 2
    assert [d.source for d in read_documents(path)] == [f"{path}:1", f"{path}:2"]


def test_a_field_that_goes_on_after_its_closing_quote_is_refused_not_changed(tmp_path):
    # csv's lenient mode read '"hi" he said' as 'hi he said': the text changed in silence.
    path = write(tmp_path / "d.tsv", 'text\tlabel\nok\ta\n"hi" he said\tb\n')
    with pytest.raises(DataError, match=r'd\.tsv:3: .*quote.*"""hi"" he said"'):
        read_records(path)


def test_a_quote_never_closed_is_refused_at_the_row_it_opens_not_read_as_the_rest(tmp_path):
    # One column: the open quote swallowed every later row into one text, with no error.
    path = write(tmp_path / "d.csv", 'text\nfirst\n"second\nthird\nfourth\n')
    with pytest.raises(DataError, match=r"d\.csv:3: .*quote.*never closed"):
        read_records(path)


def test_a_header_with_a_stray_quote_is_refused_with_the_fix(tmp_path):
    path = write(tmp_path / "d.csv", '"text" x,label\na,b\n')
    with pytest.raises(DataError, match=r"d\.csv:1: malformed CSV: .*Quote the whole field"):
        read_records(path)
