"""ONNX export of the FAQ answerer: round trip, KB updates, parity, gate, CLI, no torch."""

from __future__ import annotations

import json
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

from slmstack import FAQAnswerer, KBEntry, load
from slmstack.cli.app import app
from slmstack.errors import ConfigError, DataError, ExportRefused, SkillError
from slmstack.export import QuantRecipe, StaticRecipe, export_faq, read_faq_queries
from slmstack.export.checks import FP32_PARITY
from slmstack.export.faq import answer_outcomes, answer_parity
from slmstack.export.quantize import RECIPES
from slmstack.retrieval.onnx_encoder import GRAPH, TOKENIZER, OnnxSentenceEncoder

KB = [
    KBEntry("password", "How do I reset my password?", "Use 'Forgot password' on the login page.",
            ("I forgot my password", "password reset link")),
    KBEntry("refund", "How do I get a refund?", "Open Orders and press 'Request refund'.",
            ("I want my money back", "refund my order")),
    KBEntry("shipping", "How long does shipping take?", "Parcels arrive in 3 to 5 days.",
            ("when will my parcel arrive", "delivery time")),
    KBEntry("hours", "When is customer support open?", "9am to 5pm, Monday to Friday.",
            ("what are your opening hours", "support hours")),
]  # fmt: skip
CALIBRATION = [
    ("forgot my login password", "password"), ("refund please", "refund"),
    ("how fast is delivery", "shipping"), ("when can I call support", "hours"),
    ("who won the football match", None), ("tell me a joke", None),
    ("book a table for two", None),
]  # fmt: skip
QUERIES = [
    ("i can't remember my password", "password"), ("give me my money back", "refund"),
    ("how many days until my parcel is delivered", "shipping"),
    ("is the help desk open on sunday", "hours"),
    ("what is the capital of france", None), ("play some jazz music", None),
]  # fmt: skip
TEXTS = [q for q, _ in QUERIES]


@pytest.fixture(scope="module")
def faq() -> FAQAnswerer:
    return FAQAnswerer(seed=0, max_length=32).fit(KB, calibration=CALIBRATION)


@pytest.fixture(scope="module")
def exported(faq: FAQAnswerer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx-faq") / "fp32"
    export_faq(faq, out, QUERIES)
    return out


def _answers(preds):
    return [(p.label, p.abstained, p.text) for p in preds]


def test_fp32_round_trip_answers_like_the_torch_skill(faq, exported):
    skill = load(exported)
    assert isinstance(skill, FAQAnswerer) and isinstance(skill.encoder_, OnnxSentenceEncoder)
    probes = [*TEXTS, "   ", "password " * 40]  # an empty text and a truncated one
    ours, theirs = skill.predict(probes), faq.predict(probes)
    assert _answers(ours) == _answers(theirs)
    assert [p.label for p in ours[:3]] == ["password", "refund", "shipping"]
    for a, b in zip(ours, theirs, strict=True):
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
        assert [s.label for s in a.scores] == [s.label for s in b.scores]
        assert a.usage.input_tokens == b.usage.input_tokens and a.warnings == b.warnings
    assert ours[-1].warnings, "the cut text is reported"
    config = json.loads((exported / "config.json").read_text())
    assert config["skill"] == FAQAnswerer.skill_name  # one skill kind, another runtime
    assert config["export"]["parity"]["agreement"] == 1.0
    assert config["export"]["gate"]["metric"] == "answer accuracy"
    assert config["export"]["fused_operators"].get("Attention", 0) >= 1
    assert not (exported / "encoder").exists() and (exported / GRAPH).is_file()


def test_exported_skill_takes_kb_updates_and_saves_them(exported, tmp_path):
    skill = load(exported)
    skill.add([KBEntry("invoice", "Where do I find my invoice?", "Under Orders > Invoices.",
                       ("download my invoice", "I need a bill for my order"))])  # fmt: skip
    skill.remove(["hours"])
    skill.save(tmp_path / "updated")
    again = load(tmp_path / "updated")
    assert isinstance(again.encoder_, OnnxSentenceEncoder)
    assert {e.id for e in again.kb} == {"password", "refund", "shipping", "invoice"}
    pred = again.predict(["where can I download the invoice"])[0]
    match = pred.data if pred.abstained is None else pred.data["nearest"]
    assert match["entry"]["id"] == "invoice"


def _corrupt(graph: Path, target: Path) -> None:
    """Scale every large 2-D float weight by 3 (a bug an exporter could make)."""
    model = onnx.load(str(graph))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[0] >= 64:
            init.CopyFrom(numpy_helper.from_array(arr * 3.0, init.name))
    onnx.save(model, str(target))


def test_parity_catches_a_corrupted_encoder(faq, exported, tmp_path):
    bad = tmp_path / "bad.onnx"
    _corrupt(exported / GRAPH, bad)
    settings = json.loads((exported / "config.json").read_text())["onnx_encoder"]

    def with_graph(graph: Path) -> FAQAnswerer:
        enc = OnnxSentenceEncoder(graph, exported / TOKENIZER, dim=settings["dim"],
                                  window=settings["window"], sep_id=settings["sep_id"],
                                  pad_id=settings["pad_id"])  # fmt: skip
        return faq.exported(enc, {})

    reference = answer_outcomes(faq, TEXTS)
    good = answer_parity(reference, answer_outcomes(with_graph(exported / GRAPH), TEXTS,
                                                    keys=reference[0]), FP32_PARITY)  # fmt: skip
    assert good.passed and good.max_prob_diff < 1e-4
    report = answer_parity(reference, answer_outcomes(with_graph(bad), TEXTS, keys=reference[0]),
                           FP32_PARITY)  # fmt: skip
    assert not report.passed and "agrees with the torch skill" in report.problem()


@dataclass(frozen=True)
class LossyRecipe(QuantRecipe):
    """A real int8 recipe after damage to the weights: a quantization that hurts."""

    def apply(self, source: Path, target: Path) -> None:
        """Damage the weights, then quantize."""
        damaged = target.with_name("damaged.onnx")
        _corrupt(source, damaged)
        super().apply(damaged, target)


def test_int8_gate_keeps_a_good_recipe_and_refuses_a_lossy_one(faq, exported, tmp_path):
    result = export_faq(faq, tmp_path / "int8", QUERIES, int8=True, recipes=RECIPES[1:2])
    assert [c.precision for c in result.candidates] == ["fp32", "int8"]
    assert result.chosen.precision == "int8" and result.chosen.gate.passed
    assert (tmp_path / "int8" / GRAPH).stat().st_size < 0.8 * (exported / GRAPH).stat().st_size
    assert [p.label for p in load(tmp_path / "int8").predict(TEXTS[:2])] == ["password", "refund"]
    with pytest.raises(ExportRefused, match="answer accuracy points"):
        export_faq(faq, tmp_path / "lossy", QUERIES, int8=True,
                   recipes=[LossyRecipe("lossy", per_channel=True)], margin=0.0)  # fmt: skip
    assert not (tmp_path / "lossy").exists()


def test_static_int8_is_calibrated_on_the_validation_queries(faq, tmp_path):
    static = next(r for r in RECIPES if isinstance(r, StaticRecipe))
    result = export_faq(faq, tmp_path / "static", QUERIES, int8=True, recipes=[static],
                        margin=100.0)  # fmt: skip
    assert result.chosen.recipe == static and result.chosen.to_json()["recipe"]["static"]
    graph = onnx.load(str(tmp_path / "static" / GRAPH))
    assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)  # fixed scales, QDQ
    with pytest.raises(ConfigError, match="needs calibration feeds"):
        static.apply(tmp_path / "static" / GRAPH, tmp_path / "x.onnx")


def test_export_refuses_unknown_entries_and_an_exported_source(faq, exported, tmp_path):
    with pytest.raises(DataError, match="entries the KB does not hold"):
        export_faq(faq, tmp_path / "x", [("reset my password", "passwd")])
    with pytest.raises(SkillError, match="already exported"):
        export_faq(load(exported), tmp_path / "y", QUERIES)


def test_cli_exports_a_faq(faq, tmp_path):
    src, val = tmp_path / "faq", tmp_path / "val.csv"
    faq.save(src)
    val.write_text("text,label\n" + "".join(f'"{q}",{g or "oos"}\n' for q, g in QUERIES))
    assert read_faq_queries(val) == QUERIES
    res = CliRunner().invoke(app, ["export", str(src), "--out", str(tmp_path / "o"),
                                   "--validation", str(val), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["chosen"]["gate"]["metric"] == "answer accuracy" and report["chosen"]["passed"]
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "o"), str(val), "--json"])
    assert res.exit_code == 0, res.output


NO_TORCH = textwrap.dedent(
    """
    import sys, importlib.abc

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in {"torch", "transformers", "sentence_transformers",
                                      "sklearn", "scipy"}:
                raise ImportError(f"{name} is forbidden in this process")
            return None

    sys.meta_path.insert(0, Block())
    import slmstack
    from slmstack.retrieval import KBEntry, VectorIndex

    skill = slmstack.load(sys.argv[1])
    print(skill.predict([sys.argv[2]])[0].label)
    skill.add([KBEntry("invoice", "Where is my invoice?", "Under Orders.", ())])
    print(skill.predict(["where is my invoice"])[0].data.get("entry", {}).get("id"))
    print("torch" in sys.modules)
    """
)


def test_exported_faq_answers_and_updates_without_torch(faq, exported, tmp_path):
    script = tmp_path / "no_torch.py"
    script.write_text(NO_TORCH)
    res = subprocess.run([sys.executable, str(script), str(exported), TEXTS[1]],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["refund", "invoice", "False"]


def test_index_scores_without_torch_match_the_matrix_product():
    from slmstack.retrieval.index import _NO_BLAS_QUERIES, _numpy_similarities

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((50, 8)).astype(np.float32)
    for n in (1, _NO_BLAS_QUERIES + 5):  # the einsum path and the BLAS path
        q = rng.standard_normal((n, 8)).astype(np.float32)
        np.testing.assert_allclose(_numpy_similarities(q, rows), q @ rows.T, rtol=1e-5, atol=1e-5)
