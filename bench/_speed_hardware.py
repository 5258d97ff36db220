"""``bench/speed.py``: this CPU's matmul peaks and MiniLM-L6's FLOPs, for the share of peak."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from _speed_common import FFN, LAYERS, H


# --------------------------------------------------------------------------- hardware
def matmul_peaks() -> dict[str, float]:
    """This CPU's fp32 (the faster of torch and onnxruntime), bf16 (torch) and int8
    (onnxruntime ``MatMulInteger``) matmul peaks, GFLOP/s."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    n = 2048  # best of 10 products; the benchmark measures at its start and end
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = min(timed(lambda: a @ b) for _ in range(10))
    fp32 = 2 * n**3 / best / 1e9
    a16, b16 = a.bfloat16(), b.bfloat16()
    best = min(timed(lambda: a16 @ b16) for _ in range(10))
    bf16 = 2 * n**3 / best / 1e9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    T = TensorProto

    def ort_gflops(op: str, types: tuple[int, int, int], feed: dict[str, np.ndarray]) -> float:
        """GFLOP/s of onnxruntime's best of 10 ``op`` products (A, B → Y of ``types``)."""
        graph = helper.make_graph(
            [helper.make_node(op, ["A", "B"], ["Y"])], "mm",
            [helper.make_tensor_value_info("A", types[0], [n, n]),
             helper.make_tensor_value_info("B", types[1], [n, n])],
            [helper.make_tensor_value_info("Y", types[2], [n, n])],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])  # fmt: skip
        return 2 * n**3 / min(timed(lambda: sess.run(None, feed)) for _ in range(10)) / 1e9

    int8 = ort_gflops("MatMulInteger", (T.UINT8, T.INT8, T.INT32), {
        "A": np.random.randint(0, 255, (n, n), dtype=np.uint8),
        "B": np.random.randint(-127, 127, (n, n), dtype=np.int8)})  # fmt: skip
    # fp32 also through onnxruntime's own GEMM (MLAS): on some CPUs it beats torch's, and
    # the ONNX fp32 path runs on it; the peak is the faster of the two.
    fp32_ort = ort_gflops("MatMul", (T.FLOAT, T.FLOAT, T.FLOAT), {"A": a.numpy(), "B": b.numpy()})
    del onnx
    return {"fp32_gflops": round(max(fp32, fp32_ort), 1), "fp32_torch_gflops": round(fp32, 1),
            "fp32_onnxruntime_gflops": round(fp32_ort, 1), "bf16_gflops": round(bf16, 1),
            "int8_gops": round(int8, 1)}  # fmt: skip


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_batch(lengths: Sequence[int], batch: int) -> float:
    """MiniLM-L6 FLOPs for the test texts, batches sorted by length and padded as we do."""
    order = sorted(lengths)
    total = 0.0
    for s in range(0, len(order), batch):
        chunk = order[s : s + batch]
        t = max(chunk)
        per_token = 2 * LAYERS * (4 * H * H + 2 * H * FFN + 2 * t * H)
        total += per_token * t * len(chunk)
    return total
