"""Trace a :class:`TextClassifier` into one ONNX graph: token ids in, logits and scope out.

The graph holds everything between the tokenizer and the softmax, so prediction needs no
numpy linear algebra (a numpy matmul wakes the BLAS thread pool, whose spinning threads
slow the next graph call on a 2-core machine):

* encoder → mean pooling over the attention mask → L2 normalisation (when the skill
  normalises) → linear head: ``logits`` (float32);
* the out-of-scope typicality, in float64 as the torch skill computes it: the pooled
  vector is whitened with the Cholesky factor of the inverse shrunk covariance, and the
  score is minus the squared distance to the nearest class mean (labels without data
  never match): ``scope_score``. The conformal p-value is then a ``searchsorted`` over
  the saved validation reference, outside the graph.

The TorchScript-based exporter (``dynamo=False``) is used: it writes one self-contained
file (the dynamo exporter writes the weights beside it) in about 3 s for MiniLM. The
encoder is traced with eager attention, whose pattern onnxruntime's transformer optimizer
recognises: it then fuses each layer's attention and the embeddings' LayerNorm into
single kernels (measured on MiniLM, 2 cores: batch-1 p50 of the int8 graph 1.6-1.8 ms
fused against 2.3-2.9 ms unfused; throughput unchanged).

The GELUs are left as traced (``erf`` and its arithmetic): onnxruntime folds each
feed-forward bias into the quantized MatMul before it and fuses what is left into its
``Gelu`` kernel at load time, which runs in half the time of the ``BiasGelu`` the offline
optimizer would write (int8 MiniLM, 64 BANKING77 test texts, 2 threads, onnxruntime's
profiler: 4.9 against 10.5 ms per batch for the six of them, 61.5 against 68.8 ms in all).
Throughput on the 3,080 test texts, batches of 64, 6 alternating rounds: 660 against 602
texts/s (per-round ratio 1.00-1.15, median 1.13), identical accuracy (92.01); at 1
thread, 561 against 506. An fp32 graph (no quantized MatMul to take the bias) is fused
into ``BiasGelu`` at load time either way; there the two run alike (301 against 299
texts/s with the fusion turned off), so the load-time fusions are left as they are.

The residual additions stay apart from their LayerNorm (``Add`` + ``LayerNormalization``,
not the fused ``SkipLayerNormalization``), here and at load time
(:data:`slmstack.models.onnx_runtime.DISABLED_FUSIONS`): onnxruntime 1.32's CPU kernel
for the fused operator is about 4x slower than the pair it replaces (one operator on a
64 x 20 x 384 batch, 2 threads: 1.55-1.62 ms against 0.35-0.43 ms), which cost the int8
MiniLM graph 15-20% of its batch-64 throughput (BANKING77 test, 6 alternating rounds:
1,082 against 881 texts/s; another run 1,012 against 893) and 0.2 ms at batch 1.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slmstack.errors import ArtifactError
from slmstack.models.encoder import mean_pool
from slmstack.skills._scope import SHRINKAGE, ScopeModel
from slmstack.skills.classifier import TextClassifier
from slmstack.skills.tagger import EntityTagger

OPSET = 17


class _ScopeScore(nn.Module):
    """Minus the squared Mahalanobis distance to the nearest class mean (float64)."""

    whiten: torch.Tensor
    centres_t: torch.Tensor
    centre_norms: torch.Tensor

    def __init__(self, scope: ScopeModel):
        super().__init__()
        dim = scope.scatter.shape[0]
        cov = scope.scatter / max(scope.scatter_n, 1.0)
        cov = cov + SHRINKAGE * max(float(np.trace(cov)) / dim, 1e-6) * np.eye(dim)
        whiten = np.linalg.cholesky(np.linalg.inv(cov))
        centres = scope.means @ whiten
        empty = np.where(scope.counts == 0, 1e300, 0.0)
        self.register_buffer("whiten", torch.from_numpy(whiten))
        self.register_buffer("centres_t", torch.from_numpy(np.ascontiguousarray(centres.T)))
        self.register_buffer("centre_norms", torch.from_numpy((centres**2).sum(1) + empty))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The typicality score of each pooled vector."""
        z = x.double() @ self.whiten
        dist = (z * z).sum(1, keepdim=True) - 2.0 * (z @ self.centres_t) + self.centre_norms
        return -dist.min(dim=1).values


class ExportNet(nn.Module):
    """The classifier's forward pass as one module: (ids, mask) → (logits, scope)."""

    def __init__(self, skill: TextClassifier):
        super().__init__()
        self.net = skill.net_
        self.normalize = skill.normalize
        self.scope = None if skill.scope_ is None else _ScopeScore(skill.scope_)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """``logits``, or ``(logits, scope_score)`` when the skill has a scope model."""
        encoder: Any = self.net.encoder
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        x = F.normalize(pooled, dim=-1) if self.normalize else pooled
        head: Any = self.net.head
        logits = head(x.float())
        if self.scope is None:
            return logits
        return logits, self.scope(x.float())


class TaggerExportNet(nn.Module):
    """The tagger's forward pass: (ids, mask, casing) → per-sub-word tag logits."""

    def __init__(self, skill: EntityTagger):
        super().__init__()
        self.net = skill.net_

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, case_ids: torch.Tensor
    ) -> torch.Tensor:
        """Tag logits, one row per sub-word (the torch skill's eval forward)."""
        logits: torch.Tensor = self.net(input_ids, attention_mask, case_ids)
        return logits


def export_graph(skill: TextClassifier, path: Path) -> dict[str, int]:
    """Write ``skill``'s fused graph to ``path``; return the fused operator counts."""
    model = ExportNet(skill).eval()
    outputs = ["logits"] if model.scope is None else ["logits", "scope_score"]
    return export_encoder_graph(skill.net_.encoder, model, path, outputs=outputs)


def export_tagger_graph(skill: EntityTagger, path: Path) -> dict[str, int]:
    """Write the tagger's fused graph (per-token ``logits``) to ``path``."""
    model = TaggerExportNet(skill).eval()
    return export_encoder_graph(skill.net_.encoder, model, path, outputs=["logits"],
                                extra_inputs=("case_ids",), per_token=True)  # fmt: skip


def export_encoder_graph(
    encoder: Any,
    model: nn.Module,
    path: Path,
    *,
    outputs: list[str],
    extra_inputs: tuple[str, ...] = (),
    per_token: bool = False,
) -> dict[str, int]:
    """Trace ``model`` (built on ``encoder``) to ``path``, fused; return the fused op counts."""
    raw = path.with_name(path.stem + "-traced.onnx")
    previous = encoder.config._attn_implementation
    encoder.set_attn_implementation("eager")  # the attention pattern the fuser knows
    try:
        _trace(model, raw, outputs, extra_inputs, per_token)
    finally:
        encoder.set_attn_implementation(previous)
    config = encoder.config
    try:
        return fuse(raw, path, heads=int(config.num_attention_heads),
                    hidden=int(config.hidden_size))  # fmt: skip
    finally:
        raw.unlink(missing_ok=True)


def fuse(source: Path, target: Path, *, heads: int, hidden: int) -> dict[str, int]:
    """Apply onnxruntime's offline BERT fusions to ``source``; return the fused op counts."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False  # slower than Add + LayerNorm: see the module notes
    options.enable_bias_skip_layer_norm = False
    options.enable_gelu = False  # onnxruntime's load-time Gelu beats BiasGelu: module notes
    options.enable_bias_gelu = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = optimize_model(str(source), model_type="bert", num_heads=heads,
                                   hidden_size=hidden, opt_level=1,
                                   optimization_options=options)  # fmt: skip
    except Exception as exc:  # the optimizer raises many unrelated types
        raise ArtifactError(f"onnxruntime could not optimise the exported graph: {exc}") from exc
    model.save_model_to_file(str(target))
    stats = model.get_fused_operator_statistics()
    return {k: int(v) for k, v in stats.items() if v}


def _trace(
    model: nn.Module, path: Path, outputs: list[str], extra_inputs: tuple[str, ...], per_token: bool
) -> None:
    """Trace ``model`` to ``path`` (unfused) with dynamic batch and token axes."""
    names = ["input_ids", "attention_mask", *extra_inputs]
    args = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "tokens"} for n in names}
    axes.update({o: {0: "batch", 1: "tokens"} if per_token else {0: "batch"} for o in outputs})
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about Python ints in shapes
            torch.onnx.export(
                model, args, str(path), input_names=names, output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )  # fmt: skip
    except Exception as exc:  # the exporter raises many unrelated types
        raise ArtifactError(f"cannot export the model to ONNX: {exc}") from exc
