"""MicroNet's extra table columns.

* ``params_code`` / ``madds_code``: our params and MAdds again, beside the authors' *released* models as
  measured (reference-architectures §2.2) instead of the paper's printed, rounded figures. A row's
  ``paper`` value for these columns is that measurement.
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

_LATENCIES: dict = {}


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
    key = (repr(sorted(ctx.cfg.model.items())), ctx.cfg.data.num_classes, ctx.input_size)
    if key not in _LATENCIES:
        _LATENCIES[key] = latency_ms(ctx.model(), ctx.input_size)
    return _LATENCIES[key]


register_column(
    Column(
        "params_code",
        "Params vs authors' code (M)",
        4,
        static=lambda ctx: ctx.cost.params_m,
        relative_delta=True,
    )
)
register_column(
    Column(
        "madds_code",
        "MAdds vs authors' code (M)",
        3,
        static=lambda ctx: ctx.cost.madds_m,
        relative_delta=True,
    )
)
register_column(Column("latency_1t", "CPU latency, 1 thread, batch 1 (ms)", 2, static=_row_latency))
