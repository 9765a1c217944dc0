"""Reading a weight file: ours (``train.py``'s checkpoints), a training dict of another code base, or a bare
state dict (``.safetensors`` too, as timm's hub weights).

The weights are picked as timm's ``load_state_dict`` picks them: ``state_dict_ema`` (or ``model_ema``) when the
file has EMA weights, else ``state_dict`` (or ``model``), else the file itself; the ``module.`` and
``_orig_mod.`` prefixes of DataParallel / DDP / ``torch.compile`` are stripped (timm's ``clean_state_dict``).
Both sets are kept here so a caller can choose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from timm.models import clean_state_dict

from effconv.errors import UserError


@dataclass
class WeightFile:
    path: Path
    raw: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    config: dict | None = None  # train.py's checkpoints carry their run's config
    epoch: int | None = None

    @property
    def default(self) -> dict[str, torch.Tensor]:
        """timm's choice for a file: the EMA weights when there are some."""
        return self.ema if self.ema is not None else self.raw


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def read(path: str | Path) -> WeightFile:
    """Load a weight file on the CPU; a missing, unreadable or weightless file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":  # timm's hub weights
            content = safetensors.torch.load_file(path, device="cpu")
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle of foreign objects, ...
        raise UserError(
            f"checkpoint {path} is unreadable ({type(e).__name__}); it is truncated or not a checkpoint"
        ) from None
    if _is_state_dict(content):
        return WeightFile(path, clean_state_dict(content))
    content = content if isinstance(content, dict) else {}
    raw = next((content[k] for k in ("state_dict", "model") if _is_state_dict(content.get(k))), None)
    if raw is None:
        raise UserError(
            f"checkpoint {path} holds no weights: expected a state dict, or a dict with one under 'state_dict' "
            "(effconv's train.py, liyunsheng13/micronet, timm) or 'model'"
        )
    ema = next((content[k] for k in ("state_dict_ema", "model_ema") if _is_state_dict(content.get(k))), None)
    config = content.get("config") if isinstance(content.get("config"), dict) else None
    epoch = content.get("epoch") if isinstance(content.get("epoch"), int) else None
    ema = clean_state_dict(ema) if ema is not None else None
    return WeightFile(path, clean_state_dict(raw), ema, config, epoch)
