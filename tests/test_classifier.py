import numpy as np
import pytest
import torch

from fixtures import INTENTS, QUERIES, TRAIN
from skill_contract import check_skill_contract
from slmstack import ArtifactError, ConfigError, DataError, Example, TextClassifier, load
from slmstack.data.splits import stratified_split
from slmstack.models.encoder import load_encoder
from slmstack.models.resolve import resolve
from slmstack.skills._classifier_training import fit_probe
from slmstack.training.calibration import expected_calibration_error, softmax


def test_head_strategy_labels_and_confidences():
    clf = TextClassifier(strategy="head", seed=0).fit(TRAIN)
    preds = clf.predict(QUERIES[:3])
    assert [p.label for p in preds] == ["card", "refund", "password"]
    for p in preds:
        assert 0.0 < p.confidence <= 1.0
        assert len(p.scores) == 3 and p.scores[0].label == p.label
        assert p.scores[0].score >= p.scores[1].score >= p.scores[2].score
        assert abs(sum(s.score for s in p.scores) - 1.0) < 1e-6  # 3 labels: top-3 is everything
        assert p.usage.input_tokens > 0


@pytest.mark.slow
def test_finetune_strategy_contract(tmp_path):
    make = lambda: TextClassifier(strategy="finetune", epochs=2, batch_size=8, seed=3)  # noqa: E731
    clf = check_skill_contract(make, TRAIN, QUERIES, tmp_path)
    assert len(clf.history_) >= 1 and clf.best_epoch_ >= 1
    assert (tmp_path / "skill" / "encoder" / "model.safetensors").is_file()
    assert [p.label for p in clf.predict(QUERIES[:3])] == ["card", "refund", "password"]


def test_finetune_changes_the_encoder_and_probe_does_not():
    pristine = load_encoder(resolve("minilm")).state_dict()  # a private copy, never trained
    head = TextClassifier(strategy="head").fit(TRAIN)
    after_probe = head.net_.encoder.state_dict()
    assert after_probe.keys() == pristine.keys()
    changed = [k for k, w in pristine.items() if not torch.equal(w, after_probe[k])]
    assert not changed, f"the probe changed encoder weights: {changed[:5]}"
    ft = TextClassifier(strategy="finetune", epochs=1, batch_size=8).fit(TRAIN)
    w_ft = ft.net_.encoder.embeddings.word_embeddings.weight.detach()
    assert not torch.allclose(pristine["embeddings.word_embeddings.weight"], w_ft)
    # fine-tuning trains a copy: the frozen encoder the probe shares is left as it was
    assert all(torch.equal(w, head.net_.encoder.state_dict()[k]) for k, w in pristine.items())


def raw_logits(clf: TextClassifier, texts: list[str]) -> np.ndarray:
    """The network's logits before any temperature, computed here rather than by the skill."""
    batch = clf.tokenizer_(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return clf.net_.eval()(batch["input_ids"], batch["attention_mask"]).numpy()


def train_only_logits(clf: TextClassifier, train: list[Example], texts: list[str]) -> np.ndarray:
    """Logits of ``texts`` under a head fitted here on ``train`` alone (no held-out text)."""
    head = torch.nn.Linear(clf.net_.head.in_features, len(clf.classes_))
    x = clf._forward_all(clf._tokenize([ex.text for ex in train]), what="embed")
    y = np.array([clf.classes_.index(ex.label) for ex in train])
    fit_probe(head, x, y, c=clf.head_c, seed=clf.seed, warm=False)
    with torch.inference_mode():
        return head(torch.from_numpy(clf._forward_all(clf._tokenize(texts), what="embed"))).numpy()


def test_calibration_fits_the_temperature_on_validation_and_applies_it(monkeypatch):
    # the mechanics, on a split too small to sharpen by default (see the test below)
    monkeypatch.setattr("slmstack.training.calibration.MIN_TO_SHARPEN", 0)
    # Every 4th text carries the next label, so validation has errors and the best
    # temperature is a proper minimum (on clean data the NLL falls as T -> 0).
    labels = ["card", "password", "refund"]
    noisy = [
        Example(ex.text, labels[(labels.index(ex.label) + 1) % 3] if i % 4 == 3 else ex.label)
        for i, ex in enumerate(TRAIN)
    ]
    clf = TextClassifier(val_fraction=0.5, precision="fp32").fit(noisy)  # logits checked in fp32
    train, val = stratified_split(noisy, [ex.label for ex in noisy], fraction=0.5, seed=clf.seed)
    assert clf.metrics_["n_val"] == len(val) and clf.metrics_["val_accuracy"] < 1.0
    # The temperature is fitted on the validation logits of the train-only head; the head
    # the skill keeps is then refitted on every example (see the next test).
    logits = train_only_logits(clf, train, [ex.text for ex in val])
    y = np.array([clf.classes_.index(ex.label) for ex in val])
    assert clf.metrics_["val_accuracy"] == pytest.approx((logits.argmax(axis=1) == y).mean())

    def nll(t: float) -> float:
        return float(-np.log(softmax(logits, t)[np.arange(len(y)), y]).mean())

    t = clf.temperature_
    assert abs(np.log(t)) > 0.1, f"temperature {t} is (nearly) the identity"
    assert nll(t) < nll(1.0) and nll(t) <= nll(t * 1.2) and nll(t) <= nll(t / 1.2)
    assert clf.metrics_["temperature"] == t
    assert clf.metrics_["val_ece"] == pytest.approx(
        expected_calibration_error(softmax(logits, t), y)
    )
    before = expected_calibration_error(softmax(logits, 1.0), y)
    assert clf.metrics_["val_ece_before_calibration"] == pytest.approx(before)
    proba = clf.predict_proba(QUERIES)
    assert proba.shape == (4, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.allclose(proba, softmax(raw_logits(clf, QUERIES), t), atol=1e-5)
    confidences = [p.confidence for p in clf.predict(QUERIES[:3])]
    assert np.allclose(confidences, proba[:3].max(axis=1), atol=1e-5)


def test_head_is_refitted_on_every_example_including_validation(tmp_path):
    # One example per intent relabelled "odd": stratified_split holds at least one "odd"
    # text out, and that text reads like its old intent, so only a head that was fitted on
    # it predicts "odd". A train-only head would not (the held-out text is asserted below).
    odd = {texts[0] for texts in INTENTS.values()}
    data = [Example(ex.text, "odd" if ex.text in odd else ex.label) for ex in TRAIN]
    clf = TextClassifier(strategy="head", seed=0, head_c=100.0, precision="fp32").fit(data)
    train, val = stratified_split(data, [ex.label for ex in data], fraction=0.1, seed=0)
    held_out = [ex.text for ex in val if ex.label == "odd"]
    assert held_out and clf.metrics_["n_val"] == len(val)
    assert [p.label for p in clf.predict(held_out)] == ["odd"] * len(held_out)
    before = train_only_logits(clf, train, held_out).argmax(axis=1)
    assert "odd" not in {clf.classes_[i] for i in before}, "the test no longer tells them apart"
    # the refit saw every example: all of them are learned, not only the training split
    assert [p.label for p in clf.predict([ex.text for ex in data])] == [ex.label for ex in data]
    card = (clf.save(tmp_path / "clf") / "model_card.md").read_text()
    assert f"all {len(data)} examples, after calibration" in card


def test_long_input_is_reported_not_silently_truncated():
    clf = TextClassifier(max_length=16).fit(TRAIN)
    long_text = "my card has not arrived " * 20
    p_long, p_short = clf.predict([long_text, "where is my card"])
    assert p_long.warnings and "truncated" in p_long.warnings[0] and "16" in p_long.warnings[0]
    assert p_short.warnings == ()


def test_resume_with_more_data_and_new_labels(tmp_path):
    clf = TextClassifier().fit(TRAIN)
    clf.save(tmp_path / "v1")
    more = [
        Example("freeze my card now", "lost_card"),
        Example("my card was stolen", "lost_card"),
        Example("I lost my card yesterday", "lost_card"),
        Example("block my stolen card", "lost_card"),
    ]
    reloaded = TextClassifier.load(tmp_path / "v1")
    with pytest.raises(
        DataError, match=r"labels the skill was not trained on: 'lost_card'.*allow_new_labels=True"
    ):
        reloaded.resume(more + TRAIN)
    reloaded.resume(more + TRAIN, allow_new_labels=True)
    assert reloaded.classes_ == ["card", "password", "refund", "lost_card"]
    assert reloaded.predict(["someone stole my card"])[0].label == "lost_card"
    assert reloaded.predict(["I forgot my password"])[0].label == "password"
    reloaded.save(tmp_path / "v2")
    assert load(tmp_path / "v2").predict(["someone stole my card"])[0].label == "lost_card"
    assert load(tmp_path / "v1").classes_ == ["card", "password", "refund"]  # original kept


def test_a_resume_that_fails_keeps_the_labels_and_head_it_had():
    clf = TextClassifier(name_examples=True).fit(TRAIN)
    head = clf.net_.head.weight.detach().clone()
    digits = [Example("code 4711 again", "4711"), Example("the 4711 code", "4711")]
    with pytest.raises(DataError, match=r"'4711'.*contain no letters"):
        clf.resume(TRAIN + digits, allow_new_labels=True)
    # the label is not left behind, untrained, for the next resume or save to keep
    assert clf.classes_ == ["card", "password", "refund"]
    assert torch.equal(clf.net_.head.weight, head)
    clf.resume(TRAIN)  # and the skill resumes as before


def test_resume_on_same_labels_keeps_label_set():
    clf = TextClassifier().fit(TRAIN).resume(TRAIN[:8] + TRAIN[16:])  # card + password only
    assert clf.classes_ == ["card", "password", "refund"]
    assert clf.predict(["refund please"])[0].label == "refund"  # refund row kept


def test_bad_parameters_are_named():
    with pytest.raises(
        ConfigError,
        match=r"'strategy' parameter of TextClassifier must be 'head', 'finetune', 'fewshot' "
        r"or 'auto'\. Got 'lora'",
    ):
        TextClassifier(strategy="lora").fit(TRAIN)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'val_fraction'.*Got 1.5"):
        TextClassifier(val_fraction=1.5).fit(TRAIN)
    with pytest.raises(ConfigError, match="has no parameter 'epoch'"):
        TextClassifier().set_params(epoch=3)


def test_invalid_training_data_is_refused():
    with pytest.raises(DataError, match="only one class"):
        TextClassifier().fit([Example("a", "x"), Example("b", "x")])
    with pytest.raises(DataError, match="empty text"):
        TextClassifier().fit(
            [Example("", "x"), Example("b", "x"), Example("c", "y"), Example("d", "y")]
        )
    # (text, label) tuples instead of Examples: named, with the fix, not an AttributeError
    with pytest.raises(DataError, match=r"row 1 is a tuple .*Example\(text, label\)"):
        TextClassifier().fit([("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")])  # type: ignore[list-item]


def test_tampered_artifact_is_refused(tmp_path):
    folder = TextClassifier().fit(TRAIN).save(tmp_path / "clf")
    head = folder / "head.safetensors"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load(folder)


def test_labels_edited_in_the_config_are_refused_not_used(tmp_path):
    import json

    folder = TextClassifier().fit(TRAIN).save(tmp_path / "clf")
    config = json.loads((folder / "config.json").read_text())
    config["labels"] = config["labels"][::-1]  # every prediction would change its name
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="config.json was edited"):
        load(folder)


def test_a_relative_base_folder_is_saved_so_it_loads_from_anywhere(tmp_path, monkeypatch):
    from slmstack.models.resolve import resolve

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "mybase").symlink_to(resolve("minilm").path)
    monkeypatch.chdir(tmp_path / "train")
    folder = TextClassifier(base="mybase").fit(TRAIN).save(tmp_path / "clf")
    monkeypatch.chdir(tmp_path)  # a server started elsewhere
    assert load(folder).predict([TRAIN[0].text])[0].label is not None


def test_load_of_non_skill_folder(tmp_path):
    with pytest.raises(ArtifactError, match="no config.json"):
        load(tmp_path)


def test_model_card_has_provenance(tmp_path):
    folder = TextClassifier().fit(TRAIN).save(tmp_path / "clf")
    card = (folder / "model_card.md").read_text()
    for needle in (
        "minilm",
        "53aa5117",
        "Training data",
        "sha256",
        "val_accuracy",
        "seconds",
        "torch",
    ):
        assert needle in card


def test_a_tiny_or_perfectly_separated_validation_set_never_sharpens_the_confidences():
    from slmstack.training.calibration import MIN_TO_SHARPEN, fit_temperature

    right = np.array([[2.0, 0.0], [0.0, 2.0], [1.5, 0.2]], dtype=np.float32)
    assert fit_temperature(right, np.array([0, 1, 0])) == 1.0  # NLL falls as T -> 0 here
    # Many texts, all right: still no limit to the fall, so still no sharpening.
    many = np.tile(right, (MIN_TO_SHARPEN, 1))
    assert fit_temperature(many, np.tile(np.array([0, 1, 0]), MIN_TO_SHARPEN)) == 1.0
    # Many texts, some wrong and the right ones timid: a real minimum below 1 is kept.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    timid = np.stack([np.where(y == 0, 0.3, -0.3), np.where(y == 0, -0.3, 0.3)], axis=1)
    timid[:10] *= -1  # a few confidently wrong would push T up; a few mildly wrong keep it < 1
    assert fit_temperature(timid.astype(np.float32), y) < 1.0


def test_a_finetuned_skill_resumed_with_a_new_label_learns_it():
    more = [Example("freeze my card now", "lost_card"), Example("my card was stolen", "lost_card"),
            Example("I lost my card yesterday", "lost_card"),
            Example("block my stolen card", "lost_card")]  # fmt: skip
    clf = TextClassifier(strategy="finetune", epochs=1, scope_alpha=0.0).fit(TRAIN)
    clf.set_params(epochs=1)
    clf.resume(more + TRAIN, allow_new_labels=True)
    # the new row starts from the probe fitted on the new data, not from zero weights
    assert [p.label for p in clf.predict([ex.text for ex in more])] == ["lost_card"] * 4
