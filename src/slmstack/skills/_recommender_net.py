"""The behaviour model of :class:`~slmstack.skills.recommender.Recommender` (torch).

Item vectors: a projection of the frozen sentence embedding of the item text
(``features="text"``), plus a learned id vector for items seen in training
(``"text+id"``), or the id vector alone (``"id"``, SASRec-like; no cold start). Items
with no training interactions use row 0 of the id table, which is fixed at zero, so
their vector comes from text alone: that is what makes cold start work.

User vectors, from the item vectors of a history:

* ``"sequence"``: a causal transformer over the history (SASRec-style), with positions
  counted back from the newest item; the state at the last item is the user.
* ``"two_tower"``: an MLP over the mean of the history and its newest item; the item
  tower is the item vector itself.

Scores are cosine similarities over a temperature, trained with a softmax over the
whole catalogue (``negatives="catalogue"``) or over the batch's targets
(``"in_batch"``). Both towers score every prefix of a training sequence at once (the
causal mask, or cumulative means), so one pass trains on every next-item step.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

UserModel = Literal["sequence", "two_tower"]
Features = Literal["text", "text+id", "id"]
Negatives = Literal["catalogue", "in_batch"]


class RecNet(nn.Module):
    """Item tower and user tower; see the module docstring."""

    def __init__(
        self,
        *,
        text_dim: int,
        n_ids: int,
        dim: int,
        user_model: UserModel,
        features: Features,
        max_len: int,
        layers: int,
        heads: int,
        dropout: float,
    ):
        super().__init__()
        self.user_model = user_model
        self.features = features
        self.proj = (
            nn.Sequential(nn.Linear(text_dim, dim), nn.LayerNorm(dim)) if features != "id" else None
        )
        # Row 0 is the "no interactions yet" row: zero, and never trained.
        self.ids = nn.Embedding(n_ids, dim, padding_idx=0) if features != "text" else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.02)
            with torch.no_grad():
                self.ids.weight[0].zero_()
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        if user_model == "sequence":
            self.pos = nn.Embedding(max_len, dim)
            layer = nn.TransformerEncoderLayer(
                dim, heads, dim * 2, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        else:
            self.mlp = nn.Sequential(
                nn.Linear(2 * dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
            )

    def item_vectors(self, text: torch.Tensor, id_rows: torch.Tensor) -> torch.Tensor:
        """``(items, dim)`` from text embeddings ``(items, text_dim)`` and id-table rows."""
        out = torch.zeros(len(id_rows), self.norm.normalized_shape[0])
        if self.proj is not None:
            out = out + self.proj(text)
        if self.ids is not None:
            out = out + self.ids(id_rows)
        return out

    def user_states(self, hist: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(batch, L, dim)``: the user after each prefix of right-padded ``hist``.

        ``hist`` is ``(batch, L, dim)`` item vectors, padding after ``lengths``.
        """
        width = hist.shape[1]
        steps = torch.arange(width)
        valid = steps[None, :] < lengths[:, None]
        hist = hist * valid[..., None]
        if self.user_model == "sequence":
            # Positions count back from the newest item, so it is always position 0.
            back = (lengths[:, None] - 1 - steps[None, :]).clamp(
                min=0, max=self.pos.num_embeddings - 1
            )
            x = self.drop(hist + self.pos(back))
            causal = torch.triu(torch.ones(width, width, dtype=torch.bool), diagonal=1)
            h = self.encoder(x, mask=causal, is_causal=True)
        else:
            counts = (steps + 1).to(hist.dtype)[None, :, None]
            mean = hist.cumsum(dim=1) / counts
            h = self.mlp(self.drop(torch.cat([mean, hist], dim=-1))) + mean
        return self.norm(h)  # type: ignore[no-any-return]

    def last_state(self, hist: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(batch, dim)``: the user after the whole history."""
        states = self.user_states(hist, lengths)
        return states[torch.arange(len(lengths)), lengths - 1]


def cosine_logits(users: torch.Tensor, items: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(users, items)`` cosine similarities divided by ``temperature``."""
    return F.normalize(users, dim=-1) @ F.normalize(items, dim=-1).T / temperature


def next_item_loss(
    states: torch.Tensor,
    targets: torch.Tensor,
    items: torch.Tensor,
    *,
    temperature: float,
    negatives: Negatives,
) -> torch.Tensor:
    """Softmax cross-entropy of each state's next item.

    ``states`` ``(n, dim)``, ``targets`` ``(n,)`` catalogue indices, ``items`` the
    catalogue's vectors. With ``"in_batch"`` the candidates are the distinct targets of
    the batch (a repeated target is one candidate, not a false negative).
    """
    if negatives == "catalogue":
        return F.cross_entropy(cosine_logits(states, items, temperature), targets)
    unique, inverse = torch.unique(targets, return_inverse=True)
    return F.cross_entropy(cosine_logits(states, items[unique], temperature), inverse)
