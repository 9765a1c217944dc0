"""A run's model from its config, the one builder of training (the Trainer) and evaluation (evaluate.py)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from effconv import models
from effconv.config import to_plain
from effconv.engine import checkpoint as ckpt
from effconv.engine.runtime import Runtime
from effconv.engine.workarounds import avoid_cpu_channels_last_crash
from effconv.profile import Cost, count_cost


@dataclass
class BuiltModel:
    model: nn.Module  # on the run's device and in its memory format
    cost: Cost  # params and MAdds per image at input_size
    input_size: tuple[int, int, int]


def build_model(cfg, runtime: Runtime, log=print, init_from: bool = True) -> BuiltModel:
    """``cfg.model`` for ``cfg.data`` on ``runtime``'s device; ``model.init_from`` weights loaded when
    ``init_from`` (training; evaluation loads a checkpoint's own weights instead)."""
    model_cfg = to_plain(cfg.model)
    model = models.create(model_cfg, cfg.data.num_classes)
    if init_from and model_cfg.get("init_from"):
        ckpt.init_weights_from(model, model_cfg["init_from"], log=log)
    input_size = (3, cfg.data.img_size, cfg.data.img_size)
    cost = count_cost(model, input_size)
    model.to(runtime.device, memory_format=runtime.memory_format)
    avoid_cpu_channels_last_crash(model, runtime.device, cfg.get("channels_last", True))
    return BuiltModel(model, cost, input_size)
