"""MicroNet's extra table columns.

* ``latency_1t``: CPU latency in ms at batch 1 on one thread, the setting of the paper's Fig. 5 right
  ("single-threaded mode with batch size 1", Sec. 6.1.3). Measured here, in eval mode, NCHW float32, at the
  row's input size; the median of five timed windows after a warm-up. The paper gives no figures (a plot
  on a Xeon E5-2620 v4), so the column has no paper value; compare rows with each other.
"""

from __future__ import annotations

import torch

from effconv.profile import measure_throughput
from effconv.report.columns import Column, RowContext, register_column
from effconv.threads import torch_threads


def latency_ms(model: torch.nn.Module, input_size, min_time_s: float = 0.2, repeats: int = 5) -> float:
    """Single-thread, batch-1 CPU inference latency (ms) of ``model`` at ``input_size`` (C, H, W)."""
    with torch_threads(1):
        result = measure_throughput(
            model,
            input_size,
            batch_size=1,
            device="cpu",
            channels_last=False,
            warmup=5,
            min_time_s=min_time_s,
            repeats=repeats,
        )
    return result.ms_per_batch


def _row_latency(ctx: RowContext) -> float:
    return ctx.memo("latency_1t", lambda: latency_ms(ctx.model(), ctx.input_size))


register_column(Column("latency_1t", "CPU latency, 1 thread, batch 1 (ms)", 2, static=_row_latency))
