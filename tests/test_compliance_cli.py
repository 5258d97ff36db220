"""``slmstack train comply`` and ``slmstack comply``: reports, and one clear error each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from extract_fixtures import tiny_encoder
from slmstack.cli.app import app
from test_compliance import PACK, nda, training

runner = CliRunner()
CHOICE = {
    "entailed": "Entailment",
    "contradicted": "Contradiction",
    "not_mentioned": "NotMentioned",
}


def contractnli_json(path: Path) -> Path:
    docs = training()
    hyps = sorted({h for d in docs for h in d.labels})
    keys = {h: f"h-{i}" for i, h in enumerate(hyps)}
    body = {
        "labels": {keys[h]: {"hypothesis": h, "short_description": h[:20]} for h in hyps},
        "documents": [
            {"id": i, "text": d.text, "spans": [list(s) for s in d.spans],
             "annotation_sets": [{"annotations": {
                 keys[h]: {"choice": CHOICE[a.verdict], "spans": list(a.evidence)}
                 for h, a in d.labels.items()}}]}
            for i, d in enumerate(docs)
        ],
    }  # fmt: skip
    path.write_text(json.dumps(body))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("comply")
    encoder = tiny_encoder(root / "encoder")
    pack = root / "tiny.yaml"
    pack.write_text(PACK)
    data = contractnli_json(root / "train.json")
    result = runner.invoke(app, ["train", "comply", str(data), "--out", str(root / "model"),
                                 "--pack", str(pack), "--base", str(encoder),
                                 "--set", "val_fraction=0.25", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["documents"] == len(training()) and "val_accuracy" in summary
    return root / "model", pack


def test_comply_writes_json_and_self_contained_html(trained, tmp_path: Path):
    model, pack = trained
    docs = []
    for i, (use, share) in enumerate(["CE", "EN"]):
        path = tmp_path / f"nda{i}.txt"
        # the second file has Windows line ends (offsets count its \r too) and a byte-order
        # mark (dropped, as `predict` drops it: offsets count from the text after it)
        body = nda(200 + i, use, share).text.replace("\n", "\r\n" if i else "\n").encode()
        path.write_bytes(b"\xef\xbb\xbf" * i + body)
        docs.append(path)
    out = tmp_path / "report"
    result = runner.invoke(app, ["comply", *map(str, docs), "--pack", str(pack),
                                 "--model", str(model), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["pack"] == "tiny-nda" and len(report["documents"]) == 2
    first = report["documents"][0]
    use = next(r for r in first["rules"] if r["id"] == "limited-use")
    assert use["verdict"] in ("entailed", "contradicted", "not_mentioned")
    assert use["flag"] in ("ok", "missing", "violated", "needs_review")
    assert {r["id"] for r in first["rules"]} == {"limited-use", "employees"}
    for doc, record in zip(docs, report["documents"], strict=True):
        text = doc.read_bytes().decode("utf-8-sig")
        for rule in record["rules"]:
            for e in rule["evidence"]:
                assert text[e["start"] : e["end"]] == e["text"]
    page = (out / "report.html").read_text()
    assert "<mark" in page and "limited-use" in page
    assert "<script" not in page and "http" not in page  # no CDN, nothing loaded
    failing = runner.invoke(app, ["comply", str(docs[0]), "--pack", str(pack), "--model",
                                  str(model), "--out", str(out), "--fail-on", "needs_review"])  # fmt: skip
    assert failing.exit_code == 1


def test_bad_inputs_are_one_clear_error(trained, tmp_path: Path):
    model, pack = trained
    doc = tmp_path / "a.txt"
    doc.write_text(nda(1, "E", "E").text)
    out = str(tmp_path / "o")
    cases = [
        (["comply", str(doc), "--pack", str(pack), "--out", out], "need a trained checker: pass --model"),
        (["comply", str(tmp_path / "missing.txt"), "--pack", str(pack), "--model", str(model),
          "--out", out], "missing.txt does not exist"),
        (["comply", str(doc), "--pack", "payment-terms", "--out", out], "pass --fields DIR"),
        (["comply", str(doc), "--pack", "payment-terms", "--fields", str(model), "--out", out],
         "is a ComplianceChecker, not a FieldExtractor"),
        (["comply", str(doc), "--pack", str(tmp_path / "nope.yaml"), "--out", out], "shipped pack"),
        (["comply", str(doc), "--pack", str(pack), "--model", str(model), "--out", out,
          "--fail-on", "bad"], "--fail-on must be one of"),
    ]  # fmt: skip
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    cases.append((["comply", str(empty), "--pack", str(pack), "--model", str(model), "--out", out],
                  "is empty"))  # fmt: skip
    bad_pack = tmp_path / "bad.yaml"
    bad_pack.write_text(
        "name: x\nrules:\n  - id: a\n    hypothesis: abc\n    require: maybe\n    source: s\n"
    )
    cases.append((["comply", str(doc), "--pack", str(bad_pack), "--model", str(model), "--out", out],
                  "bad.yaml:5: rules[0].require: 'maybe' is not allowed"))  # fmt: skip
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.json").write_text('{"my": "data"}')
    cases.append((["comply", str(doc), "--pack", str(pack), "--model", str(model), "--out",
                   str(mine)], "is not a compliance report, so --out will not overwrite it"))  # fmt: skip
    cases.append((["comply", str(doc), "--pack", str(pack), "--model", str(model), "--out",
                   str(model)], "lies inside the saved skill"))  # fmt: skip
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (message, result.output)
        assert result.output.count("error:") == 1


def test_a_checker_that_never_saw_a_rule_says_so_in_every_report(trained, tmp_path: Path):
    # The checker warns that verdicts on hypotheses it was never trained on are guesses;
    # `comply` dropped the warning, so a gdpr-art28 run on an NDA checker looked as sure
    # as any other in the table, report.json and report.html.
    model, _ = trained
    pack = tmp_path / "new.yaml"
    pack.write_text("name: new\nrules:\n  - id: breach\n    hypothesis: The processor shall "
                    "notify the controller of a breach.\n    require: entailed\n    source: s\n")  # fmt: skip
    doc = tmp_path / "a.txt"
    doc.write_text(nda(1, "E", "E").text)
    out = tmp_path / "report"
    result = runner.invoke(app, ["comply", str(doc), "--pack", str(pack), "--model", str(model),
                                 "--out", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "never saw in training" in result.stderr
    assert json.loads(result.stdout)["documents"][0]["warnings"]
    record = json.loads((out / "report.json").read_text())["documents"][0]
    assert any("['breach']" in w and "guesses" in w for w in record["warnings"])
    assert "never saw in training" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "is a PDF, not text; convert it to text"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xdf\xa4", "is a zipped office file"),
        ("NDA: the Recipient shall".encode("utf-16"), "is UTF-16 text; re-save it as UTF-8"),
        ("NDA: the Recipient shall".encode("utf-16-le"), "holds NUL bytes"),
    ],
)
def test_a_document_that_is_not_text_names_its_format(trained, tmp_path: Path, raw, message):
    # A PDF or a .docx got "Re-save the file as UTF-8 (iconv -f latin1 ...)", which turns
    # it into garbage that is then checked; UTF-16 without a byte-order mark decodes as
    # UTF-8 (ASCII and NULs) and was checked as is, every rule missing.
    model, pack = trained
    doc = tmp_path / "contract.bin"
    doc.write_bytes(raw)
    result = runner.invoke(app, ["comply", str(doc), "--pack", str(pack), "--model", str(model),
                                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "latin1" not in result.output
