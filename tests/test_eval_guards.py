"""``eval`` refuses what ``train`` refuses, and keeps unseen labels out of macro-F1."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from slmstack.errors import ConfigError, DataError, DataWarning
from slmstack.evaluation.classification import evaluate_classifier
from slmstack.evaluation.retrieval import evaluate_faq
from slmstack.types import Prediction


class FakeClassifier:
    """Says ``card`` when the text mentions a card, else ``refund``."""

    skill_name = "slmstack.TextClassifier.v1"

    def __init__(self, classes: Sequence[str] | None = ("card", "refund")):
        if classes is not None:
            self.classes_ = list(classes)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [
            Prediction(label="card" if "card" in t else "refund", confidence=0.9) for t in texts
        ]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "text,label\nmy card,card\nlost card,card\nmoney back,refund\nrefund me,refund\n"


def test_empty_text_is_refused_with_file_row_and_fix(tmp_path):
    data = write(tmp_path / "d.csv", "text,label\nmy card,card\n   ,refund\n")
    with pytest.raises(DataError, match=r"d\.csv:3: empty text; remove the row or fill in"):
        evaluate_classifier(FakeClassifier(), data, single_queries=1)


def test_unseen_labels_are_refused_with_counts_and_the_fix(tmp_path):
    data = write(tmp_path / "d.csv", GOOD + "where is it,lost\nnot here,lost\nhi,greet\n")
    with pytest.raises(
        DataError,
        match=r"d\.csv:6: 3 of 7 rows have labels the skill never learned: "
        r"'greet' \(1 row\), 'lost' \(2 rows\).*unseen_labels='drop'",
    ):
        evaluate_classifier(FakeClassifier(), data, single_queries=1)


def test_unseen_labels_dropped_on_request_are_reported(tmp_path):
    data = write(tmp_path / "d.csv", GOOD + "where is it,lost\nnot here,lost\n")
    with pytest.warns(DataWarning, match=r"DROPPED 2 of 6 rows.*'lost' \(2 rows\)"):
        report = evaluate_classifier(FakeClassifier(), data, single_queries=1, unseen_labels="drop")
    assert report["dropped_unseen"] == 2 and report["unseen_labels"] == {"lost": 2}
    assert report["n"] == 4 and report["macro_f1"] == 1.0
    assert set(report["per_class"]) == {"card", "refund"}


def test_every_row_unseen_is_an_error_even_when_dropping(tmp_path):
    data = write(tmp_path / "d.csv", "text,label\na,x\nb,y\n")
    with pytest.raises(DataError, match=r"2 of 2 rows have labels the skill never learned"):
        evaluate_classifier(FakeClassifier(), data, single_queries=1, unseen_labels="drop")


def test_skill_without_classes_skips_the_unseen_label_check(tmp_path):
    data = write(tmp_path / "d.csv", GOOD + "where is it,lost\n")
    report = evaluate_classifier(FakeClassifier(classes=None), data, single_queries=1)
    assert report["n"] == 5 and "dropped_unseen" not in report


def test_bad_unseen_labels_option(tmp_path):
    data = write(tmp_path / "d.csv", GOOD)
    with pytest.raises(ConfigError, match=r"unseen_labels must be one of 'error', 'drop'; got"):
        evaluate_classifier(FakeClassifier(), data, unseen_labels="skip")


def test_faq_eval_names_the_row_of_an_empty_text(tmp_path):
    data = write(tmp_path / "d.csv", "text,label\nhow do I pay,pay\n\t,pay\nbye,\n")
    with pytest.raises(DataError, match=r"d\.csv:3: empty text"):
        evaluate_faq(FakeClassifier(classes=None), data, single_queries=1)


def test_the_report_draws_labels_with_dollar_signs_as_written():
    from slmstack.evaluation.html import evaluation_page

    labels = ["plan_$_pro_$", "$5-$10 refund", "login"]
    per = {lab: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2} for lab in labels}
    report = {"accuracy": 1.0, "macro_f1": 1.0, "n": 6, "per_class": per,
              "confusion_matrix": {"labels": labels, "matrix": [[2, 0, 0], [0, 2, 0], [0, 0, 2]]}}  # fmt: skip
    page = evaluation_page(report, title="t")  # matplotlib's math mode had raised here
    assert "plan_$_pro_$" in page and page.count("<img") >= 2


def test_a_confusion_matrix_of_many_labels_draws_the_most_confused():
    import numpy as np

    from slmstack.evaluation.html import evaluation_page

    labels = [f"intent_{i}" for i in range(150)]
    m = np.eye(150, dtype=int) * 5
    m[3, 7] = m[100, 101] = 4  # the confusions to show
    report = {"accuracy": 0.9, "confusion_matrix": {"labels": labels, "matrix": m.tolist()}}
    page = evaluation_page(report, title="t")
    assert "the 40 of 150 labels most confused" in page


def test_labels_no_installed_font_draws_give_one_warning_naming_them_and_the_fix():
    pytest.importorskip("matplotlib")
    import warnings

    from slmstack.evaluation.html import evaluation_page

    labels = ["退款", "登录", "refund"]  # DejaVu, matplotlib's font, has no CJK glyphs
    per = {lab: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2} for lab in labels}
    report = {"accuracy": 1.0, "per_class": per,
              "confusion_matrix": {"labels": labels, "matrix": [[2, 0, 0], [0, 2, 0], [0, 0, 2]]}}  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        page = evaluation_page(report, title="t")
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "missing from font" in m]  # matplotlib's, one per glyph
    ours = [m for m in messages if "no glyph in the installed fonts" in m]
    assert len(ours) == 2  # one per plot (F1 bars, confusion matrix)
    shown = ours[0].split("(")[1].split(")")[0]
    assert sorted(shown.split()) == sorted("退款登录") and "fonts-noto-cjk" in ours[0]
    assert "退款" in page  # the table shows the label as it is


def test_a_drawn_row_share_counts_the_errors_into_labels_left_out():
    import numpy as np

    from slmstack.evaluation.html import _drawn_cells

    n = 50
    m = np.eye(n, dtype=int) * 10
    for i in range(0, 45, 2):  # heavy confusions among the first 45 labels: these are drawn
        m[i, i + 1] = 6
    m[0, 49] = 3  # and three of label 0's errors go to a label left out
    labels, counts, share = _drawn_cells({"labels": [f"l{i}" for i in range(n)],
                                          "matrix": m.tolist()})  # fmt: skip
    assert len(labels) == 40 and "l0" in labels and "l49" not in labels
    row = labels.index("l0")
    assert share[row, row] == pytest.approx(10 / 19)  # of the whole row, not of what is drawn
    assert counts[row, row] == 10


def test_metrics_on_a_small_hand_computed_case():
    from slmstack.evaluation.metrics import classification_metrics

    # a: P 1, R 1/2, F 2/3; b: P 1/3, R 1, F 1/2; c: never predicted, F 0
    report = classification_metrics(["a", "a", "b", "c"], ["a", "b", "b", "b"])
    assert report["accuracy"] == 0.5
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert report["per_class"]["b"]["precision"] == pytest.approx(1 / 3)
    assert report["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


class AbstainingClassifier(FakeClassifier):
    """An LLM classifier's way: no label (``invalid_output``) for a text it cannot read."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [
            Prediction(abstained="invalid_output") if "???" in t else p
            for t, p in zip(texts, super().predict(texts), strict=True)
        ]


def test_an_abstention_is_an_error_of_its_class_not_a_class_of_its_own(tmp_path):
    # It had been scored as a label "" of F1 0, averaged into macro-F1 beside the real
    # labels: one unreadable answer of five took macro-F1 from 0.90 to 0.60.
    data = write(tmp_path / "d.csv", GOOD + "??? card,card\n")
    report = evaluate_classifier(AbstainingClassifier(), data, single_queries=1)
    assert set(report["per_class"]) == {"card", "refund"}
    card = report["per_class"]["card"]
    assert card["precision"] == 1.0 and card["recall"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((0.8 + 1.0) / 2)
    assert report["accuracy"] == pytest.approx(4 / 5) and report["abstained"] == 1
    assert report["confusion_matrix"]["matrix"][0] == [0, 0, 0]  # the "" row: no true ""


class FakeFAQ:
    """Answers ``pay`` when the query mentions paying, else declines."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [
            Prediction(label="pay", confidence=0.9)
            if "pay" in t
            else Prediction(abstained="no_match", confidence=0.2)
            for t in texts
        ]


def test_faq_rates_of_nothing_are_none_not_zero(tmp_path):
    # A file without out-of-scope queries had abstain_recall 0.0: "never declined when it
    # should have", of queries that were not there. A rate of nothing is None ("none").
    in_scope = write(tmp_path / "in.csv", "text,label\nhow do I pay,pay\nwhere is it,pay\n")
    report = evaluate_faq(FakeFAQ(), in_scope, single_queries=1)
    assert report["abstain_recall"] is None and report["abstain_precision"] == 0.0
    assert report["wrong_abstain_rate_in_scope"] == 0.5
    out_of_scope = write(tmp_path / "oos.csv", "text,label\nhello,oos\nbye,\n")
    report = evaluate_faq(FakeFAQ(), out_of_scope, single_queries=1)
    assert report["abstain_recall"] == 1.0 and report["abstain_precision"] == 1.0
    assert report["wrong_abstain_rate_in_scope"] is None
    assert report["wrong_answer_rate_in_scope"] is None and report["top1_accuracy"] is None
    answers = write(tmp_path / "all.csv", "text,label\npay now,pay\npay later,oos\n")
    report = evaluate_faq(FakeFAQ(), answers, single_queries=1)
    assert report["abstain_precision"] is None and report["abstain_recall"] == 0.0


def test_measure_speed_without_a_timed_query_says_so():
    from slmstack.evaluation.speed import measure_speed

    def predict(texts):
        return list(texts)

    with pytest.raises(ConfigError, match="single_queries must be at least 1"):
        measure_speed(predict, ["a", "b"], single_queries=0)
    with pytest.raises(ConfigError, match="at least one text"):
        measure_speed(predict, [])
    assert measure_speed(predict, ["a", "b"], single_queries=1, warmup=0)["batch_size"] == 2


def test_a_nan_confidence_is_written_as_json_null_not_nan():
    import json

    from slmstack.types import LabelScore, Span

    pred = Prediction(label="a", confidence=float("nan"), scores=(LabelScore("a", float("nan")),),
                      spans=(Span("PER", 0, 1, "x", float("inf")),))  # fmt: skip
    out = json.loads(json.dumps(pred.to_dict(), allow_nan=False))  # strict JSON
    assert out["confidence"] is None and out["scores"][0]["score"] is None
    assert out["spans"][0]["confidence"] is None
    assert Prediction(label="a", confidence=0.1234567).to_dict()["confidence"] == 0.123457
