"""Cascade thresholds chosen against a quality target at the least cost.

Method. Every tier of a cascade is measured once on a labelled validation set: for each
text, whether its answer is right, its confidence, whether it abstained, and what it
cost. A cascade with thresholds ``t_1 .. t_{n-1}`` is then simulated exactly, without
running a model again: a text goes down the tiers until one does not abstain and is at
least as confident as its threshold (the last tier always answers), and it pays for
every tier it visited. Thresholds are swept over a grid of the measured confidences
(their quantiles, so the grid follows the data, each written as the shortest decimal
that accepts the same texts, plus 0 and just above 1, which mean "always accept" and
"never accept"), every combination is simulated, and the cheapest
combination whose quality meets the target is chosen. Exhaustive search is exact and
cheap here: 41 values for each of two thresholds on 3,000 texts is 5 million
comparisons, a fraction of a second in numpy, whereas a greedy per-tier search can miss
combinations where a lower first threshold pays off only with a higher second one.

Quality is accuracy of the answer the cascade returns. The target is absolute
(``0.92``) or relative to the best single tier (``0.97`` of it).
"""

from __future__ import annotations

import codecs
import itertools
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from slmstack.errors import ConfigError, DataError


@dataclass(frozen=True)
class TierMeasure:
    """One tier measured on the validation set (arrays are aligned, one row per text).

    Attributes:
        name: the tier, as shown in reports.
        correct: whether the tier's answer is right.
        confidence: the tier's confidence in its answer.
        abstained: whether the tier declined to answer (it never accepts then).
        cost_nano_usd: what running the tier on each text cost, in integer nano-dollars
            (a local skill call costs well under a micro-dollar).
    """

    name: str
    correct: NDArray[np.bool_]
    confidence: NDArray[np.float64]
    abstained: NDArray[np.bool_]
    cost_nano_usd: NDArray[np.int64]

    def __post_init__(self) -> None:
        n = len(self.correct)
        for arr in (self.confidence, self.abstained, self.cost_nano_usd):
            if len(arr) != n:
                raise DataError(f"tier {self.name!r}: measurements of different lengths")

    @property
    def accuracy(self) -> float:
        """Accuracy when this tier answers every text alone."""
        return float(self.correct.mean()) if len(self.correct) else 0.0

    @property
    def mean_cost(self) -> float:
        """Mean nano-dollars per text when this tier answers every text alone."""
        return float(self.cost_nano_usd.mean()) if len(self.cost_nano_usd) else 0.0


@dataclass(frozen=True)
class Point:
    """One threshold setting and what it gives on the validation set."""

    thresholds: tuple[float, ...]
    quality: float
    mean_cost_nano_usd: float
    share_answered_by: tuple[float, ...]  # per tier, the share of texts it answered


@dataclass
class Sweep:
    """Every setting tried, the Pareto front, and the choice for the target."""

    tiers: list[TierMeasure]
    points: list[Point]
    target: float
    chosen: Point | None
    front: list[Point] = field(default_factory=list)


def simulate(tiers: Sequence[TierMeasure], thresholds: Sequence[float]) -> Point:
    """Quality and mean cost of the cascade with ``thresholds`` (one per tier but the last)."""
    if len(thresholds) != len(tiers) - 1:
        raise ConfigError(f"{len(tiers)} tiers need {len(tiers) - 1} thresholds")
    n = len(tiers[0].correct)
    pending = np.ones(n, dtype=bool)
    correct = np.zeros(n, dtype=bool)
    cost = np.zeros(n, dtype=np.int64)
    answered = []
    for i, tier in enumerate(tiers):
        cost[pending] += tier.cost_nano_usd[pending]
        if i == len(tiers) - 1:
            accept = pending.copy()
        else:
            accept = pending & ~tier.abstained & (tier.confidence >= thresholds[i])
        correct[accept] = tier.correct[accept]
        answered.append(float(accept.mean()) if n else 0.0)
        pending &= ~accept
    return Point(
        thresholds=tuple(float(t) for t in thresholds),
        quality=float(correct.mean()) if n else 0.0,
        mean_cost_nano_usd=float(cost.mean()) if n else 0.0,
        share_answered_by=tuple(answered),
    )


def threshold_grid(tier: TierMeasure, size: int = 41) -> list[float]:
    """Candidate thresholds for ``tier``: quantiles of its confidences, 0, and 'never'.

    Each quantile is replaced by the shortest decimal that accepts the same confidences
    (``0.5`` between 0.4 and 0.6), so the value reported and written into the workflow is
    the one simulated: rounding it for the file would move texts across it.
    """
    conf = tier.confidence[~tier.abstained]
    conf = np.sort(conf[~np.isnan(conf)])  # a NaN is never accepted; it has no quantile
    values = {0.0, 1.000001}
    for q in np.quantile(conf, np.linspace(0, 1, size)) if len(conf) else []:
        i = int(np.searchsorted(conf, q))  # the least confidence ≥ q
        values.add(_shortest_in(float(conf[i - 1]) if i else -1.0, float(conf[i])))
    return sorted(values)


def _shortest_in(low: float, high: float) -> float:
    """The decimal with the fewest places in ``(low, high]``."""
    for places in range(18):
        value = float(Decimal(repr(high)).quantize(Decimal(1).scaleb(-places), ROUND_FLOOR))
        if value > low:
            return value
    return high


def sweep(
    tiers: Sequence[TierMeasure], *, target: float, relative: bool = False, grid: int = 41
) -> Sweep:
    """Try every combination of grid thresholds; choose the cheapest that meets ``target``.

    ``relative=True`` reads ``target`` as a share of the best single tier's accuracy.
    """
    if len(tiers) < 2:
        raise ConfigError(f"a cascade has at least 2 tiers; got {len(tiers)}")
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"the quality target must be in (0, 1]; got {target}")
    goal = target * max(t.accuracy for t in tiers) if relative else target
    grids = [threshold_grid(t, grid) for t in tiers[:-1]]
    points = [simulate(tiers, combo) for combo in itertools.product(*grids)]
    feasible = [p for p in points if p.quality >= goal - 1e-12]
    chosen = min(feasible, key=lambda p: (p.mean_cost_nano_usd, -p.quality), default=None)
    return Sweep(list(tiers), points, goal, chosen, pareto_front(points))


def accuracy_floor(quality: float, n: int, confidence: float = 0.95) -> float:
    """The accuracy on new texts that ``quality`` on ``n`` texts shows, at ``confidence``.

    The lower bound of the one-sided Wilson score interval: the tuning's accuracy is
    measured on the texts the thresholds were chosen on, so it is an optimistic estimate,
    and on a few texts a loose one.

    Example:
        >>> round(accuracy_floor(0.95, 100), 3)
        0.901
    """
    if n <= 0:
        return 0.0
    z = NormalDist().inv_cdf(confidence)
    p = round(quality * n) / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The settings no other setting beats on both cost and quality, cheapest first."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.mean_cost_nano_usd, -p.quality)):
        if not front or p.quality > front[-1].quality + 1e-12:
            front.append(p)
    return front


def write_thresholds(path: Path, cascade_id: str | None, thresholds: Sequence[float]) -> str:
    """Write ``thresholds`` into the cascade of a workflow file, editing only their text.

    The cascade is the one whose ``id`` is ``cascade_id``, or the only cascade when
    ``cascade_id`` is ``None``. The rest of the file (comments, layout, line endings) is
    kept byte for byte: the edit is checked to change nothing else before it replaces the
    file, in one step. Returns the YAML path of the cascade that was changed.
    """
    from slmstack.data.utf8 import decode_utf8
    from slmstack.workflows.loader import _Loader  # the loader's reading of the file

    raw = path.read_bytes()
    text = decode_utf8(path, raw)
    try:
        tree = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); nothing written") from None
    found = list(_cascades(tree, "", ()))
    if cascade_id is not None:
        found = [c for c in found if _value(c[2], "id") == cascade_id]
    if len(found) != 1:
        ids = [_value(body, "id") or where for where, _, body in _cascades(tree, "", ())]
        what = f"with id {cascade_id!r}" if cascade_id else "(pass --cascade ID)"
        raise ConfigError(
            f"{path}: expected one cascade {what}, found {len(found)}. Cascades: {ids or 'none'}"
        )
    where, keys, body = found[0]
    never = [i for i, t in enumerate(thresholds) if t > 1]
    if never:
        raise ConfigError(
            f"{path}: the tuned choice never accepts tier {never[0]} of {where} (threshold "
            "above 1): every text goes past it, so it only adds cost. Remove that tier from "
            "the cascade and tune again; nothing was written"
        )
    node = next((v for k, v in body.value if k.value == "threshold"), None)
    # As given, not rounded: a rounded threshold moves the texts between it and the tuned
    # one to another tier (the grid's values are already short decimals).
    values = [format(Decimal(repr(float(t))), "f") for t in thresholds]
    edits = _edits(path, where, node, values)
    edited = text
    for start, end, new in sorted(edits, reverse=True):
        edited = edited[:start] + new + edited[end:]
    expected: Any = [float(v) for v in values]
    if isinstance(node, yaml.ScalarNode) and len(values) == 1:
        expected = expected[0]
    _check_only_thresholds(path, where, text, edited, keys, expected)
    target = path.resolve()  # through a link: the file it names is the one edited
    tmp = target.with_name(f".{target.name}.tuning")
    try:  # written aside, then put in place: never a half-written workflow
        bom = codecs.BOM_UTF8 if raw.startswith(codecs.BOM_UTF8) else b""
        tmp.write_bytes(bom + edited.encode())
        shutil.copymode(target, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return where


def _edits(path: Path, where: str, node: Any, values: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, text) of each stretch of the file to replace: the threshold values."""
    if isinstance(node, yaml.SequenceNode):
        if len(node.value) != len(values) or not all(
            isinstance(v, yaml.ScalarNode) for v in node.value
        ):
            raise ConfigError(
                f"{path}: {where}.threshold is not a list of {len(values)} numbers, one per "
                "tier but the last; fix it, then tune again. Nothing was written"
            )
        return [(v.start_mark.index, v.end_mark.index, s)
                for v, s in zip(node.value, values, strict=True)]  # fmt: skip
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{path}: {where} has no `threshold:` to tune; nothing was written")
    new = values[0] if len(values) == 1 else f"[{', '.join(values)}]"
    return [(node.start_mark.index, node.end_mark.index, new)]


def _check_only_thresholds(
    path: Path, where: str, before: str, after: str, keys: tuple[Any, ...], expected: Any
) -> None:
    """Refuse an edit whose file would read as more than the thresholds changed."""
    from slmstack.workflows.loader import _Loader

    old: Any = yaml.load(before, Loader=_Loader)
    try:
        new = yaml.load(after, Loader=_Loader)
        body = old
        for key in keys:
            body = body[key]
        body["threshold"] = expected
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        new = None
    if new != old:
        raise ConfigError(
            f"{path}: the thresholds of {where} could not be edited in place without "
            f"changing more of the file (an anchor or tag on them?); nothing was written. "
            f"Set `threshold: {expected}` there by hand"
        )


def _value(node: Any, key: str) -> str | None:
    """The scalar under ``key`` in a mapping node."""
    values = (v.value for k, v in node.value if k.value == key and isinstance(v, yaml.ScalarNode))
    return next(values, None)


def _cascades(
    node: Any, where: str, keys: tuple[Any, ...]
) -> Iterator[tuple[str, tuple[Any, ...], Any]]:
    """Every ``cascade:`` body in a composed workflow: its YAML path, keys and node."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            here = f"{where}.{name}" if where else name
            if name == "cascade" and isinstance(value, yaml.MappingNode):
                yield here, (*keys, name), value
            yield from _cascades(value, here, (*keys, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            yield from _cascades(value, f"{where}[{i}]", (*keys, i))
