"""Operators: pure ``nn.Module`` s with plain constructor arguments, no config knowledge.

Swappable units (DESIGN §3). The papers' claim is "a drop-in replacement for (depth-wise separable)
convolution", so every replaceable unit has one signature::

    unit(in_ch, out_ch, stride=1, kernel_size=3, **opts) -> nn.Module

mapping ``(N, in_ch, H, W)`` to ``(N, out_ch, ceil(H / stride), ceil(W / stride))``. A unit ends with its
own normalisation where the paper puts one and never with the host block's activation: the host block
applies that. Networks take ``conv=<name>`` and build units through ``create_unit``, so a table can compare
units inside the same network.

Units register themselves with ``@register_unit("name")``; every module of this package is imported here, so
adding an operator file is enough to make its units available.
"""

from __future__ import annotations

import importlib
import pkgutil

from torch import nn

UNITS: dict[str, type[nn.Module]] = {}


def register_unit(name: str):
    def wrap(cls):
        if name in UNITS and UNITS[name] is not cls:
            raise ValueError(f"unit '{name}' is registered twice ({UNITS[name].__name__}, {cls.__name__})")
        UNITS[name] = cls
        return cls

    return wrap


def create_unit(name: str, in_ch: int, out_ch: int, stride: int = 1, kernel_size=3, **opts) -> nn.Module:
    if name not in UNITS:
        from effconv.errors import unknown_choice

        raise unknown_choice("conv unit", name, UNITS)
    return UNITS[name](in_ch, out_ch, stride=stride, kernel_size=kernel_size, **opts)


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
