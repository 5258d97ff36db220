"""Task discovery: recorded calls grouped by prompt template, each with its SLM replacement.

An app sends an LLM the same few prompt templates over and over, each filled with a
variable part (a customer's query, a receipt). A task is one template; the method finds
them without knowing them:

1. **Group by system prompt** (exact text): two templates rarely share one.
2. **Split on the template's fixed text.** Within a group, user messages are cut into
   word, punctuation and space tokens. The group's fixed text is its longest common
   token prefix and suffix. At the first token after the prefix the members branch; a
   branch is a template of its own when at least ``min_support`` members take it, they
   share ``min_extra`` more words, and they still vary after that (a message repeated
   verbatim is not a template). Two templates part this way, each going on with its own
   fixed text, while in a variable slot the members part and share little (``"I want
   ..."``, ``"I lost ..."``). Such branches split off and the rest stays; the same is
   tried on the suffix side, recursively.
3. **Merge back what is one task.** A variable slot can hold text that repeats (receipts
   from one shop chain share their header lines), which step 2 splits off as a template
   of its own. So, greedily, the two clusters whose templates share the most fixed text
   (at least half of the smaller one's) are joined when their answers say they are one
   task: together they are still of the same kind, with shared labels or the same JSON
   keys (see :mod:`slmstack.proxy.answers`). Two templates that differ in one instruction
   ("sentiment" or "topic") share most of their text but not their labels, and stay apart.
4. **Say what replaces each task**, from its answers (:mod:`slmstack.proxy.answers`): an
   *extraction* when they are JSON objects with a stable set of keys (a field
   extractor), a *classification* when they are short and fall in a small set of labels
   (a text classifier), a *generation* otherwise (a small generator, distilled).

Volume and spend come with each task: calls, tokens and their ledger cost, and how many
calls had no price (their spend is unknown, not zero).

Why not embeddings and k-means: the number of templates is unknown, a template's fixed
text is exact, and two templates that differ in one instruction are two tasks however
close their embeddings. The cost: step 3 weighs every pair of clusters of one system
prompt, quadratic in their number (fine for tens; thousands of templates under one
system prompt would need an index on the fixed text).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from itertools import combinations
from typing import Any

from slmstack.costs.prices import from_nano
from slmstack.proxy.answers import Answers, TaskKind, Verdict
from slmstack.proxy.masking import strip_tokens
from slmstack.proxy.traffic import TrafficRow

_TOKEN = re.compile(r"\w+|[^\w\s]+|\s+")


@dataclass(frozen=True)
class Task:
    """One discovered task: a prompt template, its volume and spend, its replacement.

    Attributes:
        task_id: ``t-`` and 10 hex digits of the template's hash (stable across runs).
        system: the system prompt; prefix, suffix: the user message's fixed text around
            the variable part.
        kind: ``classification``, ``extraction`` or ``generation``; why: the evidence.
        labels: the label set of a classification, most frequent first.
        schema: the JSON keys of an extraction.
        requests, tokens_in, tokens_out, spend_nusd: volume and priced spend.
        unpriced: calls with no known cost (unpriced model or no usage).
        models: the models asked; request_ids: the member calls.
    """

    task_id: str
    system: str
    prefix: str
    suffix: str
    kind: TaskKind
    why: str
    requests: int
    tokens_in: int
    tokens_out: int
    spend_nusd: int
    unpriced: int
    models: tuple[str, ...]
    first_at: datetime
    last_at: datetime
    labels: tuple[str, ...] = ()
    schema: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = field(default=(), repr=False)

    @property
    def template(self) -> str:
        """The user message's template, ``{...}`` marking the variable part."""
        return f"{self.prefix}{{...}}{self.suffix}"

    @property
    def spend(self) -> Decimal:
        """The priced spend in dollars, exact."""
        return from_nano(self.spend_nusd)

    def to_dict(self, *, members: bool = False) -> dict[str, Any]:
        """A JSON view (``members``: with every request id)."""
        out = {
            "task_id": self.task_id, "kind": self.kind, "why": self.why,
            "requests": self.requests, "spend_usd": str(self.spend), "unpriced": self.unpriced,
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
            "models": list(self.models), "system": self.system, "template": self.template,
            "prefix": self.prefix, "suffix": self.suffix,
            "labels": list(self.labels), "schema": list(self.schema),
            "first_at": self.first_at.isoformat(), "last_at": self.last_at.isoformat(),
        }  # fmt: skip
        if members:
            out["request_ids"] = list(self.request_ids)
        return out


def _words(tokens: Sequence[str]) -> int:
    return sum(1 for t in tokens if not t.isspace())


def _common(seqs: Sequence[list[str]]) -> list[str]:
    """The longest common prefix of token lists (that of the least and the greatest)."""
    if not seqs:
        return []
    lo, hi = min(seqs), max(seqs)
    n = 0
    for a, b in zip(lo, hi, strict=False):
        if a != b:
            break
        n += 1
    return list(lo[:n])


@dataclass
class _Cluster:
    members: list[int]
    prefix: list[str]
    suffix: list[str]
    answers: Answers
    verdict: Verdict

    @property
    def fixed(self) -> int:
        return _words(self.prefix) + _words(self.suffix)


class _Finder:
    """Steps 2 and 3 over the calls of one system prompt."""

    def __init__(self, rows: Sequence[TrafficRow], min_support: int, min_extra: int):
        self.rows = rows
        self.toks = [_TOKEN.findall(r.user) for r in rows]
        self.rev = [t[::-1] for t in self.toks]
        self.sizes = [_words(t) for t in self.toks]
        self.min_support = min_support
        self.min_extra = min_extra

    def template(self, idx: Sequence[int]) -> tuple[list[str], list[str]]:
        """The longest common prefix and suffix of ``idx``'s messages, not overlapping."""
        prefix = _common([self.toks[i] for i in idx])
        room = min(len(self.toks[i]) for i in idx) - len(prefix)
        suffix = _common([self.rev[i] for i in idx])[:room][::-1]
        return prefix, suffix

    def split(self, idx: list[int]) -> list[list[int]]:
        """Step 2: branches that add fixed text and keep a variable part split off."""
        prefix, suffix = self.template(idx)
        for seqs, at in ((self.toks, len(prefix)), (self.rev, len(suffix))):
            groups: dict[str, list[int]] = defaultdict(list)
            for i in idx:
                if len(seqs[i]) > at:
                    groups[seqs[i][at]].append(i)
            big = [g for g in groups.values() if self._own_template(g, seqs, at, len(idx))]
            if big:
                taken = {i for g in big for i in g}
                rest = [i for i in idx if i not in taken]
                return [c for g in big for c in self.split(g)] + (self.split(rest) if rest else [])
        return [idx]

    def _own_template(self, group: list[int], seqs: Sequence[list[str]], at: int, of: int) -> bool:
        if not self.min_support <= len(group) < of:
            return False
        if _words(_common([seqs[i][at:] for i in group])) < self.min_extra:
            return False
        # A repeated message (or one with a word or two varying) is not a template.
        prefix, suffix = self.template(group)
        fixed = _words(prefix) + _words(suffix)
        return sum(self.sizes[i] - fixed for i in group) >= len(group)

    def cluster(self, idx: list[int], answers: Answers | None = None) -> _Cluster:
        prefix, suffix = self.template(idx)
        if answers is None:
            answers = Answers.of(self.rows[i].response for i in idx)
        return _Cluster(idx, prefix, suffix, answers, answers.verdict("".join(prefix + suffix)))

    def merge(self, clusters: list[_Cluster]) -> list[_Cluster]:
        """Step 3: join the pair sharing most fixed text that is one task, until none is."""
        while len(clusters) > 1:
            pairs = []
            for a, b in combinations(clusters, 2):
                prefix = _common([a.prefix, b.prefix])
                fixed = _words(prefix) + _words(_common([a.suffix[::-1], b.suffix[::-1]]))
                if fixed >= 0.5 * min(a.fixed, b.fixed):
                    pairs.append((-fixed, -(len(a.members) + len(b.members)), a, b))
            for *_, a, b in sorted(pairs, key=lambda p: p[:2]):
                joined = self.cluster(a.members + b.members, a.answers.merged(b.answers))
                if self._one_task(a, b, joined.verdict):
                    clusters = [c for c in clusters if c is not a and c is not b] + [joined]
                    break
            else:
                break
        return clusters

    def _one_task(self, a: _Cluster, b: _Cluster, joined: Verdict) -> bool:
        """Whether ``a`` and ``b`` together are still what each is (kind, labels, keys)."""
        big, small = (a, b) if len(a.members) >= len(b.members) else (b, a)
        if joined.kind != big.verdict.kind:
            return False
        if len(small.members) < 5:  # too few answers to tell their kind apart
            return True
        if small.verdict.kind != big.verdict.kind:
            return False
        if big.verdict.kind == "extraction":
            x, y = set(big.verdict.schema), set(small.verdict.schema)
            return len(x & y) >= 0.5 * len(x | y)
        if big.verdict.kind == "classification":
            return bool(set(big.verdict.labels) & set(small.verdict.labels))
        return True


def discover(rows: Sequence[TrafficRow], *, min_support: int = 3, min_extra: int = 2) -> list[Task]:
    """The tasks in recorded traffic, largest first (see the module docstring).

    Args:
        rows: recorded calls (failed calls, and calls whose answer could not be read or
            was cut short, are left out: their answers would skew the task's kind).
        min_support: calls a branch needs to be a template of its own.
        min_extra: words of fixed text a branch must add to be a template of its own.

    Example:
        >>> from slmstack.proxy import TrafficStore
        >>> tasks = discover(TrafficStore("sqlite:///proxy.db").rows())  # doctest: +SKIP
        >>> [(t.kind, t.requests) for t in tasks]  # doctest: +SKIP
        [('classification', 3000), ('extraction', 626)]
    """
    by_system: dict[str, list[TrafficRow]] = defaultdict(list)
    for r in rows:
        if r.status == 200 and not r.problem:
            if r.masked:  # each mask token is encrypted anew per call: compare kinds only
                r = replace(r, system=strip_tokens(r.system), user=strip_tokens(r.user),
                            response=strip_tokens(r.response))  # fmt: skip
            by_system[r.system].append(r)
    tasks = []
    for system, group in by_system.items():
        finder = _Finder(group, min_support, min_extra)
        parts = finder.split(list(range(len(group))))
        for c in finder.merge([finder.cluster(p) for p in parts]):
            tasks.append(_task(group, system, c))
    return sorted(tasks, key=lambda t: (-t.requests, t.task_id))


def _task(rows: Sequence[TrafficRow], system: str, c: _Cluster) -> Task:
    members = [rows[i] for i in c.members]
    prefix, suffix = "".join(c.prefix), "".join(c.suffix)
    digest = hashlib.sha256(f"{system}\x00{prefix}\x00{suffix}".encode()).hexdigest()[:10]
    return Task(
        task_id=f"t-{digest}", system=system, prefix=prefix, suffix=suffix,
        kind=c.verdict.kind, why=c.verdict.why, labels=c.verdict.labels, schema=c.verdict.schema,
        requests=len(members), tokens_in=sum(r.tokens_in for r in members),
        tokens_out=sum(r.tokens_out for r in members),
        spend_nusd=sum(r.cost_nusd for r in members),
        unpriced=sum(1 for r in members if r.cost_status != "priced"),
        models=tuple(sorted({r.model for r in members})),
        first_at=min(r.at for r in members), last_at=max(r.at for r in members),
        request_ids=tuple(r.request_id for r in members),
    )  # fmt: skip


__all__ = ["Task", "discover"]
