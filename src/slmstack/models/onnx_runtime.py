"""Run an exported encoder graph with onnxruntime and ``tokenizers``, without torch.

This is the inference half of ``slmstack export --format onnx``: everything an exported
skill needs at prediction time, and nothing that imports torch or transformers, so a
server of exported skills installs ``slmstack[onnx]`` only.

Method:

* **Tokenize once per batch** with the Rust ``tokenizers`` library (``encode_batch``),
  padding switched off: MiniLM's ``tokenizer.json`` pads every text to 128 tokens,
  which costs 8x on short queries. Texts longer than the window are cut to it (the
  last kept token replaced by the separator, as the torch path does) and reported.
* **Sort by length** and cut into batches of similar length, so each batch is padded
  to its own longest text only; outputs are put back in input order.
* **Threads are set deliberately**: intra-op threads = the CPU cores this process may
  use (``os.sched_getaffinity``; the CPU count where there is none), one inter-op
  thread, sequential execution. The server's micro-batcher runs one model call at a
  time per skill, so this does not oversubscribe. ``SLMSTACK_ONNX_THREADS`` overrides the count.
* **One session per encoder**, its threads splitting each batch's operators. Side-by-side
  single-threaded sessions, one batch per core, were tried and measured no faster
  (BANKING77 test, MiniLM int8, 2 cores, three interleaved rounds: 608 / 846 / 766
  texts/s against 605 / 828 / 861 for one session) while holding a copy of the weights
  per core, so they were removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slmstack.errors import ArtifactError, ConfigError, MissingDependencyError

THREADS_ENV = "SLMSTACK_ONNX_THREADS"

DISABLED_FUSIONS = ("SkipLayerNormFusion",)
"""onnxruntime's load-time fusions switched off: the fused ``SkipLayerNormalization`` CPU
kernel is slower than the ``Add`` + ``LayerNormalization`` it would replace (measured in
:mod:`slmstack.export.graph`, which leaves them apart in the exported graph too)."""


def default_threads() -> int:
    """Intra-op threads: ``SLMSTACK_ONNX_THREADS`` or the cores this process may run on."""
    raw = os.environ.get(THREADS_ENV)
    if raw is not None:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"{THREADS_ENV}={raw!r}: expected a whole number >= 1")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "onnx", "An exported ONNX skill") from exc
    return onnxruntime


def open_session(path: Path, *, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU with deliberate thread settings."""
    ort = _ort()
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; export the skill again")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initialisers are noise here
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(DISABLED_FUSIONS))  # fmt: skip
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ArtifactError(f"onnxruntime cannot load {path}: {exc}") from exc


def load_fast_tokenizer(path: Path) -> Any:
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json``, padding and truncation off."""
    from tokenizers import Tokenizer

    if not path.is_file():
        raise ArtifactError(f"{path} is missing; export the skill again")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises a bare Exception
        raise ArtifactError(f"cannot read the tokenizer {path}: {exc}") from exc
    tok.no_padding()
    tok.no_truncation()
    return tok


@dataclass(frozen=True)
class TokenBatch:
    """Token ids of texts cut to the window, and each text's untruncated length."""

    input_ids: list[list[int]]
    lengths: list[int]
    window: int

    def truncation_warning(self, i: int) -> str | None:
        """A message when text ``i`` was cut to the window, else ``None``."""
        if self.lengths[i] <= self.window:
            return None
        return (
            f"input truncated: {self.lengths[i]} tokens, the model window is "
            f"{self.window}; only the first {self.window} tokens were used"
        )


class OnnxEncoder:
    """An exported graph plus its tokenizer: texts in, the graph's outputs out."""

    def __init__(
        self,
        graph: Path,
        tokenizer: Path,
        *,
        window: int,
        sep_id: int | None,
        pad_id: int,
        threads: int | None = None,
    ):
        self.graph = graph
        self.tokenizer_path = tokenizer
        self.threads = threads or default_threads()
        self.session = open_session(graph, threads=self.threads)
        self.tokenizer = load_fast_tokenizer(tokenizer)
        self.window = window
        self.sep_id = sep_id
        self.pad_id = pad_id
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        missing = {"input_ids", "attention_mask"} - self.inputs
        if missing:
            raise ArtifactError(f"{graph} has no input {sorted(missing)}; it is not an encoder")

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        """Token ids per text (special tokens added), cut to the window."""
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        lengths = [len(e.ids) for e in encoded]
        ids: list[list[int]] = []
        for e in encoded:
            x = list(e.ids)
            if len(x) > self.window:
                last = self.sep_id if self.sep_id is not None else x[self.window - 1]
                x = [*x[: self.window - 1], last]
            ids.append(x)
        return TokenBatch(ids, lengths, self.window)

    def run(self, tok: TokenBatch, *, batch_size: int) -> dict[str, NDArray[Any]]:
        """Every graph output for every text, in input order (batches sorted by length).

        Outputs must have one row per text (pooled vectors, logits, scores): a per-token
        output differs in width from batch to batch; pool it inside the graph.
        """
        n = len(tok.input_ids)
        batches = list(length_batches(tok.lengths, batch_size))
        out: dict[str, NDArray[Any]] = {}

        def store(idx: list[int], values: Sequence[NDArray[Any]]) -> None:
            for name, value in zip(self.outputs, values, strict=True):
                if name not in out:
                    out[name] = np.empty((n, *value.shape[1:]), dtype=value.dtype)
                out[name][idx] = value

        for idx in batches:
            store(idx, self.session.run(self.outputs, self.feed([tok.input_ids[i] for i in idx])))
        return out

    def feed(self, rows: Sequence[Sequence[int]]) -> dict[str, NDArray[np.int64]]:
        """The graph's inputs for token rows, right-padded to the longest row."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, x in enumerate(rows):
            ids[r, : len(x)] = x
            mask[r, : len(x)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return feed


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (less padding, same results)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
