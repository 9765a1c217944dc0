"""Networks, registered with timm: ``import effconv`` makes ``timm.create_model('<name>', **knobs)`` work.

Each module of this package defines one network family and registers its variants with ``register``; every
module is imported here, so adding a family file is enough. ``create`` builds a model from a model config
(``name`` + knobs) and turns bad knobs into one-line errors.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

import timm
from timm.models import register_model
from torch import nn

from effconv.errors import UserError, close_matches, unknown_choice

# model-config keys that are not constructor knobs
RESERVED_KEYS = ("name", "init_from")
_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# what timm.create_model hands every entrypoint besides the knobs
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def register(name: str, builder: Callable[..., nn.Module], **fixed: Any) -> None:
    """Register ``name`` with timm as ``builder(**fixed, **knobs)``: a variant is a row of data.

    Names timm already owns are refused, so importing effconv never changes what a timm name builds.
    """
    if name in _BUILDERS or (timm.is_model(name) and name not in _BUILDERS):
        raise ValueError(f"model name '{name}' is already registered")

    def entry(pretrained: bool = False, **knobs):
        if pretrained:
            raise UserError(f"{name} has no pretrained weights; use model.init_from=<checkpoint or run dir>")
        for key in _TIMM_ONLY_KWARGS:
            knobs.pop(key, None)
        return builder(**{**fixed, **knobs})

    entry.__name__ = name
    entry.__qualname__ = name
    entry.__module__ = builder.__module__
    entry.__doc__ = f"{name}: {builder.__name__}({', '.join(f'{k}={v!r}' for k, v in fixed.items())})"
    _BUILDERS[name] = builder
    register_model(entry)


def our_models() -> list[str]:
    return sorted(_BUILDERS)


def knobs_of(name: str) -> list[str]:
    """Constructor knobs of one of our models (empty for timm's own)."""
    if name not in _BUILDERS:
        return []
    params = inspect.signature(_BUILDERS[name]).parameters.values()
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def create(model_cfg: Mapping[str, Any], num_classes: int) -> nn.Module:
    """Build ``model_cfg['name']`` with the remaining keys as knobs; errors are one line."""
    name = model_cfg.get("name")
    if not name or name == "???":
        raise UserError("no model name: pick model=<name> (see conf/model/) or model=timm model.name=<timm name>")
    if not timm.is_model(name):
        raise unknown_choice(
            "model", name, our_models() + timm.list_models(), " and timm.list_models()", listed=our_models()
        )
    knobs = {k: v for k, v in model_cfg.items() if k not in RESERVED_KEYS}
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **knobs)
    except TypeError as e:
        bad = str(e).split("'")[-2] if "unexpected keyword argument" in str(e) else None
        if bad is None:
            raise
        from effconv.models.units import renamed_knob

        if renamed_knob(bad):
            raise UserError(f"model {name}: {renamed_knob(bad)}") from None
        accepted = knobs_of(name)
        hint = close_matches(bad, accepted) + (f"; knobs: {', '.join(accepted)}" if accepted else "")
        raise UserError(f"model {name} has no knob '{bad}'{hint}") from None
    except ValueError as e:
        raise UserError(f"model {name}: {e}") from None


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
