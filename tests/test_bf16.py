"""bf16 inference twins: linear weights kept in bf16, results identical to autocast."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import BertConfig, BertModel

from slmstack.models.bf16 import inference_module
from slmstack.models.encoder import autocast


def _tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )  # fmt: skip
    return BertModel(config).eval()


def _run(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(), autocast("bf16"):
        return model(input_ids=ids, attention_mask=mask).last_hidden_state.float()


def test_fp32_gets_the_module_itself():
    model = _tiny_bert()
    assert inference_module(model, "fp32") is model


def test_bf16_twin_matches_autocast_on_fp32_weights_and_shares_the_rest():
    model = _tiny_bert()
    ids = torch.tensor([[2, 7, 9, 4, 0, 0], [3, 8, 8, 1, 5, 6]])
    mask = (ids != 0).long()
    twin = inference_module(model, "bf16")
    assert twin is not model
    # Linear weights in bf16 in the twin only; the original keeps fp32 for fp32 users.
    assert twin.encoder.layer[0].attention.self.query.weight.dtype == torch.bfloat16
    assert model.encoder.layer[0].attention.self.query.weight.dtype == torch.float32
    # Embeddings and layer norms are the original's tensors, not copies.
    assert twin.embeddings.word_embeddings.weight is model.embeddings.word_embeddings.weight
    assert twin.embeddings.LayerNorm.weight is model.embeddings.LayerNorm.weight
    # Autocast casts a weight the same way on every call: the results are bit for bit equal.
    assert torch.equal(_run(twin, ids, mask), _run(model, ids, mask))
    assert inference_module(model, "bf16") is twin  # made once


def test_bf16_twin_follows_weights_changed_in_place_or_replaced():
    model = _tiny_bert()
    ids = torch.tensor([[2, 7, 9, 4]])
    mask = torch.ones_like(ids)
    twin = inference_module(model, "bf16")
    before = _run(twin, ids, mask)
    with torch.no_grad():  # a training step changes the weight in place
        model.encoder.layer[1].output.dense.weight.mul_(3.0)
    changed = inference_module(model, "bf16")
    assert changed is not twin
    assert not torch.equal(_run(changed, ids, mask), before)
    assert torch.equal(_run(changed, ids, mask), _run(model, ids, mask))
    # A weight replaced by another tensor (e.g. a state dict assigned) also counts.
    layer = model.encoder.layer[0].intermediate.dense
    layer.weight = torch.nn.Parameter(torch.zeros_like(layer.weight))
    replaced = inference_module(model, "bf16")
    assert replaced is not changed
    assert torch.equal(_run(replaced, ids, mask), _run(model, ids, mask))


def test_skills_on_one_shared_base_share_one_bf16_twin(monkeypatch):
    from fixtures import QUERIES, TRAIN
    from slmstack import TextClassifier

    a = TextClassifier(strategy="head", precision="bf16").fit(TRAIN)
    b = TextClassifier(strategy="head", precision="bf16", head_c=1.0).fit(TRAIN)
    assert a.net_.encoder is b.net_.encoder  # the frozen base, loaded once
    twin = inference_module(a.net_.encoder, "bf16")
    assert inference_module(b.net_.encoder, "bf16") is twin  # and its bf16 twin made once
    # The skills' bf16 answers are autocast's on the fp32 base, to the bit.
    with_twin = a.predict_proba(QUERIES)
    import slmstack.skills._classifier_training as training

    monkeypatch.setattr(training, "inference_module", lambda module, _precision: module)
    assert (a.predict_proba(QUERIES) == with_twin).all()


def test_bf16_on_a_cpu_without_it_says_so(monkeypatch):
    """Asked for by name, bf16 is emulated there (2-5x slower than fp32): say so, once."""
    from slmstack.models import encoder

    monkeypatch.setattr(encoder, "native_bf16", lambda: False)
    monkeypatch.setattr(encoder, "_warned_emulated", False, raising=False)
    with pytest.warns(RuntimeWarning, match=r"precision='bf16'.*native bf16.*'fp32' or 'auto'"):
        assert encoder.resolve_precision("bf16") == "bf16"  # still what was asked for
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.resolve_precision("bf16")  # once per process, not on every batch
        assert encoder.resolve_precision("auto") == "fp32"  # "auto" chose: nothing to say
    monkeypatch.setattr(encoder, "native_bf16", lambda: True)
    monkeypatch.setattr(encoder, "_warned_emulated", False, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert encoder.resolve_precision("bf16") == "bf16"
