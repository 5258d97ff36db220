import json

import pytest
from typer.testing import CliRunner

from fixtures import TRAIN, write_csv
from slmstack import Example, load
from slmstack.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = write_csv(tmp / "train.csv")
    out = tmp / "skill"
    result = runner.invoke(app, ["train", "classify", str(data), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return tmp, data, out, json.loads(result.stdout)


# Texts none of the training rows contain: eval must measure what the skill learned.
HELD_OUT = [
    Example("the new card is still not here", "card"),
    Example("my debit card never got delivered", "card"),
    Example("when does my card arrive", "card"),
    Example("I would like my money returned", "refund"),
    Example("please pay me back for the order", "refund"),
    Example("refund my purchase", "refund"),
    Example("I cannot log in, I forgot my password", "password"),
    Example("reset the password on my account", "password"),
    Example("my password is not accepted any more", "password"),
    Example("where is my replacement card", "refund"),  # mislabelled: a right report is < 1
]


def test_train_reports_metrics(trained):
    _, _, out, summary = trained
    assert (out / "config.json").is_file()
    assert (out / "head.safetensors").is_file()
    saved = load(out)
    assert summary["out"] == str(out) and summary["labels"] == len(saved.classes_) == 3
    assert summary["n_train"] + summary["n_val"] == len(TRAIN) and summary["n_val"] >= 3
    for key in ("val_accuracy", "val_macro_f1", "val_ece", "val_ece_before_calibration"):
        assert summary[key] == round(saved.metrics_[key], 4), key
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["temperature"] == round(saved.temperature_, 4) > 0
    assert summary["train_seconds"] > 0 and summary["duplicates_dropped"] == 0


def test_predict_text_and_json(trained):
    _, _, out, _ = trained
    result = runner.invoke(app, ["predict", str(out), "money back please", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["label"] == "refund" and 0 < rows[0]["confidence"] <= 1
    assert rows[0]["input"] == "money back please"  # apart from a generated "text"
    table = runner.invoke(app, ["predict", str(out), "where is my card"])
    assert table.exit_code == 0 and "card" in table.stdout


def test_predict_table_shows_texts_as_written_not_as_markup(trained):
    # Rich read a text's brackets as markup: "[/]" crashed the command (MarkupError),
    # "[bold]" vanished from the table
    _, _, out, _ = trained
    result = runner.invoke(app, ["predict", str(out), "card [/] lost", "[bold]refund[/bold]"])
    assert result.exit_code == 0, result.output
    assert "card [/] lost" in result.stdout and "[bold]refund[/bold]" in result.stdout


def test_predict_input_file_jsonl_output(trained, tmp_path):
    _, _, out, _ = trained
    inputs = tmp_path / "q.txt"
    inputs.write_text("where is my card\nI forgot my password\n")
    result = runner.invoke(app, ["predict", str(out), "--input", str(inputs), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [x["label"] for x in lines] == ["card", "password"]
    # a blank line is an input too (it abstains), so outputs line up with the lines
    inputs.write_text("where is my card\n\nI forgot my password\n")
    result = runner.invoke(app, ["predict", str(out), "--input", "-", "--json"],
                           input=inputs.read_text())  # fmt: skip
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [x.get("abstained") for x in lines] == [None, "empty_input", None], result.output
    nulls = tmp_path / "n.jsonl"
    nulls.write_text('{"text": null}\n')
    result = runner.invoke(app, ["predict", str(out), "--input", str(nulls)])
    assert result.exit_code != 0 and "n.jsonl:1: 'text' is null" in result.output


def test_eval_json_report(trained, tmp_path):
    _, _, out, _ = trained
    data = write_csv(tmp_path / "held_out.csv", HELD_OUT)
    result = runner.invoke(app, ["eval", str(out), str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    predicted = [p.label for p in load(out).predict([ex.text for ex in HELD_OUT])]
    right = sum(p == ex.label for p, ex in zip(predicted, HELD_OUT, strict=True))
    assert report["n"] == len(HELD_OUT) and report["accuracy"] == right / len(HELD_OUT)
    assert 0.8 <= report["accuracy"] < 1.0
    assert set(report["per_class"]) == {"card", "refund", "password"}
    matrix = report["confusion_matrix"]["matrix"]
    assert len(matrix) == 3 and sum(map(sum, matrix)) == len(HELD_OUT)
    assert sum(matrix[i][i] for i in range(3)) == right
    for key in ("latency_p50_ms", "latency_p95_ms", "throughput_per_s", "peak_rss_mb"):
        assert report["speed"][key] > 0
    human = runner.invoke(app, ["eval", str(out), str(data)])
    assert (
        human.exit_code == 0 and "macro_f1" in human.stdout and "confusion matrix" in human.stdout
    )
    # reliability: every prediction in one confidence bin, accuracy as counted above
    bins = report["reliability"]
    assert sum(bins["count"]) == len(HELD_OUT)
    assert sum(c * a for c, a in zip(bins["count"], bins["accuracy"], strict=True)) == (
        pytest.approx(right)
    )
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["eval", str(out), str(data), "--html", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("data:image/png;base64,") == 3
    assert "Confusion matrix" in text and "Reliability" in text and "http" not in text
    assert "<td>password</td>" in text  # the per-class table


def test_models_lists_minilm_as_installed():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = {r["alias"]: r for r in json.loads(result.stdout)}
    assert rows["minilm"]["installed"] is True and rows["minilm"]["licence"] == "Apache-2.0"


def _one_line_error(result):
    assert result.exit_code != 0
    lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
    assert lines and lines[0].startswith("error:"), result.stderr
    return " ".join(lines)


def test_bad_inputs_exit_nonzero_with_reason(trained, tmp_path):
    _, data, out, _ = trained
    bad = tmp_path / "bad.csv"
    bad.write_text("query,label\na,x\nb,y\n")
    msg = _one_line_error(
        runner.invoke(app, ["train", "classify", str(bad), "--out", str(tmp_path / "o")])
    )
    assert "missing text column 'text'" in msg
    msg = _one_line_error(runner.invoke(app, ["predict", str(tmp_path), "hi"]))
    assert "no config.json" in msg
    msg = _one_line_error(runner.invoke(app, ["predict", str(out)]))
    assert "nothing to predict" in msg
    msg = _one_line_error(
        runner.invoke(
            app,
            ["train", "classify", str(data), "--out", str(tmp_path / "o"), "--base", "./nowhere"],
        )
    )
    assert "no such folder" in msg
    msg = _one_line_error(
        runner.invoke(
            app,
            ["train", "classify", str(data), "--out", str(tmp_path / "o"), "--strategy", "magic"],
        )
    )
    assert "'strategy' parameter" in msg


def test_resume_via_cli_requires_flag_for_new_labels(trained, tmp_path):
    _, _, out, _ = trained
    more = tmp_path / "more.csv"
    more.write_text(
        "text,label\nfreeze my card,lost\nmy card was stolen,lost\nwhere is my card,card\ncard not here,card\n"
    )
    msg = _one_line_error(
        runner.invoke(
            app,
            ["train", "classify", str(more), "--out", str(tmp_path / "v2"), "--resume", str(out)],
        )
    )
    assert "--allow-new-labels" in msg
    ok = runner.invoke(
        app,
        [
            "train",
            "classify",
            str(more),
            "--out",
            str(tmp_path / "v2"),
            "--resume",
            str(out),
            "--allow-new-labels",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["labels"] == 4
    # only the flags given change; what the skill is made of cannot change by resuming
    fixed = runner.invoke(app, ["train", "classify", str(more), "--out", str(tmp_path / "v3"),
                                "--resume", str(out), "--allow-new-labels",
                                "--strategy", "finetune", "--max-length", "256"])  # fmt: skip
    msg = _one_line_error(fixed)
    assert "--max-length, --strategy cannot change when resuming" in msg
    from slmstack import load

    before = load(out).get_params()
    again = runner.invoke(app, ["train", "classify", str(more), "--out", str(tmp_path / "v4"),
                                "--resume", str(out), "--allow-new-labels", "--seed", "3"])  # fmt: skip
    assert again.exit_code == 0, again.output
    after = load(tmp_path / "v4").get_params()
    assert after["seed"] == 3 and after["scope_alpha"] == before["scope_alpha"]
    assert after["val_fraction"] == before["val_fraction"]


def test_models_says_the_qwen_alias_is_the_coder_model():
    result = runner.invoke(app, ["models", "--json"])
    rows = {r["alias"]: r for r in json.loads(result.stdout)}
    assert "Qwen2.5-Coder-0.5B-Instruct" in rows["qwen2.5-0.5b"]["model"]
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and "model" in table.stdout.splitlines()[1]


def test_models_prints_each_missing_models_install_command_whole():
    # At 80 columns (a pipe, a default terminal) the table's install column is cut to
    # "pip insta…": the command to copy has to be printed whole.
    rows = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    missing = [r for r in rows if not r["installed"]]
    if not missing:
        pytest.skip("every known model is installed here")
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0
    for r in missing:
        assert f"{r['alias']}: {r['install']}" in table.stdout.splitlines()
