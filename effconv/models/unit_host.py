"""How the DiCENet-paper networks host a swappable unit (``conv=``), shared by their families.

* A unit whose weights depend on the resolution it runs at (``dice``) takes ``input_size``; the host passes it
  to every unit whose constructor accepts it, and to no other.
* Host-specific options (e.g. ``act`` of the separable unit) are passed only where accepted; options that
  select a unit variant (``spatial``/``fusion`` of ``dice``) are an error for a unit that lacks them.
* After a unit that ends with its own normalisation the host applies its activation (PReLU, as in the
  authors' ``CBR`` helper, or the host network's own); a unit that ends with its own activation
  (``ends_with_activation = True``: the DiCE unit's gated BN + PReLU output) gets none.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence

from torch import nn

from effconv.ops import UNITS, create_unit
from effconv.ops.dimconv import size_pair


def _accepts(name: str, option: str) -> bool:
    cls = UNITS.get(name)
    return cls is not None and option in inspect.signature(cls.__init__).parameters


def host_unit(
    conv: str,
    in_ch: int,
    out_ch: int,
    stride: int,
    input_size: Sequence[int],
    variant: Mapping | None = None,
    optional: Mapping | None = None,
    kernel_size: int = 3,
    act: type[nn.Module] | None = nn.PReLU,
) -> nn.Module:
    """Unit ``conv`` (in_ch -> out_ch) as a host block uses it, followed by the host's ``act`` where needed.

    ``act=None``: the host applies its activation itself (e.g. after a residual addition).
    """
    opts = {}
    for key, value in (variant or {}).items():
        if not _accepts(conv, key):
            raise ValueError(f"conv unit '{conv}' has no option '{key}' (it selects a variant of another unit)")
        opts[key] = value
    opts.update({k: v for k, v in (optional or {}).items() if _accepts(conv, k)})
    if _accepts(conv, "input_size"):
        opts["input_size"] = tuple(input_size)
    unit = create_unit(conv, in_ch, out_ch, stride=stride, kernel_size=kernel_size, **opts)
    if act is None or getattr(unit, "ends_with_activation", False):
        return unit
    return nn.Sequential(unit, act(out_ch) if act is nn.PReLU else act())


def strided(size: Sequence[int]) -> tuple[int, int]:
    """Output size of a 3x3 stride-2 layer with padding 1 (conv or pool): ceil(size / 2)."""
    return tuple(math.ceil(s / 2) for s in size)


def pair(size) -> tuple[int, int]:
    """The ``img_size`` knob: an int or (height, width)."""
    return size_pair(size, "img_size")
