"""Documents for compliance checking: ContractNLI-format training data, and segmentation.

ContractNLI (Koreeda & Manning, 2021) gives each contract its ``spans`` (sentences and
list items, as character offsets) and, per hypothesis, a verdict and the indices of its
evidence spans. New documents come without spans, so :func:`segment` cuts them the same
way: at line breaks and at sentence ends. A segment longer than the encoder's window is
cut again into windows by :func:`windows`, so nothing is ever truncated away.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmstack.compliance.rules import Verdict
from slmstack.data.utf8 import read_utf8
from slmstack.errors import DataError

_VERDICTS: Mapping[str, Verdict] = {
    "Entailment": "entailed",
    "Contradiction": "contradicted",
    "NotMentioned": "not_mentioned",
}
# A sentence ends at . ; ! ? after a letter (of any script) or a closing bracket or quote,
# followed by space and a digit, quote, bracket or a letter that is not lower case (É, Ü,
# and scripts without case). Numbering ("1. Definitions") is not an end; "e.g." and
# "Inc." style abbreviations are rare enough in contracts to accept the cut. `re` has no
# class for capitals beyond A-Z, so each candidate break's letter is tested in `segment`.
_BREAK = re.compile(r"(?:(?<=[^\W\d_][.;!?])|(?<=[)\]\"'”][.;!?]))\s+(?=[\"'“(\[0-9]|[^\W\d_])")


@dataclass(frozen=True)
class Annotation:
    """The verdict on one hypothesis, and the indices of its evidence spans."""

    verdict: Verdict
    evidence: tuple[int, ...] = ()


@dataclass(frozen=True)
class ContractDoc:
    """A contract, its spans (character offsets) and its annotations by hypothesis text."""

    id: str
    text: str
    spans: tuple[tuple[int, int], ...]
    labels: Mapping[str, Annotation] = field(default_factory=dict)


def read_contractnli(path: str | Path) -> list[ContractDoc]:
    """Read a ContractNLI JSON file (``documents`` and ``labels``), hypotheses as text.

    Raises:
        DataError: the file is not ContractNLI JSON, with what is missing.
    """
    source = Path(path)
    try:
        raw = json.loads(read_utf8(source))
    except json.JSONDecodeError as exc:
        raise DataError(f"not JSON ({exc}); expected a ContractNLI file", path=source) from None
    if not isinstance(raw, dict) or "documents" not in raw or "labels" not in raw:
        raise DataError(
            "expected ContractNLI JSON: an object with `documents` and `labels` "
            "(https://stanfordnlp.github.io/contract-nli/)",
            path=source,
        )
    hypotheses = _hypotheses(raw["labels"], source)
    return [_document(d, i, hypotheses, source) for i, d in enumerate(raw["documents"])]


def _hypotheses(labels: Any, source: Path) -> dict[str, str]:
    """Each hypothesis key's text, from the file's ``labels``."""
    if not isinstance(labels, dict):
        raise DataError(
            '`labels` must map each hypothesis key to {"hypothesis": TEXT}; got a '
            f"{type(labels).__name__}",
            path=source,
        )
    out = {}
    for key, value in labels.items():
        if not isinstance(value, dict) or "hypothesis" not in value:
            raise DataError(
                f"labels[{key!r}] has no 'hypothesis'; write {{\"hypothesis\": TEXT}}",
                path=source,
            )
        out[key] = str(value["hypothesis"])
    return out


def _document(d: Any, i: int, hypotheses: Mapping[str, str], source: Path) -> ContractDoc:
    try:
        text = str(d["text"])
        spans = tuple((int(a), int(b)) for a, b in d["spans"])
        notes = d["annotation_sets"][0]["annotations"]
        for key, a in notes.items():
            if key not in hypotheses:
                known = ", ".join(map(repr, hypotheses)) or "none"
                raise DataError(
                    f"document #{i} annotates {key!r}, which `labels` does not define (it "
                    f"has {known}); add it to `labels` or fix the key",
                    path=source,
                )
            if a.get("choice") not in _VERDICTS:
                raise DataError(
                    f"document #{i}: the choice of {key!r} is {a.get('choice')!r}; use one of "
                    f"{', '.join(_VERDICTS)}",
                    path=source,
                )
        labels = {
            hypotheses[key]: Annotation(_VERDICTS[a["choice"]], tuple(int(s) for s in a["spans"]))
            for key, a in notes.items()
        }
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(
            f"document #{i} is not in ContractNLI form ({type(exc).__name__}: {exc}); each "
            "needs text, spans and annotation_sets[0].annotations",
            path=source,
        ) from None
    for a, b in spans:
        if not 0 <= a < b <= len(text):
            raise DataError(f"document #{i}: span ({a}, {b}) is outside the text", path=source)
    for hypothesis, note in labels.items():
        wrong = [s for s in note.evidence if not 0 <= s < len(spans)]
        if wrong:
            raise DataError(
                f"document #{i}: the evidence of {hypothesis[:60]!r} names span(s) {wrong}, "
                f"but the document has {len(spans)} spans (0 to {len(spans) - 1}); fix the "
                "annotation's span indices",
                path=source,
            )
    return ContractDoc(str(d.get("id", i)), text, spans, labels)


def segment(text: str) -> list[tuple[int, int]]:
    """Sentences and list items of ``text`` as ``(start, end)``, whitespace trimmed."""
    out: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        cuts = [(m.start(), m.end()) for m in _BREAK.finditer(text, line.start(), line.end())
                if not text[m.end()].islower()]  # fmt: skip
        starts = [line.start(), *(e for _, e in cuts)]
        ends = [*(s for s, _ in cuts), line.end()]
        for a, b in (_trim(text, a, b) for a, b in zip(starts, ends, strict=True)):
            if b > a:
                out.append((a, b))
    return out


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def windows(
    text: str,
    bounds: Sequence[tuple[int, int]],
    offsets: Callable[[str], list[tuple[int, int]]],
    max_tokens: int,
) -> list[tuple[int, int, int]]:
    """Cut each segment longer than ``max_tokens`` into windows of at most that many.

    ``offsets(piece)`` gives the character offsets of the piece's tokens (without special
    tokens). Returns ``(start, end, segment index)``: a window keeps the index of the
    segment it came from, so a score can be carried back to the whole segment.
    Consecutive windows of a segment overlap by a quarter, so no clause is cut in two
    without also being seen whole.
    """
    out: list[tuple[int, int, int]] = []
    stride = max(1, max_tokens - max_tokens // 4)
    for k, (a, b) in enumerate(bounds):
        toks = offsets(text[a:b])
        if len(toks) <= max_tokens:
            out.append((a, b, k))
            continue
        for first in range(0, len(toks), stride):
            last = min(first + max_tokens, len(toks)) - 1
            out.append((a + toks[first][0], a + toks[last][1], k))
            if last == len(toks) - 1:
                break
    return out


__all__ = ["Annotation", "ContractDoc", "read_contractnli", "segment", "windows"]
