"""ONNX export of the entity tagger: round trip, windows, parity, gate, CLI, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from extract_fixtures import tiny_encoder, toy_sentences
from slmstack import load
from slmstack.cli.app import app
from slmstack.data.tagging import spans_to_tags
from slmstack.errors import ExportRefused, SkillError
from slmstack.export import RECIPES, export_tagger
from slmstack.skills.onnx_tagger import GRAPH, OnnxEntityTagger
from slmstack.skills.tagger import EntityTagger

# Longer than the 22-sub-word window: tagged through several overlapping windows.
LONG = ("yesterday Anna Smith visited Paris . " * 6) + "Bruno flew to Lima on monday ."
PROBES = ["Carla flew to Oslo on monday .", "yesterday Dmitri Smith visited Rome .", LONG,
          "nothing to see here", "   "]  # fmt: skip


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> EntityTagger:
    enc = tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))
    return EntityTagger(
        base=str(enc), epochs=8, learning_rate=3e-3, head_learning_rate=3e-2, batch_size=8,
        max_length=24, stride=6, warmup_ratio=0.0, patience=8, val_fraction=0.25,
        case_input=True,  # the exported graph must carry the casing input too
    ).fit(toy_sentences())  # fmt: skip


@pytest.fixture(scope="module")
def exported(tagger: EntityTagger, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx-tagger") / "fp32"
    export_tagger(tagger, out, toy_sentences(12))
    return out


def _spans(preds):
    return [[(s.label, s.start, s.end) for s in p.spans] for p in preds]


def test_fp32_round_trip_matches_the_torch_tagger(tagger, exported):
    skill = load(exported)
    assert isinstance(skill, OnnxEntityTagger)
    ours, theirs = skill.predict(PROBES), tagger.predict(PROBES)
    assert _spans(ours) == _spans(theirs)
    assert any(p.spans for p in ours[:3])  # the probes do hold entities
    for a, b in zip(ours, theirs, strict=True):
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
        assert a.abstained == b.abstained and a.usage.input_tokens == b.usage.input_tokens
    assert ours[4].abstained == "empty_input"
    for p, text in zip(ours, PROBES, strict=True):  # offsets point into the text
        assert all(text[s.start : s.end] == s.text for s in p.spans)
    config = json.loads((exported / "config.json").read_text())
    assert config["export"]["parity"]["agreement"] == 1.0
    assert config["export"]["gate"]["metric"] == "entity F1"
    assert config["export"]["fused_operators"].get("Attention", 0) >= 1
    with pytest.raises(SkillError, match="export it again"):
        skill.fit(toy_sentences())


def _corrupt(graph: Path, target: Path) -> None:
    """Scale every large 2-D float weight by 3 (a bug an exporter could make)."""
    model = onnx.load(str(graph))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[0] >= 32:
            init.CopyFrom(numpy_helper.from_array(arr * 3.0, init.name))
    onnx.save(model, str(target))


def test_export_refuses_a_broken_fp32_graph(tagger, tmp_path, monkeypatch):
    import slmstack.export.tagger as exporter

    real = exporter.export_tagger_graph

    def broken(skill, path):
        fused = real(skill, path)
        _corrupt(path, path)
        return fused

    monkeypatch.setattr(exporter, "export_tagger_graph", broken)
    with pytest.raises(ExportRefused, match="does not reproduce the torch tagger"):
        export_tagger(tagger, tmp_path / "out", toy_sentences(12))
    assert not (tmp_path / "out").exists()


def test_int8_gate_on_entity_f1(tagger, exported, tmp_path):
    # margin 0: a recipe that loses any F1 is refused; nothing written without --force
    result = export_tagger(tagger, tmp_path / "int8", toy_sentences(12), int8=True,
                           recipes=RECIPES[1:2], margin=100.0)  # fmt: skip
    assert [c.precision for c in result.candidates] == ["fp32", "int8"]
    assert result.chosen.precision == "int8" and result.chosen.gate.metric == "entity F1"
    assert (tmp_path / "int8" / GRAPH).stat().st_size < (exported / GRAPH).stat().st_size
    assert isinstance(load(tmp_path / "int8"), OnnxEntityTagger)


def _write_conll(path: Path, examples) -> Path:
    lines = []
    for ex in examples:
        offsets = ex.word_offsets()
        for (a, b), tag in zip(offsets, spans_to_tags(offsets, ex.spans), strict=True):
            lines.append(f"{ex.text[a:b]} {tag}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_exports_a_tagger(tagger, tmp_path):
    src = tmp_path / "tagger"
    tagger.save(src)
    val = _write_conll(tmp_path / "val.conll", toy_sentences(8))
    res = CliRunner().invoke(app, ["export", str(src), "--out", str(tmp_path / "o"),
                                   "--validation", str(val), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["chosen"]["gate"]["metric"] == "entity F1"
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "o"), str(val), "--json"])
    assert res.exit_code == 0, res.output


NO_TORCH = textwrap.dedent(
    """
    import sys, importlib.abc

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {"torch", "transformers", "sklearn", "scipy"}:
                raise ImportError(f"{name} is forbidden in this process")
            return None

    sys.meta_path.insert(0, Block())
    import slmstack
    skill = slmstack.load(sys.argv[1])
    print([(s.label, s.text) for s in skill.predict([sys.argv[2]])[0].spans])
    print("torch" in sys.modules)
    """
)


def test_exported_tagger_predicts_without_torch(tagger, exported, tmp_path):
    script = tmp_path / "no_torch.py"
    script.write_text(NO_TORCH)
    res = subprocess.run([sys.executable, str(script), str(exported), PROBES[0]],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    spans, has_torch = res.stdout.strip().splitlines()
    assert spans == str([(s.label, s.text) for s in tagger.predict(PROBES[:1])[0].spans])
    assert has_torch == "False"


def test_gate_refuses_validation_without_entities_the_tagger_learned(tagger, tmp_path):
    # Entity types of another scheme (PERSON for PER) are missed by both taggers alike:
    # both score 0 F1 and the gate would pass any quantization.
    import dataclasses

    from slmstack.errors import DataError

    renamed = [dataclasses.replace(ex, spans=tuple(dataclasses.replace(s, label=s.label + "SON")
                                                   for s in ex.spans))
               for ex in toy_sentences(12)]  # fmt: skip
    with pytest.raises(DataError, match=r"never learned: 'LOCSON', 'PERSON'"):
        export_tagger(tagger, tmp_path / "out", renamed, int8=True, recipes=RECIPES[1:2])
    bare = [dataclasses.replace(ex, spans=()) for ex in toy_sentences(12)]
    with pytest.raises(DataError, match="holds no entity"):
        export_tagger(tagger, tmp_path / "out", bare)
    assert not (tmp_path / "out").exists()
