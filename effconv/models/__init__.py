"""Networks, registered with timm: ``import effconv`` makes ``timm.create_model('<name>', **knobs)`` work.

Each module of this package defines one network family, its pretrained configs (``default_cfgs``, timm's
``generate_default_cfgs``; rows from ``pretrained_cfgs.dataset_cfgs``) and registers its variants with
``register``; every module is imported here, so adding a family file is enough. Models are built the timm
way, through ``build_model_with_cfg``: the pretrained config sets the default ``num_classes`` and is attached
as ``model.pretrained_cfg``, and ``features_only=True`` wraps the model in timm's feature extractor.
``create`` builds a model from a model config (``name`` + knobs) and turns bad knobs into one-line errors.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Mapping
from typing import Any

import timm
import torch
from timm.models import build_model_with_cfg, register_model, resolve_pretrained_cfg
from torch import nn

from effconv.errors import UserError, close_matches, unknown_choice

# model-config keys that are not constructor knobs
RESERVED_KEYS = ("name", "init_from")
_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# features_only=True: timm's FeatureGetterNet over the model's forward_intermediates, every level by default
FEATURE_CFG = {"feature_cls": "getter", "out_indices": (0, 1, 2, 3, 4)}


def register(name: str, builder: Callable[..., nn.Module], feature_cfg: Mapping | None = None, **fixed: Any) -> None:
    """Register ``name`` with timm as ``builder(**fixed, **knobs)``: a variant is a row of data.

    The builder's module holds the pretrained configs (``default_cfgs``); ``feature_cfg`` overrides
    ``FEATURE_CFG`` (e.g. the default ``out_indices`` of a network with fewer levels). Names timm already
    owns are refused, so importing effconv never changes what a timm name builds.
    """
    if name in _BUILDERS or (timm.is_model(name) and name not in _BUILDERS):
        raise ValueError(f"model name '{name}' is already registered")
    if name not in getattr(sys.modules[builder.__module__], "default_cfgs", {}):
        raise ValueError(f"model '{name}' has no pretrained config in {builder.__module__}.default_cfgs")
    feature_defaults = {**FEATURE_CFG, **(feature_cfg or {})}

    def entry(pretrained: bool = False, device=None, dtype=None, **kwargs):
        from effconv.models.formats import checkpoint_filter_fn  # it imports the model families

        if pretrained:
            _require_weights_file(name, kwargs.get("pretrained_cfg"), kwargs.get("pretrained_cfg_overlay"))
        features = {**feature_defaults, **kwargs.pop("feature_cfg", {})}
        # timm's device / dtype: the parameters are created on the device (e.g. 'meta': no memory) and cast
        with torch.device(device) if device is not None else contextlib.nullcontext():
            model = build_model_with_cfg(
                builder,
                name,
                pretrained,
                feature_cfg=features,
                # we publish no weights: pretrained=True loads pretrained_cfg_overlay=dict(file=...), converted
                # from our checkpoints or the authors' layouts (effconv/models/formats)
                pretrained_filter_fn=checkpoint_filter_fn,
                **{**fixed, **kwargs},
            )
        return model if dtype is None else model.to(dtype=dtype)

    entry.__name__ = name
    entry.__qualname__ = name
    entry.__module__ = builder.__module__
    entry.__doc__ = f"{name}: {builder.__name__}({', '.join(f'{k}={v!r}' for k, v in fixed.items())})"
    _BUILDERS[name] = builder
    register_model(entry)


def _require_weights_file(name: str, pretrained_cfg, overlay) -> None:
    """We host no weights: ``pretrained=True`` needs a file (timm would otherwise warn and load nothing)."""
    cfg = resolve_pretrained_cfg(name, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=overlay)
    if not (cfg.has_weights or cfg.state_dict):
        raise UserError(
            f"{name} has no hosted weights: pass the checkpoint file, "
            f"timm.create_model('{name}', pretrained=True, pretrained_cfg_overlay=dict(file='<checkpoint>')), "
            "or fine-tune from one with model.init_from=<checkpoint or run dir>"
        )


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
        raise UserError(
            "no model name: pick model=<name> (see effconv/conf/model/) or model=timm model.name=<timm name>"
        )
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
