"""The tagger's network and batches: encoder, casing embedding, tag head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from slmstack.errors import ConfigError
from slmstack.skills._tokens import CASE_CLASSES, IGNORE, Encoded, window_arrays


class TokenNet(nn.Module):
    """Encoder → (+ casing embedding) → dropout → linear tag head, per sub-word.

    Casing reaches the tag head (``case_dim``) and, with ``case_input``, the encoder's
    input too: a casing vector is added to each sub-word's embedding, so every layer can
    use it in context (a capitalised word after "in", a run of capitalised words). That
    vector starts at zero, so training starts from the pretrained encoder unchanged.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_tags: int,
        *,
        case_dim: int,
        dropout: float,
        case_input: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)  # type: ignore[union-attr,arg-type]
        self.case_dim = case_dim
        self.case_emb = nn.Embedding(CASE_CLASSES, max(case_dim, 1), padding_idx=0)
        self.case_input = case_input
        if case_input:
            self.case_in = nn.Embedding(CASE_CLASSES, hidden, padding_idx=0)
            nn.init.zeros_(self.case_in.weight)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden + case_dim, n_tags)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, case: torch.Tensor) -> torch.Tensor:
        if self.case_input:
            words = self.encoder.get_input_embeddings()  # type: ignore[operator]
            embeds = words(ids) + self.case_in(case).to(words.weight.dtype)
            hidden = self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        else:
            hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.case_dim:
            hidden = torch.cat([hidden, self.case_emb(case).to(hidden.dtype)], dim=-1)
        logits: torch.Tensor = self.head(self.dropout(hidden).float())
        return logits


def special_ids(tokenizer: Any, base: str) -> tuple[int, int, int]:
    """The ids of [CLS], [SEP] and padding (BOS/EOS for RoBERTa-style tokenizers)."""
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if cls is None or sep is None:
        raise ConfigError(
            f"base {base!r}: its tokenizer has no [CLS]/[SEP] (or BOS/EOS) token; "
            "use an encoder model such as BERT, MiniLM or RoBERTa"
        )
    return int(cls), int(sep), int(pad)


def make_batch(
    encs: Sequence[Encoded],
    chunks: Sequence[tuple[int, int]],
    window: int,
    special: tuple[int, int, int],
    labels: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Padded (ids, mask, casing, labels) of the windows ``(text index, start)``."""
    ids, mask, case = (torch.from_numpy(a) for a in window_arrays(encs, chunks, window, special))
    y = torch.full(ids.shape, IGNORE, dtype=torch.long)
    if labels is not None:
        for r, (i, s) in enumerate(chunks):
            e = min(len(encs[i].ids), s + window)
            y[r, 1 : e - s + 1] = torch.tensor(labels[i][s:e])
    return ids, mask, case, y
