"""ONNX export: round trip, parity check, accuracy gate, CLI, and prediction without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from fixtures import QUERIES, TRAIN, write_csv
from slmstack import ArtifactError, DataError, TextClassifier, load
from slmstack.cli.app import app
from slmstack.errors import ExportRefused, SkillError
from slmstack.export import QuantRecipe, export_classifier
from slmstack.export.checks import FP32_PARITY, parity
from slmstack.export.quantize import RECIPES
from slmstack.skills.onnx_classifier import GRAPH, TOKENIZER, OnnxTextClassifier

# A long text, so that truncation is reported by both runtimes alike.
LONG = " ".join(["my card has not arrived and I keep waiting for it"] * 30)
PROBES = [*QUERIES, LONG, "  ", "refund"]


@pytest.fixture(scope="module")
def clf() -> TextClassifier:
    # A quarter of the texts for validation, so the scope model has a reference to score.
    # fp32, so that its confidences compare with the fp32 graph's to 1e-4.
    return TextClassifier(strategy="head", val_fraction=0.25, scope_alpha=0.2,
                          max_length=32, precision="fp32", seed=0).fit(TRAIN)  # fmt: skip


@pytest.fixture(scope="module")
def exported(clf, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "fp32"
    export_classifier(clf, out, TRAIN)
    return out


def test_fp32_round_trip_matches_the_torch_skill(clf, exported):
    skill = load(exported)
    assert isinstance(skill, OnnxTextClassifier)
    ours, theirs = skill.predict(PROBES), clf.predict(PROBES)
    for a, b in zip(ours, theirs, strict=True):
        assert a.label == b.label and a.abstained == b.abstained
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
        assert [s.label for s in a.scores] == [s.label for s in b.scores]
        assert a.warnings == b.warnings  # truncation reported the same way
        assert a.usage.input_tokens == b.usage.input_tokens
        assert a.data.get("in_scope_p") == pytest.approx(b.data.get("in_scope_p"), abs=1e-6)
    assert ours[4].warnings and "truncated" in ours[4].warnings[0]
    assert ours[5].abstained == "empty_input"
    config = json.loads((exported / "config.json").read_text())
    assert config["export"]["precision"] == "fp32"
    assert config["export"]["source"]["parity_against"] == "fp32"
    assert config["export"]["source"]["strategy"] == "head"
    with pytest.raises(DataError, match="empty text"):  # as the torch skill
        skill.predict_proba(["  "])
    with pytest.raises(DataError, match="empty text"):
        clf.predict_proba(["  "])
    for either in (skill, clf):  # no texts: no rows, one column per class (was an IndexError)
        assert either.predict_proba([]).shape == (0, len(clf.classes_))
    probs, p_values = skill.proba_and_p_values([])
    assert probs.shape == (0, len(clf.classes_)) and p_values is not None and not len(p_values)
    assert config["export"]["source"]["precision"] in ("fp32", "bf16", "auto")
    assert config["export"]["parity"]["agreement"] == 1.0
    assert config["export"]["parity"]["scope_agreement"] == 1.0  # the scope model's flags too
    assert config["export"]["fused_operators"].get("Attention", 0) >= 1
    assert {GRAPH, TOKENIZER} <= set(config["files"])  # hashed like every skill file


def test_residual_layernorms_stay_unfused_in_the_file_and_at_load(exported, tmp_path):
    # The fused SkipLayerNormalization kernel is slower on CPU (see export/graph.py): the
    # exporter leaves Add + LayerNormalization apart, and onnxruntime must not refuse them
    # at load time. A misspelt optimizer name would be ignored silently, so check the
    # graph onnxruntime actually runs.
    import onnxruntime as ort

    from slmstack.models.onnx_runtime import DISABLED_FUSIONS

    ops = {n.op_type for n in onnx.load(str(exported / GRAPH)).graph.node}
    assert "LayerNormalization" in ops and "SkipLayerNormalization" not in ops

    def optimised_ops(disabled: list[str]) -> set[str]:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp_path / f"opt{len(disabled)}.onnx")
        ort.InferenceSession(str(exported / GRAPH), opts, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled)  # fmt: skip
        return {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}

    assert "SkipLayerNormalization" in optimised_ops([])  # what onnxruntime would do
    running = optimised_ops(list(DISABLED_FUSIONS))
    assert "SkipLayerNormalization" not in running
    # The GELUs stay as traced in the file (see export/graph.py): an int8 graph then runs
    # onnxruntime's Gelu kernel instead of the twice-as-slow BiasGelu.
    assert "BiasGelu" not in ops and "Erf" in ops


def test_exported_skill_refuses_training_and_tampering(exported, tmp_path):
    skill = load(exported)
    with pytest.raises(SkillError, match="export it again"):
        skill.fit(TRAIN)
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    with (copy / GRAPH).open("r+b") as f:
        f.seek(5000)
        f.write(b"\x00" * 64)
    with pytest.raises(ArtifactError, match="sha256"):
        load(copy)


def _corrupt(graph: Path, target: Path) -> None:
    """Scale every 2-D float weight of the encoder by 3 (a bug an exporter could make)."""
    model = onnx.load(str(graph))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[0] >= 384:
            init.CopyFrom(numpy_helper.from_array(arr * 3.0, init.name))
    onnx.save(model, str(target))


def test_parity_check_catches_a_corrupted_graph(clf, exported, tmp_path):
    bad = tmp_path / "bad.onnx"
    _corrupt(exported / GRAPH, bad)
    good, broken = load(exported), OnnxTextClassifier.from_graph(
        bad, exported / TOKENIZER, labels=clf.classes_, temperature=clf.temperature_,
        window=clf.window_, sep_id=clf.tokenizer_.sep_token_id, pad_id=0,
        scope_reference=clf.scope_.reference, export={}, provenance=clf.provenance_,
    )  # fmt: skip
    texts = [ex.text for ex in TRAIN]
    reference = clf.predict_proba(texts)
    assert parity(reference, good.predict_proba(texts), FP32_PARITY).passed
    report = parity(reference, broken.predict_proba(texts), FP32_PARITY)
    assert not report.passed and "agrees with the torch skill" in report.problem()


def test_export_refuses_a_broken_fp32_graph(clf, tmp_path, monkeypatch):
    import slmstack.export.classifier as exporter

    real = exporter.export_graph

    def broken(skill, path):
        fused = real(skill, path)
        _corrupt(path, path)
        return fused

    monkeypatch.setattr(exporter, "export_graph", broken)
    with pytest.raises(ExportRefused, match="export bug"):
        export_classifier(clf, tmp_path / "out", TRAIN)
    assert not (tmp_path / "out").exists()


def test_parity_counts_out_of_scope_decisions(clf, tmp_path, monkeypatch):
    # A broken scope score leaves every label and probability as it was, but flags the
    # texts out of scope where the torch skill answers: the check must see the decisions
    # the skill makes, not the argmax alone (it reported 100% agreement here).
    import slmstack.export.classifier as exporter

    real = exporter.export_graph

    def broken_scope(skill, path):
        fused = real(skill, path)
        model = onnx.load(str(path))
        for init in model.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float64 and arr.ndim == 2 and arr.shape[0] == arr.shape[1]:
                init.CopyFrom(numpy_helper.from_array(arr * 3.0, init.name))
        onnx.save(model, str(path))
        return fused

    monkeypatch.setattr(exporter, "export_graph", broken_scope)
    with pytest.raises(ExportRefused, match=r"the decision alone agrees on 0\.0%.*export bug"):
        export_classifier(clf, tmp_path / "out", TRAIN)
    assert not (tmp_path / "out").exists()


@dataclass(frozen=True)
class LossyRecipe(QuantRecipe):
    """A real int8 recipe followed by damage, standing in for a quantization that hurts."""

    def apply(self, source: Path, target: Path) -> None:
        """Damage the weights, then quantize."""
        damaged = target.with_name("damaged.onnx")
        _corrupt(source, damaged)
        super().apply(damaged, target)


def test_gate_refuses_a_lossy_quantization_and_force_overrides(clf, tmp_path):
    lossy = LossyRecipe("lossy", per_channel=True)
    with pytest.raises(ExportRefused, match="Nothing was written"):
        export_classifier(clf, tmp_path / "out", TRAIN, int8=True, recipes=[lossy])
    assert not (tmp_path / "out").exists()
    result = export_classifier(clf, tmp_path / "out", TRAIN, int8=True, recipes=[lossy],
                               force=True)  # fmt: skip
    assert result.forced and not result.chosen.gate.passed
    assert json.loads((tmp_path / "out" / "config.json").read_text())["export"]["forced"]


def test_refusal_names_the_check_each_recipe_failed():
    # A recipe within the margin that changes too many decisions fails parity, not the
    # gate: the refusal said every recipe "loses more than 0.5 points" and to raise
    # --margin, which could not help it.
    from slmstack.export.candidates import Candidate, choose
    from slmstack.export.checks import INT8_PARITY, GateReport, ParityReport

    def cand(name: str, agreement: float, scope: float, exported: float) -> Candidate:
        report = ParityReport(200, agreement, 0.3, 0.01, agreement >= 0.9, INT8_PARITY, scope)
        return Candidate("int8" if name else "fp32", QuantRecipe(name, per_channel=True) if name
                         else None, report, GateReport(200, 90.0, exported, 0.5), 1.0, 1.0)  # fmt: skip

    fp32, moved = cand("", 1.0, 1.0, 90.0), cand("moved", 0.85, 0.86, 89.8)
    with pytest.raises(ExportRefused) as refused:
        choose([fp32, moved, cand("lossy", 0.95, 1.0, 88.0)], int8=True, force=False)
    message = str(refused.value)
    assert "moved: it agrees with the torch skill on 85.0% of 200 texts" in message
    assert "decision alone agrees on 86.0%" in message
    assert "lossy: it loses 2.00 accuracy points (at most 0.5)" in message
    assert "every int8 recipe loses" not in message and "raise --margin" in message
    with pytest.raises(ExportRefused) as refused:  # none failed the gate: --margin is no help
        choose([fp32, moved], int8=True, force=False)
    assert "--margin" not in str(refused.value) and "--force" in str(refused.value)


def test_gate_refuses_validation_labels_the_skill_never_learned(clf, tmp_path):
    # Labels from another column (or another label set) are wrong for both skills alike:
    # the gate would compare 0 with 0 points and pass any quantization.
    from slmstack.errors import DataError
    from slmstack.types import Example

    other = [Example(ex.text, f"intent_{ex.label}") for ex in TRAIN]
    with pytest.raises(DataError, match=r"never learned: 'intent_card'.*label_column"):
        export_classifier(clf, tmp_path / "out", other, int8=True, recipes=RECIPES[1:2])
    assert not (tmp_path / "out").exists()


def test_int8_export_keeps_accuracy_and_shrinks(clf, exported, tmp_path):
    result = export_classifier(clf, tmp_path / "int8", TRAIN, int8=True, recipes=RECIPES[1:2])
    assert result.chosen.precision == "int8" and result.chosen.gate.passed
    assert [c.precision for c in result.candidates] == ["fp32", "int8"]
    size = (tmp_path / "int8" / GRAPH).stat().st_size
    assert size < 0.8 * (exported / GRAPH).stat().st_size
    skill = load(tmp_path / "int8")
    assert [p.label for p in skill.predict(QUERIES[:3])] == ["card", "refund", "password"]


def test_cli_export_and_its_errors(clf, tmp_path):
    src, data = tmp_path / "skill", write_csv(tmp_path / "val.csv")
    clf.save(src)
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(src), "--out", str(tmp_path / "o"),
                              "--validation", str(data), "--format", "tflite"])  # fmt: skip
    assert res.exit_code != 0 and "only format is 'onnx'" in res.output
    res = runner.invoke(app, ["export", str(src), "--out", str(tmp_path / "o"),
                              "--validation", str(data), "--recipe", "per-tensor"])  # fmt: skip
    assert res.exit_code != 0 and "--recipe only applies with --int8" in res.output
    res = runner.invoke(app, ["export", str(src), "--out", str(tmp_path / "o"), "--int8",
                              "--validation", str(data), "--recipe", "nope"])  # fmt: skip
    assert res.exit_code != 0 and "unknown int8 recipe" in res.output
    res = runner.invoke(app, ["export", str(src), "--out", str(tmp_path / "o"),
                              "--validation", str(data), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert "their verdict is weak" in res.stderr  # a handful of validation texts
    assert report["chosen"]["precision"] == "fp32" and report["chosen"]["passed"]
    assert load(tmp_path / "o").predict(["money back please"])[0].label == "refund"
    # read as `slmstack eval` reads it: a label seen once scores; an unlearned one is refused
    once = tmp_path / "once.csv"
    once.write_text(data.read_text() + "what is my balance,balance\n")
    res = runner.invoke(app, ["export", str(src), "--out", str(tmp_path / "o2"),
                              "--validation", str(once)])  # fmt: skip
    assert res.exit_code == 2 and "labels the skill never learned: 'balance'" in res.output
    # the fix is one export takes: it has no --unseen-labels (that is `slmstack eval`'s)
    assert "--unseen-labels" not in res.output and "remove those rows" in res.output
    single = tmp_path / "single.csv"
    lines = data.read_text().splitlines()
    single.write_text("\n".join(lines[:2]) + "\n")  # the header and one row: a label once
    res = runner.invoke(app, ["export", str(src), "--out", str(tmp_path / "o3"),
                              "--validation", str(single), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output


NO_TORCH = textwrap.dedent(
    """
    import sys, importlib.abc

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {"torch", "transformers", "sentence_transformers", "sklearn", "scipy"}:
                raise ImportError(f"{name} is forbidden in this process")
            return None

    sys.meta_path.insert(0, Block())
    import slmstack
    from slmstack.workflows.loader import load_workflow
    from starlette.testclient import TestClient
    from slmstack.serve.app import create_app

    skill = slmstack.load(sys.argv[1])
    print(skill.predict(["money back please"])[0].label)
    flow = load_workflow(sys.argv[2])
    print(flow.run("my card never came").output.label)
    with TestClient(create_app(sys.argv[3])) as client:
        r = client.post("/v1/skills/intent/predict", json={"text": "I forgot my password"})
        assert r.status_code == 200, r.text
        print(r.json()["results"][0]["prediction"]["label"])
    print("torch" in sys.modules)
    """
)


def _run_without_torch(python: str, exported: Path, tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"name: intents\nskills:\n  intent: {exported}\nsteps:\n  - skill: intent\n")
    server = tmp_path / "serve.yaml"
    server.write_text(f"skills:\n  intent: {exported}\n")
    script = tmp_path / "no_torch.py"
    script.write_text(NO_TORCH)
    res = subprocess.run([python, str(script), str(exported), str(flow), str(server)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["refund", "card", "password", "False"]


def test_exported_skill_workflow_and_server_run_without_torch(exported, tmp_path):
    _run_without_torch(sys.executable, exported, tmp_path)


def test_light_install_serves_exported_skills(exported, tmp_path):
    """``pip install '.[onnx,serve,workflows]'`` in a virtualenv of its own (made by CI)."""
    python = os.environ.get("SLMSTACK_LIGHT_PYTHON")
    if not python:
        if os.environ.get("CI"):
            pytest.fail("CI must set SLMSTACK_LIGHT_PYTHON (scripts/test.sh makes that venv)")
        pytest.skip("set SLMSTACK_LIGHT_PYTHON to a venv with slmstack[onnx,serve,workflows]")
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0, "the light venv must not have torch installed"
    _run_without_torch(python, exported, tmp_path)


def test_thread_count_without_cpu_affinity(monkeypatch):
    # macOS and Windows have no os.sched_getaffinity: loading an exported skill there
    # must not crash, it uses the CPU count instead.
    from slmstack.models.onnx_runtime import THREADS_ENV, default_threads

    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert default_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert default_threads() == 3
