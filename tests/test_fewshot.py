"""``TextClassifier(strategy="fewshot")``: SetFit's contrastive tuning, and ``auto``."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fixtures import INTENTS, QUERIES, TRAIN
from skill_contract import check_skill_contract
from slmstack import ConfigError, DataError, Example, TextClassifier
from slmstack.models.encoder import load_encoder, mean_pool
from slmstack.models.resolve import resolve
from slmstack.skills._fewshot import sample_pairs

FAST = {"epochs": 2, "pair_iterations": 2, "batch_size": 8, "pair_learning_rate": 1e-4}


def cosine_margin(encoder, tokenizer, examples) -> float:
    """Mean cosine of same-label pairs minus that of different-label pairs."""
    batch = tokenizer([ex.text for ex in examples], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder(**batch).last_hidden_state
        vec = F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
    cos = (vec @ vec.T).numpy()
    labels = np.array([ex.label for ex in examples])
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    return float(cos[same & off_diagonal].mean() - cos[~same].mean())


def test_sample_pairs_gives_each_example_a_positive_and_a_negative():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    left, right, target = sample_pairs(y, 3, np.random.default_rng(0))
    assert len(left) == len(right) == len(target) == 2 * 3 * len(y)
    pos, neg = target == 1.0, target == 0.0
    assert pos.sum() == neg.sum() == 3 * len(y)
    assert (y[left[pos]] == y[right[pos]]).all() and (left[pos] != right[pos]).all()
    assert (y[left[neg]] != y[right[neg]]).all()
    assert np.bincount(left, minlength=len(y)).tolist() == [6] * len(y)
    again = sample_pairs(y, 3, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip((left, right, target), again, strict=True))


def test_sample_pairs_refuses_a_single_label():
    with pytest.raises(DataError, match="at least two labels"):
        sample_pairs(np.zeros(4, dtype=np.int64), 1, np.random.default_rng(0))


@pytest.mark.parametrize("pairing", ["in_batch", "sampled"])
def test_contrastive_tuning_pulls_same_label_texts_together(pairing):
    tuned = TextClassifier(strategy="fewshot", seed=0, pairing=pairing, **FAST).fit(TRAIN)
    pristine = load_encoder(resolve("minilm"))
    before = cosine_margin(pristine, tuned.tokenizer_, TRAIN)
    after = cosine_margin(tuned.net_.encoder, tuned.tokenizer_, TRAIN)
    assert after > before + 0.1, (before, after)
    assert tuned.strategy_ == "fewshot" and tuned.best_epoch_ >= 1
    assert len(tuned.history_) == FAST["epochs"]
    assert [p.label for p in tuned.predict(QUERIES[:3])] == ["card", "refund", "password"]
    # the process-wide frozen encoder that `head` skills share is left untouched
    head = TextClassifier(strategy="head").fit(TRAIN)
    assert cosine_margin(head.net_.encoder, head.tokenizer_, TRAIN) == pytest.approx(before)


def test_head_is_fitted_on_every_example_including_validation():
    # Validation holds one example per label out of the encoder's pairs; the final head
    # still learns it. A text whose label is only right if the head saw it: relabel one
    # example per class to a new, fourth label and check the head predicts it.
    odd = [Example(texts[0], "odd") for texts in INTENTS.values()]
    data = [ex for ex in TRAIN if ex.text not in {o.text for o in odd}] + odd
    clf = TextClassifier(strategy="fewshot", seed=0, head_c=100.0, **FAST).fit(data)
    assert clf.metrics_["n_val"] >= 1
    held_out = [ex for ex in data if ex.label == "odd"]
    hits = sum(p.label == "odd" for p in clf.predict([ex.text for ex in held_out]))
    assert hits == len(held_out)


@pytest.mark.slow
def test_fewshot_contract_and_round_trip(tmp_path):
    make = lambda: TextClassifier(strategy="fewshot", seed=1, **FAST)  # noqa: E731
    clf = check_skill_contract(make, TRAIN, QUERIES, tmp_path)
    assert (tmp_path / "skill" / "encoder" / "model.safetensors").is_file()
    loaded = TextClassifier.load(tmp_path / "skill")
    assert loaded.strategy_ == "fewshot"
    np.testing.assert_allclose(
        loaded.predict_proba(QUERIES), clf.predict_proba(QUERIES), rtol=1e-5, atol=1e-6
    )


def test_auto_trains_head_on_small_and_larger_data_and_saves_the_choice(tmp_path):
    # fewshot lost or tied to head at every size measured (2 to 20 per label), so auto
    # trains head, shares the frozen base and writes no encoder of its own
    few = [Example(t, label) for label, texts in INTENTS.items() for t in texts[:2]]
    assert TextClassifier(strategy="auto", **FAST).fit(TRAIN).strategy_ == "head"
    clf = TextClassifier(strategy="auto", seed=0, **FAST).fit(few)
    assert clf.strategy == "auto" and clf.strategy_ == "head"
    clf.save(tmp_path / "s")
    loaded = TextClassifier.load(tmp_path / "s")
    assert loaded.strategy == "auto" and loaded.strategy_ == "head"
    assert not (tmp_path / "s" / "encoder").exists()
    assert [p.label for p in loaded.predict(QUERIES[:3])] == ["card", "refund", "password"]


def test_unknown_strategy_and_bad_pair_iterations_are_refused():
    with pytest.raises(ConfigError, match="strategy"):
        TextClassifier(strategy="setfit").fit(TRAIN)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pair_iterations"):
        TextClassifier(strategy="fewshot", pair_iterations=0).fit(TRAIN)


def test_cli_trains_fewshot_and_lr_sets_the_pair_rate(tmp_path):
    from typer.testing import CliRunner

    from fixtures import write_csv
    from slmstack.cli.app import app

    data = tmp_path / "intents.csv"
    write_csv(data)
    out = tmp_path / "skill"
    args = ["train", "classify", str(data), "--out", str(out), "--strategy", "fewshot",
            "--epochs", "1", "--batch-size", "8", "--lr", "3e-5", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["labels"] == 3 and summary["val_accuracy"] > 0.5
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "fewshot"
    assert config["params"]["pair_learning_rate"] == 3e-5
    assert config["params"]["learning_rate"] == 5e-5  # --lr did not go to the unused rate
    bad_args = [*args[:4], str(tmp_path / "other"), "--strategy", "setfit", *args[7:]]
    bad = CliRunner().invoke(app, bad_args)
    assert bad.exit_code == 2 and "'strategy'" in bad.output and "Traceback" not in bad.output


class _FixedVectors:
    """Stands in for the network: ``embed`` returns the given vectors."""

    def __init__(self, vectors):
        self.vectors = torch.tensor(vectors, dtype=torch.float32)

    def embed(self, ids, mask):
        return self.vectors


def test_in_batch_loss_weighs_positives_and_negatives_alike_and_survives_one_kind():
    from slmstack.skills._fewshot import in_batch_loss

    ids = mask = torch.zeros(1)
    # two same-label texts at cosine 0 (error 1) and a third, different label, at cosine 1
    # with the first (error 1) and 0 with the second (error 0)
    net = _FixedVectors([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    loss = in_batch_loss(net, (ids, mask, torch.tensor([0, 0, 1])))
    assert loss.item() == pytest.approx((1.0 + (1.0 + 0.0) / 2) / 2)
    one_label = in_batch_loss(net, (ids, mask, torch.tensor([0, 0, 0])))
    assert torch.isfinite(one_label) and one_label.item() > 0
    single = in_batch_loss(_FixedVectors([[1.0, 0.0]]), (ids, mask, torch.tensor([0])))
    assert single.item() == 0.0
