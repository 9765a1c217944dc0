"""DiCENet paper columns: measured latency (Table 5), widths (Table 8).

* ``latency_b1`` / ``latency_b32`` / ``latency_b64``: inference time per batch of 224 px images, measured now
  on the machine at hand (GPU if there is one, else CPU), fp32, channels_last, eval mode; median of timed
  windows (``effconv.profile.measure_throughput``). The paper's figures are a GTX 1080 Ti's.
* ``ch_conv1`` / ``ch_block1`` / ``ch_block2`` / ``ch_block3`` / ``ch_fc``: the output channels of paper
  Table 8's layers, read from the built model (``model.channels``).
"""

from __future__ import annotations

import torch

from effconv.profile import measure_throughput
from effconv.report.columns import Column, RowContext, register_column
from effconv.report.summaries import register_summary


def latency_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _latency(batch_size: int):
    def measure(ctx: RowContext) -> float:
        return ctx.memo(f"latency_b{batch_size}", lambda: _measure(ctx, batch_size))

    return measure


def _measure(ctx: RowContext, batch_size: int) -> float:
    fast = latency_device().type == "cpu"  # a CPU at batch 64 takes seconds per call: fewer windows
    result = measure_throughput(
        ctx.model(),
        ctx.input_size,
        batch_size,
        latency_device(),
        channels_last=True,
        warmup=2 if fast else 10,
        min_time_s=0.2 if fast else 1.0,
        repeats=3 if fast else 5,
    )
    return result.ms_per_batch


for _batch in (1, 32, 64):
    register_column(Column(f"latency_b{_batch}", f"Latency b={_batch} (ms)", 1, static=_latency(_batch)))


def _channels(ctx: RowContext) -> tuple[int, ...]:
    return ctx.memo("channels", lambda: tuple(ctx.model().channels))


# Table 8 layers -> index in DiCENet's [c0, c1, c2, c3, c4, c5]
for _name, _header, _index in (
    ("ch_conv1", "Conv1 ch", 0),
    ("ch_block1", "Block 1 ch", 2),
    ("ch_block2", "Block 2 ch", 3),
    ("ch_block3", "Block 3 ch", 4),
    ("ch_fc", "Grouped FC ch", 5),
):
    register_column(Column(_name, _header, 0, static=lambda ctx, i=_index: _channels(ctx)[i], relative_delta=True))


@register_summary("latency_device")
def latency_device_line(table) -> str:
    device = latency_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    return (
        f"latency measured on {name}: fp32, channels_last, 224 px, eval mode, median ms per batch; "
        "the paper's figures are a GTX 1080 Ti's"
    )
