"""``slmstack train``: the output folder is checked before training, and any kind trains."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fixtures import INTENTS
from slmstack.cli.app import app

runner = CliRunner()


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "intents.csv"
    rows = ["text,label"] + [f"{t},{label}" for label, texts in INTENTS.items() for t in texts]
    path.write_text("\n".join(rows) + "\n")
    return path


def _no_traceback(result) -> None:
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert "Traceback" not in result.output


def test_out_is_a_file(data, tmp_path):
    target = tmp_path / "model.bin"
    target.write_text("keep me")
    result = runner.invoke(app, ["train", "classify", str(data), "--out", str(target)])
    _no_traceback(result)
    assert "is a file" in result.output and target.read_text() == "keep me"


def test_out_holds_the_users_files(data, tmp_path):
    mine = tmp_path / "docs"
    mine.mkdir()
    (mine / "notes.md").write_text("keep me")
    result = runner.invoke(app, ["train", "classify", str(data), "--out", str(mine)])
    _no_traceback(result)
    assert "not a saved skill" in result.output
    assert (mine / "notes.md").read_text() == "keep me"


def test_out_cannot_be_written(data):
    result = runner.invoke(app, ["train", "classify", str(data), "--out", "/proc/slmstack-out"])
    _no_traceback(result)
    assert "cannot write to /proc" in result.output


def test_existing_skill_needs_force(data, tmp_path):
    out = tmp_path / "intent"
    first = runner.invoke(app, ["train", "classify", str(data), "--out", str(out)])
    assert first.exit_code == 0, first.output
    config = (out / "config.json").read_text()
    again = runner.invoke(app, ["train", "classify", str(data), "--out", str(out)])
    _no_traceback(again)
    assert "--force" in again.output and (out / "config.json").read_text() == config
    forced = runner.invoke(app, ["train", "classify", str(data), "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output


def test_generic_train_with_set_and_help(data, tmp_path):
    out = tmp_path / "generic"
    result = runner.invoke(
        app,
        ["train", "TextClassifier", str(data), "--out", str(out), "--set", "top_k=2",
         "--set", "scope_alpha=0", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["skill"] == "slmstack.TextClassifier.v1" and summary["rows"] == 24
    assert json.loads((out / "config.json").read_text())["params"]["top_k"] == 2
    helped = runner.invoke(app, ["train", "TextClassifier", "--help"])
    assert "learning_rate: float = 5e-05" in helped.output
    assert "strategy: head|finetune" in helped.output


def test_generic_train_refuses_a_typo_before_training(data, tmp_path):
    result = runner.invoke(
        app, ["train", "TextClassifier", str(data), "--out", str(tmp_path / "x"),
              "--set", "epoch=3"],
    )  # fmt: skip
    _no_traceback(result)
    assert "Did you mean 'epochs'" in result.output
    assert not (tmp_path / "x").exists()
    bad = runner.invoke(
        app, ["train", "TextClassifier", str(data), "--out", str(tmp_path / "x"),
              "--set", "strategy=heads"],
    )  # fmt: skip
    _no_traceback(bad)
    assert "must be 'head', 'finetune', 'fewshot' or 'auto'. Got 'heads'" in bad.output


def test_reader_options_and_options_set_twice_are_checked_before_training(data, tmp_path):
    base = ["train", "TextClassifier", str(data), "--out", str(tmp_path / "x")]
    typo = runner.invoke(app, [*base, "--read", "textcolumn=foo"])
    _no_traceback(typo)
    assert "--read textcolumn: TextClassifier's reader has no such option" in typo.output
    assert "text_column" in typo.output
    bare = runner.invoke(app, [*base, "--read", "text_column"])
    _no_traceback(bare)
    assert "--read takes key=value" in bare.output
    twice = runner.invoke(app, ["train", "clauses", str(data), "--out", str(tmp_path / "c"),
                                "--set", "seed=3"])  # fmt: skip
    _no_traceback(twice)
    assert "seed has its own option; pass --seed instead" in twice.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "c").exists()


def test_options_the_chosen_training_ignores_are_refused_not_dropped(data, tmp_path):
    out = ["--out", str(tmp_path / "x")]
    head = runner.invoke(app, ["train", "classify", str(data), *out, "--lr", "1e-3", "--epochs", "9"])
    _no_traceback(head)
    assert "--epochs, --lr do not apply to --strategy head" in head.output
    static = runner.invoke(app, ["train", "classify", str(data), *out, "--base", "static",
                                 "--scope-alpha", "0.3", "--max-length", "4"])  # fmt: skip
    _no_traceback(static)
    assert "--max-length, --scope-alpha do not apply to --base static" in static.output
    assert not (tmp_path / "x").exists()


def test_train_lists_every_kind():
    result = runner.invoke(app, ["train", "--help"])
    for kind in ("TextClassifier", "EntityTagger", "LanguageDetector", "Summarizer"):
        assert kind in result.output


def test_a_config_without_labels_is_one_error_line(data, tmp_path):
    out = tmp_path / "intent"
    assert runner.invoke(app, ["train", "classify", str(data), "--out", str(out)]).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    del config["labels"]
    (out / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["predict", str(out), "where is my card"])
    _no_traceback(result)
    assert "no 'labels' entry" in result.output


def test_a_pickled_base_is_blocked_with_the_opt_in_named(data, tmp_path):
    base = tmp_path / "pickled-base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "pytorch_model.bin").write_bytes(b"not really a pickle")
    result = runner.invoke(
        app, ["train", "classify", str(data), "--out", str(tmp_path / "x"), "--base", str(base)]
    )
    _no_traceback(result)
    assert "--allow-pickle" in result.output


def test_a_finetune_student_learns_from_a_saved_teacher(data, tmp_path):
    teacher = tmp_path / "teacher"
    result = runner.invoke(app, ["train", "classify", str(data), "--out", str(teacher)])
    assert result.exit_code == 0, result.output
    student = tmp_path / "student"
    args = ["train", "classify", str(data), "--out", str(student), "--strategy", "finetune",
            "--epochs", "1", "--teacher", str(teacher), "--distill-weight", "0.7"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((student / "config.json").read_text())
    assert config["teacher"] == {"skill": "TextClassifier", "base": "minilm", "weight": 0.7,
                                 "temperature": 2.0}  # fmt: skip


def test_a_teacher_with_the_head_strategy_is_refused_before_training(data, tmp_path):
    result = runner.invoke(app, ["train", "classify", str(data), "--out", str(tmp_path / "s"),
                                 "--teacher", str(tmp_path)])  # fmt: skip
    _no_traceback(result)
    assert "--teacher distils into a fine-tuned encoder: add --strategy finetune" in result.output
    assert not (tmp_path / "s").exists()
    onto = runner.invoke(app, ["train", "classify", str(data), "--out", str(tmp_path), "--force",
                               "--strategy", "finetune", "--teacher", str(tmp_path)])  # fmt: skip
    _no_traceback(onto)
    assert "is the teacher's folder; the student would replace it" in onto.output


def test_resuming_a_fine_tuned_skill_takes_epochs_and_lr(data, tmp_path):
    # The check for options a head ignores ran against the default --strategy head before
    # the saved skill was read, so a fine-tuned skill could not resume with --epochs or
    # --lr (and the advice, --strategy finetune, is refused when resuming).
    from slmstack import load

    first = tmp_path / "ft"
    args = ["train", "classify", str(data), "--strategy", "finetune", "--epochs", "1"]
    trained = runner.invoke(app, [*args, "--out", str(first)])
    assert trained.exit_code == 0, trained.output
    again = runner.invoke(app, ["train", "classify", str(data), "--resume", str(first),
                                "--epochs", "2", "--lr", "1e-5", "--out", str(tmp_path / "v2")])  # fmt: skip
    assert again.exit_code == 0, again.output
    params = load(tmp_path / "v2").get_params()
    assert (params["epochs"], params["learning_rate"]) == (2, 1e-5)
    head = runner.invoke(app, ["train", "classify", str(data), "--out", str(tmp_path / "h")])
    assert head.exit_code == 0, head.output
    refused = runner.invoke(app, ["train", "classify", str(data), "--resume", str(tmp_path / "h"),
                                  "--epochs", "2", "--out", str(tmp_path / "h2")])  # fmt: skip
    _no_traceback(refused)
    assert "--epochs do not apply to --strategy head" in refused.output
    # --strategy is refused when resuming, so the advice is a new skill, not that flag
    assert "keeps its strategy when resumed" in " ".join(refused.output.split())
