"""Distillation: labels bought once, resumed after a crash, costed exactly, student measured."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import pytest

from fixtures import INTENTS
from slmstack import TextClassifier
from slmstack.distill import TeacherCache, distill, teacher_id, text_key
from slmstack.errors import DataError, DataWarning
from slmstack.skills.base import Skill, Tensors
from slmstack.types import Prediction, Usage

TEXTS = [t for texts in INTENTS.values() for t in texts] * 2  # 48 texts
GOLD = [label for label, texts in INTENTS.items() for _ in texts] * 2


class KeywordTeacher(Skill):
    """A stand-in LLM: right on keywords, abstains on nothing, 100 tokens in, 3 out."""

    skill_name = "tests.KeywordTeacher.v1"
    produces = frozenset({"label"})

    def __init__(self, *, fail_after: int = -1):
        self.fail_after = fail_after

    def fit(self, examples: Sequence[Any]) -> Self:
        self.provenance_ = self._provenance()
        self.calls = 0
        return self

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        if self.fail_after >= 0 and self.calls >= self.fail_after:
            raise ConnectionError("the LLM went away")
        self.calls += 1
        out = []
        for t in texts:
            label = (
                "card" if "card" in t else "refund" if "refund" in t or "money" in t else "password"
            )
            out.append(Prediction(label=label, confidence=0.9,
                                  usage=Usage(input_tokens=100, output_tokens=3)))  # fmt: skip
        return out

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        return {}, {}

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        pass


def cost_of(pred: Prediction, seconds: float) -> int:
    # gpt-4 list prices: $0.03 / 1k in, $0.06 / 1k out, in nano-dollars
    return pred.usage.input_tokens * 30_000 + pred.usage.output_tokens * 60_000


def student() -> TextClassifier:
    return TextClassifier(strategy="head", scope_alpha=0.0)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        yield


def test_distill_reports_agreement_gold_accuracy_and_exact_cost(tmp_path):
    cache = TeacherCache(tmp_path / "labels.jsonl")
    teacher = KeywordTeacher().fit([])
    ident = teacher_id(teacher.skill_name, teacher.get_params())
    report = distill(teacher, student(), TEXTS, cache=cache, identity=ident, cost_of=cost_of,
                     gold=GOLD, batch_size=8)  # fmt: skip
    per_call = Decimal("0.00318")  # 100 × 0.03/1000 + 3 × 0.06/1000
    assert report.teacher_cost_usd == per_call * len(set(TEXTS))  # a repeated text is paid once
    assert report.teacher_cost_this_run_usd == report.teacher_cost_usd
    assert report.teacher_labels_bought == len(set(TEXTS))
    assert report.held_out_texts + report.train_texts == len(TEXTS)
    assert 0.0 <= report.agreement_with_teacher <= 1.0
    assert report.teacher_gold_accuracy is not None and report.student_gold_accuracy is not None

    again = KeywordTeacher().fit([])
    second = distill(again, student(), TEXTS, cache=TeacherCache(tmp_path / "labels.jsonl"),
                     identity=ident, cost_of=cost_of, gold=GOLD)  # fmt: skip
    assert again.calls == 0 and second.teacher_labels_bought == 0
    assert second.teacher_cost_this_run_usd == 0
    assert second.teacher_cost_usd == report.teacher_cost_usd


def test_an_interrupted_run_resumes_and_pays_only_for_the_rest(tmp_path):
    path = tmp_path / "labels.jsonl"
    teacher = KeywordTeacher(fail_after=2).fit([])
    ident = teacher_id(teacher.skill_name, {})
    with pytest.raises(ConnectionError):
        distill(teacher, student(), TEXTS, cache=TeacherCache(path), identity=ident,
                cost_of=cost_of, batch_size=8)  # fmt: skip
    assert len(TeacherCache(path)) == 16  # two batches were written before the failure
    with path.open("a") as f:
        f.write('{"key": "torn')  # a crash in the middle of a line
    resumed = KeywordTeacher().fit([])
    report = distill(resumed, student(), TEXTS, cache=TeacherCache(path), identity=ident,
                     cost_of=cost_of, batch_size=8)  # fmt: skip
    assert report.teacher_labels_bought == len(set(TEXTS)) - 16
    # the torn line was cut off, so the labels bought after it read back, every one
    assert '"torn' not in path.read_text() and len(TeacherCache(path)) == len(set(TEXTS))


def test_another_teacher_never_reuses_labels(tmp_path):
    a = text_key(teacher_id("x.Teacher.v1", {"model": "gpt-4"}), "hello")
    b = text_key(teacher_id("x.Teacher.v1", {"model": "gpt-4o"}), "hello")
    assert a != b


def test_too_little_data_is_refused(tmp_path):
    with pytest.raises(DataError, match="at least 10 texts"):
        distill(KeywordTeacher().fit([]), student(), TEXTS[:3],
                cache=TeacherCache(tmp_path / "c.jsonl"), identity="t", cost_of=cost_of)  # fmt: skip


ROW = ('{"key": "k", "label": "a", "confidence": 1, "tokens_in": 1, "tokens_out": 1, '
       '"cost_nano_usd": 1}')


def test_a_damaged_cache_line_names_the_file_and_row(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(ROW + "\nnot json\n" + ROW + "\n")
    with pytest.raises(DataError, match=r"labels.jsonl:2: is damaged"):
        TeacherCache(path)
    worded = ROW.replace('"confidence": 1', '"confidence": "high"')
    path.write_text(ROW + "\n" + worded + "\n")
    with pytest.raises(DataError, match=r"labels.jsonl:2: is damaged .*'confidence' must be"):
        TeacherCache(path)
    # a complete last line edited by hand is damage, not a torn write: never cut silently
    quoted = ROW.replace('"label": "a"', "'label': 'a'")
    path.write_text(ROW + "\n" + quoted + "\n")
    with pytest.raises(DataError, match=r"labels.jsonl:2: is damaged"):
        TeacherCache(path)


def test_a_file_that_is_no_cache_is_refused_and_kept(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes about the run")  # no newline: it looks torn, but holds no label
    with pytest.raises(DataError, match="notes.txt:1: is not a teacher cache"):
        TeacherCache(notes)
    assert notes.read_text() == "my notes about the run"


def test_cli_distills_from_a_saved_llm_teacher(tmp_path):
    """End to end: an LLMClassifier on a scripted backend teaches a TextClassifier."""
    import json as _json

    from typer.testing import CliRunner

    from slmstack.cli.app import app
    from slmstack.skills.llm_classifier import LLMClassifier
    from slmstack.types import Example
    from test_llm_skills import ScriptedLLM  # noqa: F401  (registers the runtime test-llm)

    seed = [("my card is missing", "card"), ("card not here", "card"), ("refund please", "refund"),
            ("money back", "refund"), ("reset password", "password"),
            ("forgot password", "password")]  # fmt: skip
    teacher = LLMClassifier(model="classify", runtime="test-llm", retriever="tfidf", k=2,
                            n_samples=2)  # fmt: skip
    teacher.fit([Example(t, lab) for t, lab in seed])
    teacher.save(tmp_path / "teacher")
    rows = ["text,gold"] + [f"{t},{g}" for t, g in zip(TEXTS, GOLD, strict=True)]
    (tmp_path / "texts.csv").write_text("\n".join(rows) + "\n")
    onto_teacher = CliRunner().invoke(app, [
        "distill", str(tmp_path / "texts.csv"), "--teacher", str(tmp_path / "teacher"),
        "--out", str(tmp_path / "x" / ".." / "teacher"), "--force",
    ])  # fmt: skip
    assert onto_teacher.exit_code != 0 and "is the teacher's folder" in onto_teacher.output
    assert (tmp_path / "teacher" / "config.json").is_file()
    cache_inside = CliRunner().invoke(app, [
        "distill", str(tmp_path / "texts.csv"), "--teacher", str(tmp_path / "teacher"),
        "--out", str(tmp_path / "s2"), "--cache", str(tmp_path / "s2" / "labels.jsonl"),
    ])  # fmt: skip
    assert cache_inside.exit_code == 2 and "lies inside --out" in cache_inside.output
    assert not (tmp_path / "s2").exists()  # refused before any label was bought
    result = CliRunner().invoke(app, [
        "distill", str(tmp_path / "texts.csv"), "--teacher", str(tmp_path / "teacher"),
        "--out", str(tmp_path / "student"), "--gold-column", "gold", "--set", "scope_alpha=0",
        "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = _json.loads(result.output[result.output.index("{") :])
    assert report["teacher_labels_bought"] == len(set(TEXTS))
    assert (tmp_path / "student" / "config.json").is_file()
    assert Decimal(report["teacher_cost_usd"]) >= 0


def test_the_teacher_identity_ignores_the_connection_but_not_the_demonstrations():
    a = teacher_id("k", {"model": "qwen", "backend_options": {"base_url": "http://a:1/v1"}}, "d1")
    b = teacher_id("k", {"model": "qwen", "backend_options": {"base_url": "http://a:2/v1"}}, "d1")
    c = teacher_id("k", {"model": "qwen", "backend_options": {"base_url": "http://a:1/v1"}}, "d2")
    assert a == b and a != c


def test_gold_seed_examples_join_the_teacher_labels(tmp_path):
    from slmstack.types import Example

    clf = student()
    distill(KeywordTeacher().fit([]), clf, TEXTS, cache=TeacherCache(tmp_path / "c.jsonl"),
            identity="t", cost_of=cost_of, labelled=[Example("lost my pin code", "pin"),
                                                     Example("pin blocked", "pin")])  # fmt: skip
    assert "pin" in clf.classes_


class GarbageTeacher(KeywordTeacher):
    """A teacher behind a broken server: every answer is unusable."""

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls += 1
        return [Prediction(abstained="invalid_output", usage=Usage(input_tokens=100))
                for _ in texts]  # fmt: skip


def test_abstentions_are_explained_and_bought_again_once_the_teacher_is_fixed(tmp_path):
    path = tmp_path / "labels.jsonl"
    ident = teacher_id(KeywordTeacher.skill_name, {})
    with pytest.raises(DataError, match=r"abstained: \d+ invalid_output.*labels.jsonl.*--retry"):
        distill(GarbageTeacher().fit([]), student(), TEXTS, cache=TeacherCache(path),
                identity=ident, cost_of=cost_of)  # fmt: skip
    fixed = KeywordTeacher().fit([])
    report = distill(fixed, student(), TEXTS, cache=TeacherCache(path), identity=ident,
                     cost_of=cost_of, retry_abstained=True)  # fmt: skip
    assert report.teacher_labels_bought == len(set(TEXTS)) and report.train_texts > 0
    # the failed first attempt was paid for too: the total keeps it
    assert report.teacher_cost_usd > report.teacher_cost_this_run_usd > 0
    assert all(label.label for label in TeacherCache(path)._labels.values())
    with pytest.raises(DataError, match=r"min_confidence must be in \[0, 1\]; got 2"):
        distill(fixed, student(), TEXTS, cache=TeacherCache(path), identity=ident,
                cost_of=cost_of, min_confidence=2)  # fmt: skip


class RecordingStudent(KeywordTeacher):
    """A student that keeps the texts it trained on and the texts it was asked about."""

    def fit(self, examples: Sequence[Any]) -> Self:
        self.trained = [ex.text for ex in examples]
        return super().fit(examples)

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.asked = list(texts)
        return super()._predict(texts)


def test_a_repeated_text_is_never_both_trained_on_and_held_out(tmp_path):
    # TEXTS holds every text twice: split by row, a copy of a held-out text would be in
    # training and the agreement with the teacher would score memory, not the student.
    clf = RecordingStudent().fit([])
    report = distill(KeywordTeacher().fit([]), clf, TEXTS, cache=TeacherCache(tmp_path / "c.jsonl"),
                     identity="t", cost_of=cost_of)  # fmt: skip
    assert clf.asked and not set(clf.asked) & set(clf.trained)
    assert report.held_out_texts + report.train_texts == len(TEXTS)
    assert report.held_out_texts == len(clf.asked)


def test_two_runs_on_one_cache_never_buy_the_same_labels(tmp_path):
    from slmstack.distill import label_with_teacher

    path = tmp_path / "labels.jsonl"
    first, second = TeacherCache(path), TeacherCache(path)  # two processes, same --cache
    a, b = KeywordTeacher().fit([]), KeywordTeacher().fit([])
    _, bought = label_with_teacher(a, TEXTS, first, identity="t", cost_of=cost_of)
    assert bought == len(set(TEXTS))
    # the second run opened the cache before the first bought: it reads it again
    _, bought = label_with_teacher(b, TEXTS, second, identity="t", cost_of=cost_of)
    assert bought == 0 and b.calls == 0
    with first.locked(), pytest.raises(DataError, match="locked.*another --cache"):
        label_with_teacher(b, ["a new text"], second, identity="t", cost_of=cost_of)
    assert b.calls == 0


class HalfSureTeacher(KeywordTeacher):
    """A teacher that abstains on every password question (an LLM that answered garbage)."""

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        out = super()._predict(texts)
        return [Prediction(abstained="invalid_output", usage=p.usage)
                if p.label == "password" else p for p in out]  # fmt: skip


def test_agreement_is_scored_only_on_held_out_texts_the_teacher_labelled(tmp_path):
    # The student is the keyword rule itself, so it agrees with every label the teacher
    # gave; a held-out text the teacher abstained on has no label to agree with.
    clf = RecordingStudent().fit([])
    report = distill(HalfSureTeacher().fit([]), clf, TEXTS, cache=TeacherCache(tmp_path / "c"),
                     identity="t", cost_of=cost_of)  # fmt: skip
    assert report.extra["held_out_teacher_abstained"] > 0
    assert report.agreement_with_teacher == 1.0


def test_a_gold_seed_text_is_never_held_out(tmp_path):
    # The seed set is often drawn from the texts to label: a seed text held out would be
    # scored on a text the student was trained on with its answer.
    from slmstack.types import Example

    seed = [Example(t, g) for t, g in zip(TEXTS[:12], GOLD[:12], strict=True)]
    clf = RecordingStudent().fit([])
    report = distill(KeywordTeacher().fit([]), clf, TEXTS, cache=TeacherCache(tmp_path / "c"),
                     identity="t", cost_of=cost_of, labelled=seed, held_out=0.5)  # fmt: skip
    assert clf.asked and not set(clf.asked) & set(clf.trained)
    assert report.held_out_texts == len(clf.asked)
