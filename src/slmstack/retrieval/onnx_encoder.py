"""Sentence vectors from an exported graph: onnxruntime and ``tokenizers``, no torch.

The ONNX runtime of :class:`~slmstack.retrieval.base.TextEncoder`. The graph
(``encoder.onnx``, written by ``slmstack export``, :mod:`slmstack.export.faq`) holds the
whole torch :meth:`SentenceEncoder.forward <slmstack.retrieval.encoder.SentenceEncoder.forward>`:
encoder, mean pooling over the attention mask and L2 normalisation, so its ``embedding``
output is already the unit vector the index compares. Tokenization, length-sorted
batches and thread settings are those of :class:`~slmstack.models.onnx_runtime.OnnxEncoder`,
shared with the exported classifier.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmstack.errors import ArtifactError
from slmstack.models.onnx_runtime import OnnxEncoder
from slmstack.progress import progress
from slmstack.retrieval.base import Encoded

GRAPH = "encoder.onnx"
TOKENIZER = "tokenizer.json"
OUTPUT = "embedding"
_CHUNK = 1024  # texts per runtime call when a progress bar is shown


class OnnxSentenceEncoder:
    """An exported sentence encoder: texts in, unit-norm vectors out, without torch.

    Example:
        >>> enc = OnnxSentenceEncoder(Path("faq/encoder.onnx"), Path("faq/tokenizer.json"),
        ...                           dim=384, window=128, sep_id=102, pad_id=0)  # doctest: +SKIP
        >>> enc.encode(["reset my password"]).vectors.shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(
        self,
        graph: Path,
        tokenizer: Path,
        *,
        dim: int,
        window: int,
        sep_id: int | None,
        pad_id: int,
        batch_size: int = 64,
        threads: int | None = None,
    ):
        self.runtime = OnnxEncoder(graph, tokenizer, window=window, sep_id=sep_id, pad_id=pad_id,
                                   threads=threads)  # fmt: skip
        if OUTPUT not in self.runtime.outputs:
            raise ArtifactError(
                f"{graph} has no {OUTPUT!r} output (it has {self.runtime.outputs}); it is not "
                "an exported sentence encoder. Export the FAQ skill again (slmstack export)."
            )
        shape = next(o.shape for o in self.runtime.session.get_outputs() if o.name == OUTPUT)
        if isinstance(shape[-1], int) and shape[-1] != dim:
            raise ArtifactError(
                f"{graph} gives vectors of size {shape[-1]}, but the skill's config says {dim}; "
                "the folder mixes two exports. Export the FAQ skill again."
            )
        self._dim = dim
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        """Vector size."""
        return self._dim

    @property
    def window(self) -> int:
        """Tokens per text; longer texts are cut (last kept token: the separator)."""
        return int(self.runtime.window)

    def encode(self, texts: Sequence[str], *, desc: str | None = None) -> Encoded:
        """Vectors for ``texts`` in input order (batched by length inside each call)."""
        tok = self.runtime.tokenize(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = _CHUNK if desc else max(len(texts), 1)
        with progress() as bar:
            task = bar.add_task(desc or "encode", total=len(texts), info="", visible=bool(desc))
            for start in range(0, len(texts), step):
                part = type(tok)(tok.input_ids[start : start + step],
                                 tok.lengths[start : start + step], tok.window)  # fmt: skip
                vectors = self.runtime.run(part, batch_size=self.batch_size)[OUTPUT]
                out[start : start + step] = vectors
                bar.update(task, advance=len(part.input_ids))
        return Encoded(out, tok)

    # ------------------------------------------------------------------ persistence
    def settings(self) -> dict[str, Any]:
        """What :meth:`from_folder` needs besides the files (JSON-safe)."""
        return {"dim": self.dim, "window": self.window, "sep_id": self.runtime.sep_id,
                "pad_id": self.runtime.pad_id}  # fmt: skip

    def save(self, folder: Path) -> list[str]:
        """Copy the graph and the tokenizer into ``folder``; return the file names."""
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.runtime.graph, folder / GRAPH)
        shutil.copyfile(self.runtime.tokenizer_path, folder / TOKENIZER)
        return [GRAPH, TOKENIZER]

    @classmethod
    def from_folder(
        cls, folder: Path, settings: Mapping[str, Any], *, batch_size: int = 64
    ) -> OnnxSentenceEncoder:
        """The encoder saved in ``folder`` by :meth:`save`, with its :meth:`settings`."""
        try:
            sep = settings["sep_id"]
            return cls(
                folder / GRAPH, folder / TOKENIZER, dim=int(settings["dim"]),
                window=int(settings["window"]), sep_id=None if sep is None else int(sep),
                pad_id=int(settings["pad_id"]), batch_size=batch_size,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"{folder}/config.json: the ONNX encoder settings {dict(settings)} are "
                f"incomplete ({exc}); export the skill again"
            ) from exc
