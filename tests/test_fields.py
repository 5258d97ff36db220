from __future__ import annotations

import json
from pathlib import Path

import pytest
from sklearn.base import clone
from typer.testing import CliRunner

from extract_fixtures import tiny_encoder, toy_receipts
from slmstack import ConfigError, DataError, FieldExample, load
from slmstack.cli.app import app
from slmstack.data.documents import read_field_examples
from slmstack.data.fields import parse_schema
from slmstack.skills.fields import FieldExtractor

SCHEMA = {
    "company": "text",
    "address": "text",
    "date": {"type": "date", "order": "DMY"},
    "total": {"type": "amount", "currency": "MYR", "required": True},
}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="module")
def extractor(encoder_dir: Path) -> FieldExtractor:
    return FieldExtractor(schema=SCHEMA, base=str(encoder_dir)).fit(toy_receipts(30))


def record_key(p):
    fields = {
        k: (f["value"], round(f["confidence"], 4), f.get("line"), f.get("start"), f.get("end"))
        for k, f in p.data.get("fields", {}).items()  # none when the input was empty
    }
    spans = tuple((s.label, s.start, s.end) for s in p.spans)
    return (spans, fields, p.data.get("missing"), p.abstained)


def test_extracts_normalised_values_with_evidence(extractor):
    doc = toy_receipts(40)[37]
    [pred] = extractor.predict([doc.text])
    fields = pred.data["fields"]
    assert fields["company"]["value"] == doc.values["company"]
    day, month, year = doc.values["date"].split("/")
    assert fields["date"]["value"] == f"{year}-{month}-{day}"
    assert fields["total"]["value"] == doc.values["total"]
    assert fields["total"]["currency"] == "MYR"  # from the schema: the receipt shows RM
    for name in ("company", "date", "total"):
        f = fields[name]
        assert doc.text[f["start"] : f["end"]] in doc.text.splitlines()[f["line"]]
        assert 0.5 <= f["confidence"] <= 1.0
    assert pred.data["missing"] == []
    assert {s.label for s in pred.spans} == set(SCHEMA)


def test_missing_fields_are_reported_not_invented(extractor):
    no_date = toy_receipts(40, with_date=False)[36]
    [pred] = extractor.predict([no_date.text])
    assert pred.data["fields"]["date"] == {
        "value": None,
        "missing": True,
        "confidence": pred.data["fields"]["date"]["confidence"],
    }
    assert "date" in pred.data["missing"]
    assert pred.abstained is None  # the date is not required
    # the total is required: without it the record abstains, so a cascade escalates it
    no_total = "\n".join(ln for ln in no_date.text.splitlines() if "TOTAL" not in ln.upper())
    [incomplete] = extractor.predict([no_total])
    assert incomplete.data["fields"]["total"]["missing"] is True
    assert incomplete.abstained == "missing_required"
    assert "required field 'total' not found" in incomplete.warnings
    [empty] = extractor.predict([""])
    assert empty.abstained == "empty_input" and empty.spans == ()


@pytest.mark.parametrize("text", ["", " \n \t\n"])
def test_empty_text_abstains_and_clone_is_unfitted(extractor, text):
    doc = toy_receipts(40)[38].text
    preds = extractor.predict([doc, text])
    assert preds[0].abstained is None and preds[0].data["fields"]["total"]["value"]
    assert preds[1].abstained == "empty_input" and preds[1].confidence == 0.0
    assert "fields" not in preds[1].data and preds[1].spans == ()
    copy = clone(extractor)
    assert copy.get_params() == extractor.get_params() and not copy.is_fitted


def test_schema_of_field_specs_saves_as_plain_dicts(encoder_dir, tmp_path):
    specs = parse_schema(SCHEMA)
    fx = FieldExtractor(schema=specs, base=str(encoder_dir), val_fraction=0.0)
    assert clone(fx).get_params() == fx.get_params()
    fx.fit(toy_receipts(12))
    again = load(fx.save(tmp_path / "fx"))
    assert parse_schema(again.schema) == parse_schema(fx.schema)
    saved = json.loads((tmp_path / "fx" / "config.json").read_text())["params"]["schema"]
    assert saved["total"] == {"type": "amount", "order": "DMY", "currency": "MYR",
                              "required": True}  # fmt: skip
    assert parse_schema(saved) == specs


def test_schema_errors():
    with pytest.raises(ConfigError, match="field 'total' has unknown type 'money'; known types"):
        parse_schema({"total": "money"})
    with pytest.raises(ConfigError, match=r"field 'date': order: .*DMY"):
        parse_schema({"date": {"type": "date", "order": "DD/MM"}})
    with pytest.raises(ConfigError, match="Extra inputs"):
        parse_schema({"date": {"type": "date", "format": "%d"}})
    with pytest.raises(ConfigError, match="currency must be an ISO 4217 code"):
        parse_schema({"total": {"type": "amount", "currency": "euro"}})
    with pytest.raises(ConfigError, match="declares no fields"):
        parse_schema({})
    with pytest.raises(ConfigError, match="field 'total': drop_code applies to text fields only"):
        parse_schema({"total": {"type": "amount", "drop_code": False}})
    with pytest.raises(ConfigError, match="unknown type"):
        FieldExtractor(schema={"x": "blob"}).fit(toy_receipts(4))


def test_training_data_errors(encoder_dir):
    fx = FieldExtractor(schema=SCHEMA, base=str(encoder_dir))
    with pytest.raises(DataError, match=r"values for \['vat'\], which the schema does not"):
        fx.fit([FieldExample("A\n1.00", {"vat": "1.00"})])
    with pytest.raises(DataError, match="no training documents"):
        fx.fit([])
    bad = [FieldExample("ACME\nTOTAL 5.00", {"company": "ACME", "date": "soon"}, "d.jsonl:3")]
    with pytest.raises(
        DataError, match=r"1 true value\(s\) cannot be read .*d.jsonl:3: the true value of "
        r"'date', 'soon': .*--skip-invalid"
    ):  # fmt: skip
        FieldExtractor(schema={"company": "text", "date": "date"}, base=str(encoder_dir)).fit(bad)
    never = [FieldExample("ACME\nTOTAL 5.00", {"total": "7.00"})] * 3
    with pytest.raises(DataError, match="field 'total': no candidate .* matches the true values"):
        FieldExtractor(schema={"total": "amount"}, base=str(encoder_dir)).fit(never)


def test_cli_train_predict_eval(encoder_dir, tmp_path):
    data = tmp_path / "receipts.jsonl"
    data.write_text(
        "".join(json.dumps({"text": r.text, "values": r.values}) + "\n" for r in toy_receipts(24))
    )
    schema = tmp_path / "schema.yaml"
    schema.write_text("company: text\naddress: text\ndate: date\ntotal:\n  type: amount\n")
    out = tmp_path / "skill"
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["train", "fields", str(data), "--schema", str(schema), "--out", str(out),
         "--base", str(encoder_dir), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["val_micro_f1"] > 0.9
    res = runner.invoke(app, ["predict", str(out), toy_receipts(30)[27].text, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["data"]["fields"]["total"]["value"]
    receipt = tmp_path / "receipt.txt"  # a document skill reads a .txt file whole
    receipt.write_text(toy_receipts(30)[27].text)
    res = runner.invoke(app, ["predict", str(out), "--input", str(receipt), "--json"])
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 1 and json.loads(res.stdout)["data"]["fields"]["total"]
    report = load(out).evaluate(data)
    assert report["micro_f1"] > 0.9 and set(report["per_class"]) == set(SCHEMA)
    # an empty document counts as every field missing (it abstains, with no record)
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    empty = tmp_path / "with-empty.jsonl"
    empty.write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"text": "", "values": {"total": "5.00"}}]))
    assert load(out).evaluate(empty)["per_class"]["total"]["support"] == 25
    typo = tmp_path / "typo.jsonl"
    typo.write_text(json.dumps({"text": rows[0]["text"], "values": {"totl": "5.00"}}) + "\n")
    with pytest.raises(DataError, match=r"values for \['totl'\], which the skill's schema"):
        load(out).evaluate(typo)
    bad = tmp_path / "bad.yaml"
    bad.write_text("total: money\n")
    res = runner.invoke(app, ["train", "fields", str(data), "--schema", str(bad), "--out",
                              str(tmp_path / "x")])  # fmt: skip
    assert res.exit_code == 2 and "unknown type 'money'" in res.output
    assert len(read_field_examples(data)) == 24


def test_thresholds_are_tuned_on_held_out_documents():
    import numpy as np

    from slmstack.skills._field_decode import MIN_TUNING_DOCS, tune_thresholds
    from slmstack.skills._field_features import candidates, split_lines

    spec = parse_schema({"total": "amount"})[0]
    docs, gold = [], []
    for i in range(MIN_TUNING_DOCS):
        text = f"SHOP\nTOTAL {i + 1}.00\nCASH 50.00"
        lines = split_lines(text)
        cands = candidates(spec, lines)
        # the right value is ranked first but with a low probability
        p = np.array([0.3, 0.1])
        docs.append((text, lines, cands, p, p))
        gold.append(f"{i + 1}.00")
    answer, extend = tune_thresholds(spec, docs, gold, 0.5)
    assert answer <= 0.3 and extend == 0.5
    assert tune_thresholds(spec, docs[:3], gold[:3], 0.5) == (0.5, 0.5)


def receipts_with_code_beside_name(n: int) -> list[FieldExample]:
    """The toy receipts with the registration number on the name's own line."""
    out = []
    for i, doc in enumerate(toy_receipts(n)):
        lines = doc.text.splitlines()
        lines[0:2] = [f"{lines[0]} ({200000 + i}-K)"]
        values = {k: doc.values[k] for k in ("company", "total")}
        out.append(FieldExample("\n".join(lines), values, doc.source))
    return out


def test_a_registration_number_beside_the_name_is_not_part_of_the_value(encoder_dir):
    from slmstack.data.fields import parse_schema
    from slmstack.skills._field_features import candidates, label_candidates, split_lines

    doc = receipts_with_code_beside_name(1)[0]
    lines = split_lines(doc.text)
    [keep, whole] = parse_schema(
        {"company": "text", "address": {"type": "text", "drop_code": False}}
    )
    name = candidates(keep, lines)[0]
    assert name.value == doc.values["company"]
    assert doc.text[name.start : name.end] == doc.values["company"]  # the span is trimmed
    assert label_candidates(keep, candidates(keep, lines), lines, doc.values["company"], "")[0]
    assert candidates(whole, lines)[0].value == lines[0].text  # drop_code off: whole line
    # Trained on such receipts, the extractor answers the name people write.
    schema = {"company": "text", "total": {"type": "amount", "currency": "MYR"}}
    docs = receipts_with_code_beside_name(34)
    fitted = FieldExtractor(schema=schema, base=str(encoder_dir)).fit(docs[:30])
    for doc in docs[30:]:
        [pred] = fitted.predict([doc.text])
        assert pred.data["fields"]["company"]["value"] == doc.values["company"]


STREETS_2 = ["NO 290, JALAN AIR PANAS,", "LOT 5, JALAN BUNGA RAYA,", "22, JALAN TUN RAZAK,",
             "NO 3, LORONG MAWAR 2,", "NO 88, JALAN PUDU,", "7, JALAN SAGU 18,"]  # fmt: skip
AREAS = ["SETAPAK,", "TAMAN MALURI,", "CHERAS,", "BANDAR BARU,"]
TOWNS_2 = ["53200 KUALA LUMPUR", "81100 JOHOR BAHRU", "10200 PENANG", "80000 MELAKA", "SELANGOR"]
NAMES_2 = [("GOLDEN LEAF", "TRADING SDN BHD"), ("SUNRISE BAKERY",), ("PASAR MINI", "JAYA ENTERPRISE"),
           ("BLUE OCEAN MART",), ("URBAN HARDWARE",), ("HAPPY PETS", "SUPPLIES SDN BHD")]  # fmt: skip


def multi_line_receipts(n: int) -> list[FieldExample]:
    """Names over one or two lines; addresses over two to four lines, a short one inside."""
    out = []
    for i in range(n):
        name = NAMES_2[i % len(NAMES_2)]
        address = [STREETS_2[i % 6]] + [AREAS[i % 4]] * (i % 3 > 0) + [TOWNS_2[i % 5]]
        if i % 4 == 3:
            address.insert(1, "BLOCK A, LEVEL 2,")
        total = f"{10 + i % 17}.{(i * 7) % 100:02d}"
        lines = [*name, f"(REG {300000 + i}-X)", *address, f"TEL: 03-{4000 + i} 5678",
                 f"GST ID: 000{800000 + i}", f"DATE: {1 + i % 28:02d}/0{1 + i % 9}/2018",
                 f"ITEM   {total}", f"TOTAL   {total}", "THANK YOU"]  # fmt: skip
        values = {"company": " ".join(name), "address": " ".join(address), "total": total}
        out.append(FieldExample("\n".join(lines), values, f"multi:{i}:{len(address)}"))
    return out


def test_multi_line_names_and_addresses_are_read_whole(encoder_dir):
    schema = {"company": "text", "address": "text", "total": "amount"}
    docs = multi_line_receipts(48)
    fx = FieldExtractor(
        schema=schema, base=str(encoder_dir), text_decode="spans", group_by="company"
    ).fit(docs[:36])
    assert set(fx.span_weights_) == {"company", "address"}
    right = 0
    for doc, pred in zip(docs[36:], fx.predict([d.text for d in docs[36:]]), strict=True):
        f = pred.data["fields"]
        right += f["company"]["value"].casefold() == doc.values["company"].casefold()
        right += f["address"]["value"].casefold() == doc.values["address"].casefold()
        lines = int(doc.source.rsplit(":", 1)[1])
        if f["address"]["value"].casefold() == doc.values["address"].casefold():
            # the evidence is the lines the value spans, and the span covers them all
            assert f["address"]["evidence"].count(" / ") + 1 == lines
            assert doc.text[f["address"]["start"] : f["address"]["end"]].count("\n") + 1 == lines
    assert right >= 22  # of 24 values, each spanning one to four lines


def test_span_candidates_and_their_labels():
    from slmstack.skills._field_features import candidates, split_lines
    from slmstack.skills._field_spans import label_spans, spans

    [spec] = parse_schema({"address": "text"})
    text = "SHOP\nNO 290, JALAN AIR PANAS,\nSETAPAK,\n53200 KUALA LUMPUR\nTEL: 03-111"
    lines = split_lines(text)
    runs = spans(candidates(spec, lines), max_lines=3)
    assert len(runs) == 3 + 3 + 3 + 2 + 1  # runs of up to 3 lines from each line
    [whole] = [r for r in runs if r.line == 1 and r.n_lines == 3]
    assert text[whole.start : whole.end] == "NO 290, JALAN AIR PANAS,\nSETAPAK,\n53200 KUALA LUMPUR"
    gold = "NO 290, JALAN AIR PANAS, SETAPAK, 53200 KUALA LUMPUR"
    assert [r for r, y in zip(runs, label_spans(spec, runs, gold, ""), strict=True) if y] == [whole]
    # the annotator wrote a full stop where the OCR read a comma: the closest span stands in
    slip = gold.replace("PANAS,", "PANAS.")
    assert [r for r, y in zip(runs, label_spans(spec, runs, slip, ""), strict=True) if y] == [whole]
    assert sum(label_spans(spec, runs, "SOMEWHERE ELSE ENTIRELY, 99999", "")) == 0
    assert sum(label_spans(spec, runs, None, "")) == 0


def test_groups_stay_on_one_side_of_the_held_out_split_and_the_folds(encoder_dir):
    from slmstack.skills._field_fit import tuning_folds
    from slmstack.skills._field_spans import fold_of

    groups = [f"vendor{i % 5}" for i in range(40)]
    [va] = tuning_folds(groups, 1, 0.2, seed=0)
    assert len(va) >= 8 and len({groups[i] for i in va}) < 5
    assert not {groups[i] for i in va} & {g for i, g in enumerate(groups) if i not in va}
    # cross-fitting: every document held out once, its vendor's other receipts with it
    folds = tuning_folds(groups, 3, 0.2, seed=0)
    assert len(folds) == 3 and sorted(i for va in folds for i in va) == list(range(40))
    for va in folds:
        assert not {groups[i] for i in va} & {g for i, g in enumerate(groups) if i not in va}
    assert len(tuning_folds(groups, 9, 0.2, seed=0)) == 5  # no more folds than vendors
    assert tuning_folds(groups[:1], 3, 0.2, seed=0) == []
    fold = fold_of(groups, 3, seed=0)
    assert fold is not None and all(
        len({fold[i] for i in range(40) if groups[i] == g}) == 1 for g in set(groups)
    )
    assert fold_of(groups[:2], 3, seed=0) is None  # two groups cannot fill three folds
    with pytest.raises(ConfigError, match="group_by='vendor' is not a field of the schema"):
        FieldExtractor(schema=SCHEMA, base=str(encoder_dir), group_by="vendor").fit(
            toy_receipts(12)
        )
    few = [  # two vendors only
        FieldExample(d.text + f"\n#{i}", {"company": d.values["company"]})
        for i, d in enumerate(multi_line_receipts(12)[:2] * 3)
    ]
    fx = FieldExtractor(
        schema={"company": "text"}, base=str(encoder_dir), text_decode="spans", group_by="company"
    )
    with pytest.raises(DataError, match="span scoring needs documents from at least 3 groups"):
        fx.fit(few)
    lines = FieldExtractor(schema={"company": "text"}, base=str(encoder_dir), text_decode="lines")
    assert lines.fit(few).span_weights_ == {}  # the line decoding needs no groups


def test_cross_fitted_thresholds_score_every_receipt_once_and_still_read_new_ones(encoder_dir):
    schema = {"company": "text", "address": "text", "total": "amount"}
    docs = multi_line_receipts(48)
    fx = FieldExtractor(schema=schema, base=str(encoder_dir), group_by="company", val_folds=4).fit(
        docs[:36]
    )
    assert fx.metrics_["val_folds"] == 4 and fx.metrics_["n_val"] == 36
    assert 0 < fx.metrics_["val_micro_f1"] <= 1
    one = FieldExtractor(schema=schema, base=str(encoder_dir), group_by="company").fit(docs[:36])
    assert one.metrics_["val_folds"] == 1 and one.metrics_["n_val"] < 36
    right = sum(
        pred.data["fields"][k]["value"] == doc.values[k]
        for doc, pred in zip(docs[36:], fx.predict([d.text for d in docs[36:]]), strict=True)
        for k in ("total",)
    )
    assert right == 12


def test_unreadable_values_are_all_named_and_skip_invalid_drops_and_lists_them(
    encoder_dir, tmp_path
):
    docs = toy_receipts(24)
    rows = [{"text": r.text, "values": dict(r.values)} for r in docs]
    rows[3]["values"]["date"] = "12/28/2019"  # month first under DMY
    rows[9]["values"]["total"] = "n/a"
    data = tmp_path / "receipts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    schema = tmp_path / "schema.yaml"
    schema.write_text("company: text\naddress: text\ndate: {type: date, order: DMY}\n"
                      "total: amount\n")  # fmt: skip
    runner = CliRunner()
    args = ["train", "fields", str(data), "--schema", str(schema), "--base", str(encoder_dir)]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code != 0
    assert "2 true value(s) cannot be read" in res.output  # both named at once
    assert f"{data}:4: the true value of 'date', '12/28/2019'" in res.output
    assert f"{data}:10: the true value of 'total', 'n/a'" in res.output
    assert "--skip-invalid" in res.output and not (tmp_path / "a").exists()
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--skip-invalid", "--json",
                              "--group-by", "company", "--val-folds", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["documents"] == 22 and summary["val_folds"] == 3
    assert [u.split(": the")[0] for u in summary["skipped_invalid"]] == [f"{data}:4", f"{data}:10"]
    assert "skipped" in res.stderr and (tmp_path / "b" / "config.json").is_file()
    assert len(read_field_examples(data)) == 24  # the file is left as it was


def test_drop_unreadable_drops_by_document_not_by_source():
    from slmstack.data.fields import drop_unreadable

    specs = parse_schema({"date": {"type": "date", "order": "DMY"}, "total": "amount"})
    docs = [FieldExample("a", {"date": "28/12/2017", "total": "5.00"}),
            FieldExample("b", {"date": "12/28/2017", "total": "n/a"}),
            FieldExample("c", {"date": "20180304", "total": None})]  # fmt: skip
    kept, bad = drop_unreadable(specs, docs)
    assert [d.text for d in kept] == ["a", "c"]  # the same empty source, only "b" dropped
    assert [(u.source, u.field) for u in bad] == [("document #2", "date"),
                                                  ("document #2", "total")]  # fmt: skip


def test_a_blank_true_value_scores_as_an_absent_field_as_in_training():
    from slmstack.evaluation.extraction import field_metrics
    from slmstack.types import Prediction

    specs = parse_schema({"company": "text", "date": "date"})
    missing = {"value": None, "missing": True}
    pred = Prediction(data={"fields": {"company": missing, "date": missing}})
    # training reads " " as "not in the document"; so must the score: nothing to find
    report = field_metrics(specs, [FieldExample("x", {"company": " ", "date": " "})], [pred])
    assert report["per_field"]["company"]["support"] == 0
    assert report["per_field"]["date"]["support"] == 0
    assert report["micro"]["recall"] == 0.0 and report["micro"]["precision"] == 0.0


def test_a_line_number_counts_newlines_only_as_an_editor_does():
    # pdftotext ends a page with a form feed; str.splitlines counted it as a line break,
    # so every field after a page break named the line before its own as evidence.
    from slmstack.skills._field_features import split_lines

    text = "ACME\n\x0cPage 2\nDate 03/04/2024\nTOTAL\u2028 12.50\r\n"
    lines = split_lines(text)
    assert [ln.text for ln in lines] == ["ACME", "Page 2", "Date 03/04/2024", "TOTAL", "12.50"]
    assert [ln.index for ln in lines] == [0, 1, 2, 3, 3]
    assert all(text[ln.start : ln.end] == ln.text for ln in lines)
