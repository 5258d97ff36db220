"""``TextClassifier(name_examples=True)``: each label's name is one more example of it."""

import json

import pytest
from typer.testing import CliRunner

from slmstack import DataError, Example, TextClassifier
from slmstack.cli.app import app
from slmstack.skills._label_words import label_words, name_texts

# Three labels whose examples say nothing about them: only the names do.
OPAQUE = [
    Example(text, label)
    for label, texts in {
        "weather_forecast": ["reference 1104", "reference 2207", "reference 3310", "ref 4413"],
        "pizza_delivery": ["case 58-A", "case 69-B", "case 70-C", "case 81-D"],
        "passwordReset": ["item #901", "item #902", "item #903", "item #904"],
    }.items()
    for text in texts
]
QUERIES = {
    "will it rain tomorrow afternoon": "weather_forecast",
    "where is my pepperoni pizza order": "pizza_delivery",
    "I forgot my login password": "passwordReset",
}


def test_label_words_reads_separators_and_camel_case():
    assert label_words("card_arrival") == "card arrival"
    assert label_words("Refund_not_showing_up") == "refund not showing up"
    assert label_words("lostOrStolenCard") == "lost or stolen card"
    assert label_words("top-up/failed.v2") == "top up failed v2"


def test_labels_without_letters_are_refused_with_the_fix():
    with pytest.raises(DataError, match=r"'42'.*name_examples=False"):
        name_texts(["card_arrival", "42"])


def test_names_decide_where_the_examples_say_nothing():
    named = TextClassifier(name_examples=True, scope_alpha=0, seed=0).fit(OPAQUE)
    got = [p.label for p in named.predict(list(QUERIES))]
    assert got == list(QUERIES.values())
    plain = TextClassifier(scope_alpha=0, seed=0).fit(OPAQUE)
    assert [p.label for p in plain.predict(list(QUERIES))] != list(QUERIES.values())


def test_names_are_kept_on_save(tmp_path):
    named = TextClassifier(name_examples=True, scope_alpha=0).fit(OPAQUE)
    named.save(tmp_path / "skill")
    loaded = TextClassifier.load(tmp_path / "skill")
    assert loaded.name_examples is True
    assert [p.label for p in loaded.predict(list(QUERIES))] == list(QUERIES.values())


def test_finetune_trains_on_the_names_as_rows(monkeypatch):
    import slmstack.skills.classifier as classifier

    seen: list[list[str]] = []
    real = classifier.TextClassifier._train

    def spy(self, examples, **kw):
        seen.append([e.text for e in examples])
        return real(self, examples, **kw)

    monkeypatch.setattr(classifier.TextClassifier, "_train", spy)
    clf = TextClassifier(strategy="finetune", name_examples=True, epochs=1, batch_size=8,
                         scope_alpha=0).fit(OPAQUE)  # fmt: skip
    names = ["password reset", "pizza delivery", "weather forecast"]
    assert seen[-1][-3:] == names and len(seen[-1]) == len(OPAQUE) + 3
    clf.resume(OPAQUE[:8])  # the names of the labels resumed on join the rows too
    assert seen[-1][-2:] == ["pizza delivery", "weather forecast"] and len(seen[-1]) == 8 + 2
    plain = TextClassifier(strategy="finetune", epochs=1, batch_size=8, scope_alpha=0)
    plain.fit(OPAQUE)
    assert len(seen[-1]) == len(OPAQUE)


def test_cli_flag_trains_with_names_and_static_base_refuses_it(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in OPAQUE))
    runner = CliRunner()
    out = tmp_path / "skill"
    args = ["train", "classify", str(data), "--out", str(out), "--scope-alpha", "0"]
    result = runner.invoke(app, [*args, "--name-examples"])
    assert result.exit_code == 0, result.output
    assert TextClassifier.load(out).name_examples is True
    static = runner.invoke(app, [*args, "--force", "--base", "static", "--name-examples"])
    assert static.exit_code != 0
    assert "--name-examples needs a transformer --base" in static.output


def test_unreadable_names_are_refused_before_the_encoder_is_tuned(monkeypatch):
    import slmstack.skills.classifier as classifier

    def never(*args, **kwargs):
        raise AssertionError("the encoder was tuned before the names were checked")

    monkeypatch.setattr(classifier, "tune_encoder", never)
    data = [*OPAQUE, *(Example(f"code {i}", "42") for i in range(4))]
    with pytest.raises(DataError, match="'42'"):
        TextClassifier(strategy="fewshot", name_examples=True, scope_alpha=0).fit(data)
