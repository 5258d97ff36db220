"""``slmstack tune cascade`` on a real workflow: measured tiers, a chosen setting, YAML kept."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fixtures import INTENTS
from slmstack.cli.app import app

runner = CliRunner()

WORKFLOW = """\
# Intent triage; the cascade's thresholds are tuned by slmstack tune cascade.
name: triage
skills:
  small: {kind: slmstack.TextClassifier.v1, params: {strategy: head, scope_alpha: 0}, train: intents.csv}
steps:
  - cascade:
      id: intent
      threshold: 0.9   # hand-picked
      tiers:
        - skill: small
        - escalate: {reason: unsure}
"""


@pytest.fixture
def workflow(tmp_path):
    rows = ["text,label"] + [f"{t},{label}" for label, texts in INTENTS.items() for t in texts]
    (tmp_path / "intents.csv").write_text("\n".join(rows) + "\n")
    val = ["text,label", "my card still has not come,card", "refund my money please,refund",
           "reset the password for me,password", "where is the card I ordered,card",
           "I want my money back,refund", "forgot my login password,password"]  # fmt: skip
    (tmp_path / "val.csv").write_text("\n".join(val) + "\n")
    path = tmp_path / "workflow.yaml"
    path.write_text(WORKFLOW)
    return path


def test_tune_chooses_writes_and_draws(workflow, tmp_path):
    html = tmp_path / "reports" / "curve.html"  # a folder made for it, not a failure at the end
    result = runner.invoke(app, [
        "tune", "cascade", str(workflow), "--data", str(tmp_path / "val.csv"), "--target", "0.99",
        "--human-cost", "0.50", "--html", str(html), "--write", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    chosen = summary["chosen"]
    assert chosen["accuracy"] >= 0.99
    assert [t["tier"] for t in summary["tiers"]] == ["small", "escalate (escalate → human)"]
    text = workflow.read_text()
    assert f"threshold: {chosen['thresholds'][0]}   # hand-picked" in text
    assert "# Intent triage" in text and "# hand-picked" in text  # comments kept
    page = html.read_text()
    assert "data:image/png;base64," in page and "http" not in page.replace("http-equiv", "")


def test_a_person_tier_needs_its_price(workflow, tmp_path):
    result = runner.invoke(app, ["tune", "cascade", str(workflow), "--data",
                                 str(tmp_path / "val.csv"), "--target", "0.9"])  # fmt: skip
    assert result.exit_code == 2
    assert "--human-cost" in result.output


def test_a_target_in_percent_is_refused_before_any_tier_is_measured(tmp_path):
    from typer.testing import CliRunner

    from slmstack.cli.app import app

    res = CliRunner().invoke(app, ["tune", "cascade", str(tmp_path / "never-read.yaml"),
                                   "--data", str(tmp_path / "v.csv"), "--target", "95"])  # fmt: skip
    assert res.exit_code == 2 and "(for 95%, pass 0.95)" in " ".join(res.output.split())


@pytest.fixture
def keywords_workflow(tmp_path):
    """A workflow over a saved ``tests.Keywords.v1`` skill: no encoder, milliseconds."""
    from serve_doubles import Keywords
    from slmstack.types import Example

    rows = [("refund my money", "refund"), ("money back refund", "refund"),
            ("card not arrived", "card"), ("where is my card", "card")]  # fmt: skip
    Keywords().fit([Example(t, label) for t, label in rows]).save(tmp_path / "kw")
    path = tmp_path / "workflow.yaml"
    path.write_text(WORKFLOW.replace(
        "small: {kind: slmstack.TextClassifier.v1, params: {strategy: head, scope_alpha: 0}, "
        "train: intents.csv}", "small: kw"))  # fmt: skip
    return path


def test_validation_data_is_not_held_to_the_rules_for_training_data(keywords_workflow, tmp_path):
    # One text of a label, or texts of one label only, are fine to measure a cascade on.
    data = tmp_path / "val.csv"
    data.write_text("text,label\nrefund money now,refund\nmy card where,refund\n")
    result = runner.invoke(app, ["tune", "cascade", str(keywords_workflow), "--data", str(data),
                                 "--target", "0.9", "--human-cost", "0.5", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{") :])["texts"] == 2


def test_labels_the_cascade_cannot_produce_are_named(keywords_workflow, tmp_path):
    data = tmp_path / "val.csv"
    data.write_text("text,label\nrefund money now,positive\nmy card where,negative\n")
    result = runner.invoke(app, ["tune", "cascade", str(keywords_workflow), "--data", str(data),
                                 "--target", "0.9", "--human-cost", "0.5"])  # fmt: skip
    assert result.exit_code != 0
    said = " ".join(result.output.split())
    assert "'negative', 'positive'" in said and "'card', 'refund'" in said
    data.write_text("text,label\nrefund money now,refund\nhello there,greeting\n")
    result = runner.invoke(app, ["tune", "cascade", str(keywords_workflow), "--data", str(data),
                                 "--target", "0.9", "--human-cost", "0.5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "'greeting' (1 text)" in " ".join(result.output.split())


def test_the_report_says_it_scores_on_the_data_it_tuned_on_and_when_that_is_too_little(
    keywords_workflow, tmp_path
):
    data = tmp_path / "val.csv"
    data.write_text("text,label\nrefund money now,refund\nmy card where,card\n")
    args = ["tune", "cascade", str(keywords_workflow), "--data", str(data), "--target", "0.9",
            "--human-cost", "0.5"]  # fmt: skip
    said = " ".join(runner.invoke(app, args).output.split())
    assert "the same 2 texts the thresholds were chosen on" in said
    assert "warning: 2 texts are too few" in said
    summary = json.loads((out := runner.invoke(app, [*args, "--json"]).output)[out.index("{") :])
    assert summary["chosen"]["accuracy"] == 1.0
    assert summary["chosen"]["accuracy_at_least"] == pytest.approx(2 / (2 + 1.6449**2), abs=1e-4)  # Wilson, k = n
    assert summary["scored_on"] == "the tuning data (no held-out split)"
