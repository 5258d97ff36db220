"""Skills on the same weights share one frozen encoder; training never changes it."""

from __future__ import annotations

import gc
import shutil
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest
import torch

from fixtures import QUERIES, TRAIN
from slmstack import FAQAnswerer, KBEntry, TextClassifier, load
from slmstack.models.resolve import resolve
from slmstack.models.shared import (
    is_shared,
    private_copy,
    private_encoders,
    shared_encoder,
    shared_tokenizer,
)
from slmstack.retrieval.contrastive import PairTraining, finetune_on_pairs
from slmstack.retrieval.encoder import SentenceEncoder
from slmstack.skills._frozen import FrozenEncoder
from slmstack.types import Prediction

# Ten skills on 24 texts: the small-validation-split warning is expected, not the subject.
pytestmark = pytest.mark.filterwarnings("ignore:the validation split has")

KB = [
    KBEntry("password", "How do I reset my password?", "Use 'Forgot password'.",
            ("I forgot my password", "password reset link")),
    KBEntry("refund", "How do I get a refund?", "Press 'Request refund'.",
            ("I want my money back", "refund my order")),
]  # fmt: skip


def _same(a: list[Prediction], b: list[Prediction]) -> None:
    """Equal predictions, to the last bit (latency aside)."""
    for x, y in zip(a, b, strict=True):
        assert (x.label, x.confidence, x.scores, x.data, x.abstained, x.warnings) == (
            y.label, y.confidence, y.scores, y.data, y.abstained, y.warnings,
        )  # fmt: skip


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    now = module.state_dict()
    return all(torch.equal(now[k], v) for k, v in before.items())


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory):
    """One fine-tuned classifier saved twice (same weights), as folders."""
    root = tmp_path_factory.mktemp("ft")
    clf = TextClassifier(strategy="finetune", epochs=1, batch_size=8, seed=1).fit(TRAIN)
    clf.save(root / "a")
    clf.save(root / "b")
    return root


def test_ten_head_classifiers_and_other_skills_share_one_encoder():
    heads = [TextClassifier(strategy="head", seed=i, head_c=1.0 + i).fit(TRAIN) for i in range(10)]
    first = heads[0].net_.encoder
    assert all(h.net_.encoder is first for h in heads)
    assert all(h.tokenizer_ is heads[0].tokenizer_ for h in heads)
    assert is_shared(first) and not first.training
    assert not any(p.requires_grad for p in first.parameters())
    # Retrieval and frozen-feature skills on the same weights get the same module.
    faq = FAQAnswerer(seed=0).fit(KB)
    assert faq.encoder_.model is first and faq.encoder_.tokenizer is heads[0].tokenizer_
    assert FrozenEncoder("minilm", max_length=64, batch_size=8).model is first


def test_keys_come_from_content_not_from_names(tmp_path):
    base = resolve("minilm")
    module = shared_encoder(base)
    copy_dir = shutil.copytree(base.path, tmp_path / "my-minilm")
    assert shared_encoder(resolve(copy_dir)) is module
    assert shared_tokenizer(copy_dir) is shared_tokenizer(base.path)


def test_fine_tuned_skills_share_after_loading_only_when_weights_match(finetuned):
    a, b = load(finetuned / "a"), load(finetuned / "b")
    assert a.net_.encoder is b.net_.encoder and is_shared(a.net_.encoder)
    head = TextClassifier(strategy="head").fit(TRAIN)
    assert a.net_.encoder is not head.net_.encoder  # other weights than the base


def test_predictions_equal_those_of_an_unshared_encoder(finetuned, tmp_path):
    TextClassifier(strategy="head").fit(TRAIN).save(tmp_path / "head")
    for folder in (tmp_path / "head", finetuned / "a"):
        shared = load(folder)
        with private_encoders():
            own = load(folder)
        assert own.net_.encoder is not shared.net_.encoder and not is_shared(own.net_.encoder)
        _same(shared.predict(QUERIES), own.predict(QUERIES))


def test_fine_tuning_one_skill_leaves_skills_that_share_its_base_unchanged(finetuned, tmp_path):
    a, b = load(finetuned / "a"), load(finetuned / "b")
    base = b.net_.encoder
    before, preds = _weights(base), b.predict(QUERIES)
    a.resume(TRAIN)  # fine-tunes a's encoder further
    assert a.net_.encoder is not base and not is_shared(a.net_.encoder)
    assert _unchanged(base, before) and is_shared(base)
    _same(b.predict(QUERIES), preds)
    a.save(tmp_path / "resumed")
    assert load(tmp_path / "resumed").net_.encoder is not base  # different weights now
    # A fresh fine-tune on the base that head skills share does not touch it either.
    head = TextClassifier(strategy="head").fit(TRAIN)
    minilm, head_preds = _weights(head.net_.encoder), head.predict(QUERIES)
    TextClassifier(strategy="finetune", epochs=1, batch_size=8).fit(TRAIN)
    assert _unchanged(head.net_.encoder, minilm)
    _same(head.predict(QUERIES), head_preds)


def test_contrastive_fine_tuning_trains_a_private_copy():
    enc = SentenceEncoder(resolve("minilm"), max_length=32, shared=True)
    base = enc.model
    before = _weights(base)
    pairs = [(ex.text, other.text) for ex, other in pairwise(TRAIN) if ex.label == other.label]
    finetune_on_pairs(enc, pairs, PairTraining(epochs=1, batch_size=4, patience=1))
    assert enc.model is not base and _unchanged(base, before)


def test_private_copy_is_trainable_and_private_modules_pass_through():
    module = shared_encoder(resolve("minilm"))
    own = private_copy(module)
    assert own is not module and not is_shared(own)
    assert all(p.requires_grad for p in own.parameters())
    assert not any(p.requires_grad for p in module.parameters())
    assert private_copy(own) is own


def test_memory_is_returned_when_no_skill_uses_a_base(finetuned):
    skill = load(finetuned / "a")
    ref = weakref.ref(skill.net_.encoder)
    del skill
    gc.collect()
    assert ref() is None


def test_concurrent_first_loads_load_once(finetuned):
    source = resolve(finetuned / "a" / "encoder")
    gc.collect()
    start = threading.Barrier(6)

    def get(_: int) -> torch.nn.Module:
        start.wait()
        return shared_encoder(source)

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(get, range(6)))
    assert all(m is got[0] for m in got)
