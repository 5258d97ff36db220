"""What every export shares: the candidates tried, the timing race, and the choice.

An export traces one fp32 graph and, with ``--int8``, one graph per quantization recipe;
each is a :class:`Candidate` with its parity report, its accuracy gate and its measured
speed. :func:`race` times them in interleaved rounds, :func:`choose` keeps the fastest
that passes the gate (near-ties go to the more accurate one).
"""

from __future__ import annotations

import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmstack.errors import ConfigError, DataWarning, ExportRefused
from slmstack.export.checks import GateReport, ParityReport, throughput
from slmstack.export.quantize import Feed, QuantRecipe, StaticRecipe
from slmstack.progress import progress

SPEED_SAMPLE = 512  # validation texts timed per candidate
RACE_ROUNDS = 3  # interleaved timing rounds per candidate
# Recipes closer in speed than this are treated as equally fast, and the more accurate one
# wins: on MiniLM the recipes differ by under 10% in speed, while per-tensor weights lose
# 0.4-1.2 points that the per-channel ones keep (bench/speed.py, three runs).
TIE = 0.10


@dataclass
class Candidate:
    """One graph tried: its precision, recipe and measurements."""

    precision: str
    recipe: QuantRecipe | None
    parity: ParityReport
    gate: GateReport
    texts_per_s: float
    size_mb: float

    @property
    def passed(self) -> bool:
        """Parity and gate both passed."""
        return self.parity.passed and self.gate.passed

    def to_json(self) -> dict[str, Any]:
        """JSON form (config, CLI output)."""
        return {"precision": self.precision,
                "recipe": None if self.recipe is None else self.recipe.describe(),
                "parity": self.parity.to_json(), "gate": self.gate.to_json(),
                "texts_per_s": round(self.texts_per_s, 1), "size_mb": round(self.size_mb, 1),
                "passed": self.passed}  # fmt: skip


@dataclass
class ExportResult:
    """What was written (or would have been) and every candidate measured."""

    folder: Path
    chosen: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    forced: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON form for the CLI."""
        return {"folder": str(self.folder), "chosen": self.chosen.to_json(),
                "candidates": [c.to_json() for c in self.candidates],
                "forced": self.forced, "seconds": round(self.seconds, 1)}  # fmt: skip


def race(
    candidates: list[Candidate],
    runners: Sequence[Callable[[Sequence[str]], Any]],
    texts: Sequence[str],
) -> None:
    """Each candidate's texts/s: rounds interleaved, best round kept.

    Interleaving makes every candidate see the same background load, so a burst of
    other work on a shared machine does not decide the recipe.
    """
    best = [float("inf")] * len(runners)
    for runner in runners:
        runner(texts[:16])  # warm-up
    for _ in range(RACE_ROUNDS):
        for i, runner in enumerate(runners):
            best[i] = min(best[i], 1.0 / throughput(runner, texts, repeats=1))
    for cand, seconds_per_text in zip(candidates, best, strict=True):
        cand.texts_per_s = 1.0 / seconds_per_text


def choose(candidates: list[Candidate], *, int8: bool, force: bool) -> tuple[Candidate, bool]:
    """The fastest int8 candidate that passed (or the fp32 graph without ``int8``)."""
    if not int8:
        return candidates[0], False
    quantized = [c for c in candidates if c.precision == "int8"]
    passed = [c for c in quantized if c.passed]
    if passed:  # speeds within TIE of the fastest are noise: then the most accurate wins
        fastest = max(c.texts_per_s for c in passed)
        near = [c for c in passed if c.texts_per_s >= (1 - TIE) * fastest]
        return max(near, key=lambda c: (c.gate.exported_accuracy, c.texts_per_s)), False
    if not force:
        lines = "; ".join(_failure(c) for c in quantized)
        # --margin only helps a recipe whose decisions agreed but which lost points
        margin_helps = any(c.parity.passed for c in quantized)
        raise ExportRefused(
            f"no int8 recipe passed the checks on the validation data: {lines}. Nothing "
            "was written. Export without --int8, "
            f"{'raise --margin, ' if margin_helps else ''}or pass --force to write the "
            "most accurate one anyway."
        )
    return max(quantized, key=lambda c: c.gate.exported_accuracy), True


def _failure(c: Candidate) -> str:
    """Why ``c`` failed: its parity check, its gate, or both, in words."""
    why = []
    if not c.parity.passed:
        why.append(c.parity.problem(subject="it"))
    if not c.gate.passed:
        why.append(f"it loses {c.gate.drop:.2f} {c.gate.metric} points (at most {c.gate.margin})")
    return f"{c.recipe.name if c.recipe else c.precision}: {'; '.join(why)}"


def machine() -> dict[str, Any]:
    """The CPU the measurements were taken on (the speed ranking depends on it)."""
    import onnxruntime

    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512", "amx")
                flags = sorted({f for f in line.split() if f.startswith(wanted)})
                break
    except OSError:
        pass
    return {"cpu": platform.processor() or platform.machine(), "flags": flags,
            "onnxruntime": onnxruntime.__version__}  # fmt: skip


@dataclass
class ExportPlan:
    """What one kind of skill brings to :func:`run_export`.

    Attributes:
        kind: the skill's kind in messages ("skill", "tagger").
        texts: the validation texts (timed in the race).
        save_tokenizer: writes the skill's ``tokenizer.json`` to a path.
        trace: writes the fused fp32 graph to a path; returns the fused operator counts.
        measure: parity and gate of a graph (path, tokenizer, precision, recipe), and a
            predict function of it for the race.
        build: the exported skill over the chosen graph (path, tokenizer, chosen,
            candidates, forced), with the attribute ``export_``, ready to save.
        calibration: sample inputs of the fp32 graph (path, tokenizer), fed as the
            exported skill feeds them, for the static int8 recipes; ``None`` when the
            export offers none (a static recipe is then refused, naming the fix).
    """

    kind: str
    texts: Sequence[str]
    save_tokenizer: Callable[[Path], None]
    trace: Callable[[Path], dict[str, int]]
    measure: Callable[
        [Path, Path, str, QuantRecipe | None],
        tuple[Candidate, Callable[[Sequence[str]], Any]],
    ]
    build: Callable[[Path, Path, Candidate, list[Candidate], bool], Any]
    calibration: Callable[[Path, Path], list[Feed]] | None = None


def check_options(validation: Sequence[Any], margin: float, int8: bool,
                  recipes: Sequence[QuantRecipe]) -> None:  # fmt: skip
    """The export's arguments, checked before any work."""
    if not validation:
        raise ConfigError("the export needs validation data for the parity check and the gate")
    if margin < 0:
        raise ConfigError(f"margin={margin}: expected points >= 0 (default 0.5)")
    if int8 and not recipes:
        raise ConfigError("int8 export needs at least one quantization recipe")
    if len(validation) < SMALL_VALIDATION:
        n = len(validation)
        race = " and the race of int8 recipes" if int8 else ""
        warnings.warn(
            f"the parity check, the accuracy gate{race} "
            f"run on the {n} validation example{'' if n == 1 else 's'} given: one text moves "
            f"the gate by {100 / n:.1f} points, so their verdict is weak; give "
            f"{SMALL_VALIDATION} or more",
            DataWarning,
            stacklevel=3,
        )


SMALL_VALIDATION = 100  # fewer validation texts than this, and the export warns


def run_export(
    plan: ExportPlan,
    out: Path,
    *,
    int8: bool,
    recipes: Sequence[QuantRecipe],
    margin: float,
    force: bool,
) -> ExportResult:
    """Trace, check parity, quantize, race, choose and save: every export's steps."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slmstack-export-") as tmp_s:
        tmp = Path(tmp_s)
        tokenizer = tmp / "tokenizer.json"
        plan.save_tokenizer(tokenizer)
        with progress() as bar:
            task = bar.add_task("export", total=1 + (len(recipes) if int8 else 0), info="fp32")
            fp32_path = tmp / "fp32.onnx"
            fused = plan.trace(fp32_path)
            fp32, runner = plan.measure(fp32_path, tokenizer, "fp32", None)
            bar.update(task, advance=1)
            if not fp32.parity.passed:
                raise ExportRefused(
                    f"the fp32 ONNX graph does not reproduce the torch {plan.kind}: "
                    f"{fp32.parity.problem()}. This is an export bug, not a precision "
                    "trade-off; report it with the skill's config.json."
                )
            candidates, runners, paths = [fp32], [runner], {id(fp32): fp32_path}
            feeds: list[Feed] | None = None
            for r in recipes if int8 else ():
                bar.update(task, info=r.name)
                path = tmp / f"int8-{r.name}.onnx"
                if isinstance(r, StaticRecipe):
                    if feeds is None:
                        feeds = _calibration(plan, r, fp32_path, tokenizer)
                    r.apply(fp32_path, path, calibration=feeds)
                else:
                    r.apply(fp32_path, path)
                cand, runner = plan.measure(path, tokenizer, "int8", r)
                candidates.append(cand)
                runners.append(runner)
                paths[id(cand)] = path
                bar.update(task, advance=1)
            bar.update(task, info="timing")
            race(candidates, runners, plan.texts[:SPEED_SAMPLE])
            del runners
        chosen, forced = choose(candidates, int8=int8, force=force)
        final = plan.build(paths[id(chosen)], tokenizer, chosen, candidates, forced)
        final.export_["fused_operators"] = fused
        final.save(out)
    return ExportResult(out, chosen, candidates, forced, time.perf_counter() - start)


def _calibration(plan: ExportPlan, r: StaticRecipe, graph: Path, tokenizer: Path) -> list[Feed]:
    """The plan's calibration feeds, or a refusal naming the recipe to drop."""
    if plan.calibration is None:
        raise ConfigError(
            f"the static int8 recipe {r.name!r} needs calibration inputs, which the "
            f"{plan.kind} export does not provide; choose a dynamic recipe (--recipe)"
        )
    return plan.calibration(graph, tokenizer)
