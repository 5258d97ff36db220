"""A third-party skill package plugs in through the ``slmstack.skills`` entry points.

The package in ``tests/plugin_pkg`` is built and installed (``pip install --target``, no
network) into a folder that the subprocesses below put on ``PYTHONPATH``. Nothing in
slmstack names it, yet it trains from the CLI, runs in a workflow YAML, and saves and
loads through ``slmstack.load``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures import INTENTS

PKG = Path(__file__).parent / "plugin_pkg"
KIND = "keywords.KeywordClassifier.v1"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "plugin_pkg"
    shutil.copytree(PKG, source)  # pip builds in place; keep the repository clean
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


def _cli(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "from slmstack.cli.app import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=_env(site), cwd=cwd, capture_output=True,
        text=True,
    )  # fmt: skip


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "intents.csv"
    rows = ["text,label"] + [f"{t},{label}" for label, texts in INTENTS.items() for t in texts]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_plugin_skill_trains_from_the_cli_and_loads(site, data, tmp_path):
    out = tmp_path / "kw"
    trained = _cli(site, "train", KIND, str(data), "--out", str(out), "--set",
                   "words_per_label=5", "--json", cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["skill"] == KIND
    config = json.loads((out / "config.json").read_text())
    assert config["skill"] == KIND and config["params"] == {"words_per_label": 5}

    predicted = _cli(site, "predict", str(out), "my card never arrived", "--json", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert "card" in predicted.stdout

    check = (
        f"import slmstack; s = slmstack.load({str(out)!r}); "
        "print(type(s).__module__, s.predict(['forgot my password'])[0].label)"
    )
    loaded = subprocess.run([sys.executable, "-c", check], env=_env(site), capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert loaded.stdout.split() == ["slmstack_keywords", "password"]


def test_a_plugin_skill_runs_in_a_workflow(site, data, tmp_path):
    (tmp_path / "workflow.yaml").write_text(
        f"""name: plugin
skills:
  intent: {{kind: {KIND}, params: {{words_per_label: 8}}, train: {data.name}}}
steps:
  - skill: intent
"""
    )
    ran = _cli(site, "run", "workflow.yaml", "please refund my order", "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert '"refund"' in ran.stdout


def test_a_typo_in_plugin_params_is_found_with_its_line(site, data, tmp_path):
    (tmp_path / "workflow.yaml").write_text(
        f"""name: plugin
skills:
  intent:
    kind: {KIND}
    params:
      word_per_label: 8
    train: {data.name}
steps:
  - skill: intent
"""
    )
    ran = _cli(site, "run", "workflow.yaml", "refund", cwd=tmp_path)
    assert ran.returncode == 2
    assert "workflow.yaml:6" in ran.stderr and "Did you mean 'words_per_label'" in ran.stderr
    assert "Traceback" not in ran.stderr
