"""int8 recipes for an exported encoder graph: onnxruntime dynamic quantization.

Dynamic quantization stores the weights of the chosen operators as int8 and quantizes
each activation on the fly (per batch), so no calibration data is needed and the
integer matmuls run on the CPU's VNNI/AVX2 int8 units. Which operators, and whether the
weight scales are per output channel, change speed and fidelity in opposite directions
on MiniLM (measured here: per-tensor weights keep a cosine of 0.92 to the fp32 vector
at worst, per-channel 0.98, at a cost in speed), so the exporter tries every recipe
below, scores each on the validation file, and keeps the fastest that passes the
accuracy gate (:mod:`slmstack.export.classifier`).

Only the encoder's nodes are quantized: the classifier head and the float64 scope score
stay exact, so calibration and out-of-scope p-values move only as the encoder does.
Static quantization with calibration data was not measured to be better here and is not
offered.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slmstack.errors import ArtifactError, MissingDependencyError

# The head and the scope score stay exact (the tracer names nodes by module path).
KEEP_EXACT = ("/head/", "/net/head/", "/scope/")


@dataclass(frozen=True)
class QuantRecipe:
    """One way to quantize: weight granularity, weight range and the operator types."""

    name: str
    per_channel: bool
    reduce_range: bool = False
    op_types: tuple[str, ...] = ("MatMul", "Attention", "Gather")

    def describe(self) -> dict[str, object]:
        """The recipe as JSON (recorded in the exported skill's config)."""
        return {"name": self.name, "per_channel": self.per_channel,
                "reduce_range": self.reduce_range, "op_types": list(self.op_types)}  # fmt: skip

    def apply(self, source: Path, target: Path) -> None:
        """Write the int8 form of ``source`` to ``target``."""
        try:
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError as exc:
            raise MissingDependencyError("onnx", "export", "int8 export") from exc
        graph = onnx.load(str(source), load_external_data=False).graph
        exact = [n.name for n in graph.node if n.name.startswith(KEEP_EXACT)]
        if not any(n.op_type in self.op_types for n in graph.node if n.name not in exact):
            raise ArtifactError(f"{source} has no encoder node of types {self.op_types}")
        with _quiet():
            quantize_dynamic(
                str(source), str(target), weight_type=QuantType.QInt8,
                per_channel=self.per_channel, reduce_range=self.reduce_range,
                nodes_to_exclude=exact, op_types_to_quantize=list(self.op_types),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )  # fmt: skip


RECIPES: tuple[QuantRecipe, ...] = (
    QuantRecipe("per-tensor", per_channel=False),
    QuantRecipe("per-channel", per_channel=True),
    QuantRecipe("per-channel-7bit", per_channel=True, reduce_range=True),
)


def recipe(name: str) -> QuantRecipe:
    """The built-in recipe called ``name``."""
    for r in RECIPES:
        if r.name == name:
            return r
    known = ", ".join(r.name for r in RECIPES)
    raise ArtifactError(f"unknown int8 recipe {name!r}; choose one of: {known}, or 'auto'")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the quantizer's advice to pre-process (it prints through ``logging``)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
