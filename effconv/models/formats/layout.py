"""What every converter of a foreign checkpoint shares: a layout's description and positional pairing.

The authors' networks register their tensors in the same order as ours once a few known differences are
undone (a block whose branches are registered the other way round, a unit whose two kernels are), so a
converter first puts the file's tensors into our order, then pairs them with the model's state dict one to
one. A pair must have the same shape, up to trailing singleton dimensions (a classifier or SE layer that one
side stores as ``nn.Linear`` and the other as a 1x1 conv holds the same numbers). The classifier may differ
in its class count: that is fine-tuning, and the caller keeps the model's own classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

Items = list[tuple[str, torch.Tensor]]


class LayoutMismatch(Exception):
    """A file's tensors do not pair with the model's; the message names the first key that does not fit."""


@dataclass(frozen=True)
class Layout:
    """One published checkpoint layout and how it becomes ours.

    ``matches`` recognises the layout from its key names; ``convert`` returns a state dict with the model's
    keys (raising ``LayoutMismatch``); ``untrained`` lists the model's key prefixes the layout does not hold
    (they keep the model's initialisation, e.g. what a segmentation checkpoint leaves out of a classifier).
    """

    key: str  # short id, recorded in eval.json ("weights") and the fine-tuning log
    name: str  # what the layout is, for messages
    models: tuple[type[nn.Module], ...]
    matches: Callable[[dict[str, torch.Tensor]], bool]
    convert: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]
    untrained: tuple[str, ...] = ()


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefix of the classifier, found through timm's ``get_classifier()``."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    names = [name for name, m in model.named_modules() if head is not None and m is head and name]
    return tuple(f"{n}." for n in names) or ("fc.", "classifier.", "head.")


def _squeezed(shape: Iterable[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def fit_shape(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """``tensor`` in ``shape``, adding or dropping trailing singleton dimensions; None if it cannot be."""
    if tensor.shape == shape:
        return tensor
    if _squeezed(tensor.shape) == _squeezed(shape) and tensor.ndim and len(shape):
        return tensor.reshape(shape)
    return None


def describe(key: str, tensor: torch.Tensor) -> str:
    return f"'{key}' {tuple(tensor.shape)}"


def pair_by_position(items: Items, targets: Items, classifier: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Give the i-th file tensor the i-th model key; a pair that cannot hold the same numbers is an error.

    A classifier tensor of another class count passes through unchanged (the caller replaces it).
    """
    paired = {}
    for (key, tensor), (own_key, own) in zip(items, targets):
        fitted = fit_shape(tensor, own.shape)
        if fitted is None and own_key.startswith(classifier):
            fitted = tensor  # another class count: the caller keeps the model's classifier
        if fitted is None:
            raise LayoutMismatch(f"{describe(key, tensor)} where the model has {describe(own_key, own)}")
        paired[own_key] = fitted
    if len(items) > len(targets):
        surplus = describe(*items[len(targets)])
        raise LayoutMismatch(f"{surplus}: the file holds {len(items)} tensors, the model {len(targets)}")
    if len(items) < len(targets):
        missing = describe(*targets[len(items)])
        raise LayoutMismatch(f"{missing} of the model has no tensor in the file ({len(items)} for {len(targets)})")
    return paired


def move_before(items: Items, first: Callable[[str], bool], group: Callable[[str], str]) -> Items:
    """Within each run of consecutive keys of one ``group``, put the keys ``first`` selects ahead (stably)."""
    out: Items = []
    start = 0
    while start < len(items):
        end = start
        while end < len(items) and group(items[end][0]) == group(items[start][0]):
            end += 1
        run = items[start:end]
        out += [i for i in run if first(i[0])] + [i for i in run if not first(i[0])]
        start = end
    return out
