"""Weights from files: effconv's own checkpoints and the papers' authors' published layouts, for any model.

``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=F), **knobs)`` reads ``F`` with
timm's loader and hands the state dict to ``checkpoint_filter_fn`` (the filter every effconv model is built
with): the layout is recognised from its key names among those known for the model's family (one module per
authors' code base: ``micronet``, ``edgenets``, ``multiception``), converted to our keys, and completed;
anything else must be an effconv state dict of the same model and knobs. The command line
(``model.init_from``, ``evaluate.py checkpoint=``) goes through ``convert`` too.

Completion: a classifier of another class count (fine-tuning) and what a layout does not hold (a segmentation
checkpoint's missing level5 and head) keep the model's initialisation, and are named in ``Converted.kept``.
Any other misfit stops with one line naming the expected layout and the first key that does not fit.

Raw or EMA weights of our own checkpoints: timm picks the EMA weights when the file has them (so do we); the
tag ``raw`` (``pretrained_cfg_overlay=dict(file=F, tag='raw')``) takes the raw weights instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from timm.models import clean_state_dict
from torch import nn

from effconv.errors import UserError
from effconv.models.formats import edgenets, micronet, multiception
from effconv.models.formats.files import WeightFile, read
from effconv.models.formats.layout import Layout, LayoutMismatch, classifier_prefixes, describe

__all__ = [
    "LAYOUTS",
    "Converted",
    "WeightFile",
    "architecture",
    "checkpoint_filter_fn",
    "classifier_prefixes",
    "convert",
    "read",
]

LAYOUTS: tuple[Layout, ...] = (
    micronet.LAYOUT,
    edgenets.CLASSIFICATION,
    edgenets.SEGMENTATION,
    multiception.LAYOUT,
)
_logger = logging.getLogger(__name__)


@dataclass
class Converted:
    state_dict: dict[str, torch.Tensor]  # every key of the model
    layout: str  # "effconv" or the key of the authors' layout it came from (micronet, edgenets, ...)
    kept: list[str] = field(default_factory=list)  # top-level modules (some of) left at the model's initialisation
    num_classes: int | None = None  # what the file's classifier holds (None: it has none)


def architecture(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture") or type(model).__name__


def _expected(model: nn.Module) -> str:
    known = [layout.name for layout in LAYOUTS if isinstance(model, layout.models)]
    return " or ".join([f"an effconv {architecture(model)} state dict with the same knobs", *known])


def _first_misfit(state_dict, own, classifier, untrained) -> str | None:
    for key, tensor in state_dict.items():
        if key not in own:
            return f"{describe(key, tensor)} is not in the model"
        if tensor.shape != own[key].shape and not key.startswith(classifier):
            return f"{describe(key, tensor)} where the model has {tuple(own[key].shape)}"
    missing = next((k for k in own if k not in state_dict and not k.startswith(untrained)), None)
    return None if missing is None else f"{describe(missing, own[missing])} of the model is missing from the file"


def convert(state_dict: dict[str, torch.Tensor], model: nn.Module, source: str = "the checkpoint") -> Converted:
    """``state_dict`` (any known layout) as a complete state dict of ``model``; ``source`` names it in errors."""
    state_dict = clean_state_dict(state_dict)
    own = model.state_dict()
    layout = next((x for x in LAYOUTS if isinstance(model, x.models) and x.matches(state_dict)), None)
    untrained: tuple[str, ...] = ()
    if layout is not None:
        untrained = layout.untrained
        try:
            state_dict = layout.convert(state_dict, model)
        except LayoutMismatch as e:
            raise UserError(
                f"{source} is {layout.name} but does not fit {architecture(model)} with these knobs: first key "
                f"that does not fit: {e}; build the model with the knobs the weights were trained with"
            ) from None
    classifier = classifier_prefixes(model)
    misfit = _first_misfit(state_dict, own, classifier, untrained)
    if misfit is not None:
        raise UserError(
            f"{source} does not fit {architecture(model)}: expected {_expected(model)}; first key that does not "
            f"fit: {misfit}"
        )
    file_classes = next((v.shape[0] for k, v in state_dict.items() if k.startswith(classifier) and v.ndim), None)
    complete, kept = {}, []
    for key, tensor in own.items():
        theirs = state_dict.get(key)
        if theirs is None or theirs.shape != tensor.shape:
            kept.append(key.split(".")[0])
            theirs = tensor
        complete[key] = theirs
    return Converted(complete, layout.key if layout else "effconv", list(dict.fromkeys(kept)), file_classes)


def _chosen_weights(state_dict, model) -> dict[str, torch.Tensor]:
    """The tag of ``pretrained_cfg`` picks raw or EMA weights of the file timm read (default: timm's choice)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    tag, path = cfg.get("tag"), cfg.get("file")
    if tag not in ("raw", "ema") or not path:
        return state_dict
    weights = read(path)
    if tag == "ema" and weights.ema is None:
        raise UserError(f"checkpoint {path} holds no EMA weights; drop tag='ema' to load its weights")
    return weights.raw if tag == "raw" else weights.ema


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn`` of every effconv model (see the module docstring)."""
    cfg = getattr(model, "pretrained_cfg", None)
    path = (cfg or {}).get("file")
    source = f"checkpoint {path}" if path else "the state dict"
    converted = convert(_chosen_weights(state_dict, model), model, source)
    if isinstance(cfg, dict) and converted.num_classes is not None:
        # timm's loader drops the classifier when the model's class count differs from the cfg's, which must
        # therefore describe the weights loaded (this dict is the one load_pretrained reads after this filter)
        cfg["num_classes"] = converted.num_classes
    if converted.kept:
        kept = ", ".join(converted.kept)
        _logger.warning(
            "%s: %s keep their initialisation (%s holds no weights of their shape)", architecture(model), kept, source
        )
    return converted.state_dict
