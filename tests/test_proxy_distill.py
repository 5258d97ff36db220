"""``slmstack distill --task T``: a discovered task's student, learnt from the recorded answers."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from extract_fixtures import tiny_encoder
from proxy_traffic import INTENTS, synthetic_traffic
from slmstack.cli.app import app
from slmstack.errors import ConfigError, DataError, DataWarning
from slmstack.proxy import Masker, TrafficStore, generate_key
from slmstack.proxy.answers import json_object
from slmstack.proxy.discover import discover
from slmstack.proxy.taskdata import RecordedTask, read_task, task_data
from slmstack.proxy.taskdistill import distill_task, student_for


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        yield


@pytest.fixture(scope="module")
def traffic():
    rows, source = synthetic_traffic()
    tasks = {}
    for t in discover(rows):
        name = Counter(source[r] for r in t.request_ids).most_common(1)[0][0]
        tasks[name] = t
    return rows, source, tasks


def recorded(task) -> RecordedTask:
    return RecordedTask(task.task_id, task.kind, task.system, task.prefix, task.suffix,
                        task.labels, task.schema)  # fmt: skip


def ledger(tmp_path: Path, rows, tasks) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    store = TrafficStore(url)
    store.insert(rows)
    store.close()
    tasks_file = tmp_path / "tasks.json"
    tasks_file.write_text(json.dumps({"tasks": [t.to_dict() for t in tasks.values()]}))
    return url, tasks_file


def test_classification_task_distils_end_to_end_from_the_cli(tmp_path, traffic, monkeypatch):
    rows, source, tasks = traffic
    banking = tasks["banking"]
    url, tasks_file = ledger(tmp_path, rows, tasks)
    (tmp_path / "student").mkdir()
    monkeypatch.chdir(tmp_path / "student")  # "--out ." names no file to put the report beside
    result = CliRunner().invoke(app, [
        "distill", "--task", banking.task_id, "--ledger", url, "--tasks", str(tasks_file),
        "--out", ".", "--set", "strategy=head", "--set", "scope_alpha=0",
        "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    mine = [r for r in rows if source[r.request_id] == "banking"]
    distinct = len({r.user for r in mine})  # one template: the variable parts differ as these do
    assert report["extra"]["calls"] == len(mine) == 300
    assert report["texts"] == distinct
    assert report["extra"]["dropped"] == {"duplicate text": 300 - distinct}
    assert report["train_texts"] + report["held_out_texts"] == distinct
    assert report["held_out_texts"] == round(0.2 * distinct)
    assert Decimal(report["teacher_cost_usd"]) == Decimal(sum(r.cost_nusd for r in mine)) / 10**9
    assert report["teacher_labels_bought"] == 0 and report["extra"]["masking"] == "none"
    assert report["agreement_with_teacher"] >= 0.6  # keyword-easy intents, a frozen-encoder head
    saved = json.loads((tmp_path / "student.distill-report.json").read_text())
    assert saved["agreement_with_teacher"] == report["agreement_with_teacher"]

    from slmstack.skills.base import load

    student = load(tmp_path / "student")
    # The LLM's usual spelling (" card_arrival." and "card_arrival" are one label).
    assert set(student.classes_) <= set(INTENTS)
    [pred] = student.predict(["my card still has not arrived"])
    assert pred.label in INTENTS


def test_unusable_calls_are_dropped_and_counted(traffic):
    rows, source, tasks = traffic
    banking = tasks["banking"]
    mine = [r for r in rows if source[r.request_id] == "banking"][:40]
    user = banking.prefix + "is my card here{}" + banking.suffix
    served = replace(mine[0], request_id="x6", user=user.format(6), cost_nusd=0,
                     answered_by="student", task_id=banking.task_id)  # fmt: skip
    extra = [
        replace(mine[0], request_id="x1", user=user.format(1), status=500, response=""),
        replace(mine[0], request_id="x2", user=user.format(2), problem="the answer is not JSON"),
        replace(mine[0], request_id="x3", user=user.format(3), response="I am not sure, sorry"),
        replace(mine[0], request_id="x4", user=user.format(4), response="  "),
        replace(mine[0], request_id="x5", user=user.format(5), response="Card_Arrival!"),
        served,
        replace(mine[0], request_id="x7", user=user.format(7), response="card_arrival",
                finish_reason="length"),  # cut at max_tokens: the label may be cut short
    ]
    data = task_data([*mine, *extra], recorded(banking))
    assert data.calls == 47
    assert data.dropped["answer cut at max_tokens"] == 1
    assert "is my card here7" not in data.texts
    assert data.dropped["failed call"] == 2 and data.dropped["answered by the student"] == 1
    assert data.dropped["answer not in the label set"] == 1 and data.dropped["empty answer"] == 1
    assert data.targets[data.texts.index("is my card here5")] == "card_arrival"
    assert data.cost_nusd == sum(r.cost_nusd for r in [*mine, *extra[:5], extra[6]])  # not served
    assert len(data.texts) == len(set(data.texts))


def test_masked_calls_train_on_tokens_or_on_the_original_with_the_key(traffic):
    rows, source, tasks = traffic
    banking = tasks["banking"]
    key = generate_key()
    masker = Masker(key)
    mine = [r for r in rows if source[r.request_id] == "banking"][:30]
    user = banking.prefix + "mail me at ana@example.com about my card" + banking.suffix
    masked = [replace(r, masked=True) for r in mine]
    masked.append(replace(mine[0], request_id="m1", user=masker.mask(user), masked=True))
    plain = task_data(masked, recorded(banking))
    assert plain.masking == "tokens"
    assert "mail me at <EMAIL> about my card" in plain.texts
    clear = task_data(masked, recorded(banking), key=key)
    assert clear.masking == "unmasked"
    assert "mail me at ana@example.com about my card" in clear.texts


def test_extraction_task_learns_fields_found_in_the_text(tmp_path, traffic):
    rows, source, tasks = traffic
    sroie = tasks["sroie"]
    mine = [r for r in rows if source[r.request_id] == "sroie"]
    invented = json_object(mine[1].response)
    invented["total"] = "999.99"  # not on the receipt: the LLM made it up
    rows2 = [*mine[:1], replace(mine[1], response=json.dumps(invented)), *mine[2:]]
    rows2.append(replace(mine[2], request_id="y1", user=mine[2].user.replace("TOTAL:", "TOTAL :"),
                         response="no idea"))  # fmt: skip
    data = task_data(rows2, recorded(sroie))
    assert data.field_types == {"address": "text", "company": "text", "date": "date",
                                "total": "amount"}  # fmt: skip
    assert data.dropped["a field value is not in the text"] == 1
    assert data.dropped_fields == Counter({"total": 1})
    assert data.dropped["answer not a JSON object"] == 1
    assert len(data.texts) == len(mine) - 1

    encoder = tiny_encoder(tmp_path / "enc")
    student = student_for("extraction", None, {"base": str(encoder)}, data)
    assert student.skill_name == "slmstack.FieldExtractor.v1"
    report = distill_task(data, student, held_out=0.25, seed=1)
    fields = report.extra["fields"]
    assert report.held_out_texts == round(0.25 * len(data.texts))
    assert set(fields["per_field_f1"]) == {"address", "company", "date", "total"}
    assert fields["per_field_f1"]["date"] >= 0.9  # one date per receipt
    assert 0.0 <= report.agreement_with_teacher <= 1.0
    assert report.teacher_abstained == 2


def test_errors_name_the_fix(tmp_path, traffic):
    rows, source, tasks = traffic
    url, tasks_file = ledger(tmp_path, rows, tasks)
    with pytest.raises(ConfigError, match="not in .*tasks.json.*pass one of those"):
        read_task(tasks_file, "t-nothere")
    with pytest.raises(ConfigError, match="is a generation.*Keep this task on the LLM"):
        task_data(rows, recorded(tasks["summary"]))
    with pytest.raises(DataError, match="no recorded call matches task"):
        task_data([r for r in rows if source[r.request_id] != "banking"],
                  recorded(tasks["banking"]))  # fmt: skip
    few = [r for r in rows if source[r.request_id] == "sentiment"]
    with pytest.raises(DataError, match="6 usable distinct texts.*at least 10"):
        distill_task(task_data(few, recorded(tasks["sentiment"])), object())
    with pytest.raises(ConfigError, match="does not produce a label"):
        student_for(
            "classification", "FieldExtractor", {}, task_data(few, recorded(tasks["sentiment"]))
        )

    runner = CliRunner()
    base = ["distill", "--out", str(tmp_path / "s"), "--ledger", url]
    result = runner.invoke(app, [*base, "--task", tasks["banking"].task_id])
    assert result.exit_code == 2 and "--tasks tasks.json" in result.output
    result = runner.invoke(app, [*base, "--task", "x", "--tasks", str(tasks_file),
                                 "--teacher", "t"])  # fmt: skip
    assert result.exit_code == 2 and "--teacher does not apply to --task" in result.output
    result = runner.invoke(app, [*base, "--task", "t-nothere", "--tasks", str(tasks_file)])
    assert result.exit_code == 2 and "t-nothere" in result.output
    result = runner.invoke(app, base)
    assert result.exit_code == 2 and "pass DATA and --teacher" in result.output


class Recorder:
    """A student double: learns nothing, answers the first label it saw."""

    def fit(self, examples):
        self.seen = list(examples)
        return self

    def predict(self, texts):
        from slmstack.types import Prediction

        self.asked = list(texts)
        return [Prediction(label=self.seen[0].label, confidence=1.0) for _ in texts]


def test_a_label_given_once_is_left_out_of_training_and_counted(traffic):
    rows, source, tasks = traffic
    banking = tasks["banking"]
    mine = [r for r in rows if source[r.request_id] == "banking"]
    user = banking.prefix + "how do I close my account {}" + banking.suffix
    once = [replace(mine[0], request_id="z0", user=user.format(0), response="terminate_account")]
    task = replace(recorded(banking), labels=())  # no label set: every short answer counts
    data = task_data([*mine, *once], task)
    student = Recorder()
    report = distill_task(data, student, held_out=0.05, seed=0)
    rare = report.extra["rare_labels_left_out"]
    trained = {ex.label for ex in student.seen}
    assert "terminate_account" not in trained
    assert rare["texts"] == (
        1 if report.train_texts < len(data.texts) - report.held_out_texts else 0
    )
    assert report.train_texts + report.held_out_texts + rare["texts"] == len(data.texts)
