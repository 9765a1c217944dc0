"""How a network hosts a swappable unit: the one adapter behind every ``conv=<unit>`` knob.

Unit names are those of the units registry (``effconv.ops.UNITS``) and each names one operator in every
network: ``mixconv`` is Tan & Le's depth-wise MixConv + BN wherever it appears, ``mixconv_sep`` its separable
form (MixConv -> BN -> ReLU -> 1x1 -> BN), and so on. A host lists the units its paper compares (``usual``,
named in its error message) but accepts any unit whose shape fits.

* A unit whose weights depend on the resolution it runs at (``dice``) takes ``input_size``; the host passes it
  to every unit whose constructor accepts it, and to no other.
* Host-specific options (the separable unit's ``act``, MicroNet's channel ``multipliers``, MixConv's
  ``split``) are passed only where accepted; options that select a unit variant (``spatial``/``fusion`` of
  ``dice``) are an error for a unit that lacks them.
* ``host_unit``: after a unit that ends with its own normalisation the host applies its activation (PReLU,
  as in the DiCENet authors' ``CBR`` helper, or the host network's own); a unit that ends with its own
  activation (``ends_with_activation = True``: the DiCE unit's gated BN + PReLU output) gets none.
* ``replaced_conv``: the Depthwise Multiception networks' ``conv``/``kernels`` pair; ``kernels`` gives the
  replaced conv's kernel(s) per stage, ``None`` meaning what the authors' code uses for the chosen unit: the
  network's kernel sets for ``multiception`` and ``mixconv_sep`` (ResNets: {3,5,7}, {3,5}, {3,3}); {3,5,7} in
  every stage for ``splitconv`` (the authors' "MixConv" ignores the stage lists); 3 for the others.

Knobs renamed to ``conv`` (MobileNetV3-XSep's ``dw``, MicroNet's ``depthwise``) stop with one line naming the
new spelling (``RENAMED_KNOBS``), from the command line and from ``timm.create_model`` alike.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence

from torch import nn

from effconv.ops import UNITS, create_unit
from effconv.ops.dimconv import size_pair

# the units each paper compares in its host networks (named first in error messages); any unit that fits works
DICE_HOST_UNITS = ("dice", "sep")  # DiCENet Tables 1-3
MICRONET_UNITS = ("micro_dw", "dw")  # MicroNet Table 2 (Micro-Factorized vs k x k depth-wise)
MIXCONV_HOST_UNITS = ("mixconv", "dw", "xsepconv")  # MixConv Figs. 1, 4-6 (and any depth-wise unit)
XSEP_HOST_UNITS = ("dw", "xsepconv", "xsepconv_b", "xsepconv_p", "xsepconv_no2x2")  # XSepConv Tables 1-3, Fig. 6
# the Depthwise Multiception paper's (Tables I-V), and those of its units whose kernels follow the stages
MULTICEPTION_UNITS = ("standard", "dsconv", "mixconv_sep", "splitconv", "multiception")
MULTI_KERNEL = ("multiception", "mixconv_sep")
# depth-wise units (the width stays) -> their separable form (a 1x1 sets the width), for error messages
SEPARABLE_FORMS = {"dw": "sep", "mixconv": "mixconv_sep"}
# old knob -> (its new name, how the values carry over)
RENAMED_KNOBS = {
    "dw": ("conv", "the same values: dw, xsepconv, xsepconv_b, xsepconv_p, xsepconv_no2x2"),
    "depthwise": ("conv", "depthwise=micro is conv=micro_dw, depthwise=kxk is conv=dw"),
}


def renamed_knob(knob: str, prefix: str = "") -> str | None:
    """The one line for a knob that has a new name (``prefix``: ``model.`` on the command line), or None."""
    if knob not in RENAMED_KNOBS:
        return None
    new, values = RENAMED_KNOBS[knob]
    return f"{prefix}{knob} is now {prefix}{new} ({values})"


def check_conv(conv: str, usual: Sequence[str], only: bool = False) -> str:
    """``conv`` if the registry has it (and, with ``only``, the host takes it); else a one-line ValueError."""
    if conv in UNITS and (not only or conv in usual):
        return conv
    if only:
        raise ValueError(f"unknown conv '{conv}'; this network takes {', '.join(usual)}")
    every = ", ".join(sorted(UNITS))
    raise ValueError(f"unknown conv '{conv}'; use one of {', '.join(usual)} or a unit of effconv.ops.UNITS ({every})")


def _accepts(name: str, option: str) -> bool:
    cls = UNITS.get(name)
    return cls is not None and option in inspect.signature(cls.__init__).parameters


def build_unit(
    conv: str,
    in_ch: int,
    out_ch: int,
    stride: int = 1,
    kernel_size=3,
    input_size: Sequence[int] | None = None,
    variant: Mapping | None = None,
    optional: Mapping | None = None,
) -> nn.Module:
    """Unit ``conv`` (in_ch -> out_ch), given the options it accepts (see the module docstring)."""
    opts = {}
    for key, value in (variant or {}).items():
        if not _accepts(conv, key):
            raise ValueError(f"conv unit '{conv}' has no option '{key}' (it selects a variant of another unit)")
        opts[key] = value
    opts.update({k: v for k, v in (optional or {}).items() if _accepts(conv, k)})
    if _accepts(conv, "input_size"):
        if input_size is None:
            raise ValueError(f"conv unit '{conv}' needs the input size, which this network does not track")
        opts["input_size"] = tuple(input_size)
    try:
        return create_unit(conv, in_ch, out_ch, stride=stride, kernel_size=kernel_size, **opts)
    except ValueError as e:
        if conv in SEPARABLE_FORMS and in_ch != out_ch:
            raise ValueError(f"{e}; for a unit that changes the width use conv={SEPARABLE_FORMS[conv]}") from None
        raise


def host_unit(
    conv: str,
    in_ch: int,
    out_ch: int,
    stride: int,
    input_size: Sequence[int] | None = None,
    variant: Mapping | None = None,
    optional: Mapping | None = None,
    kernel_size=3,
    act: type[nn.Module] | None = nn.PReLU,
) -> nn.Module:
    """Unit ``conv`` as a host block uses it, followed by the host's ``act`` where needed.

    ``act=None``: the host applies its activation itself (e.g. after a residual addition).
    """
    unit = build_unit(conv, in_ch, out_ch, stride, kernel_size, input_size, variant, optional)
    if act is None or getattr(unit, "ends_with_activation", False):
        return unit
    return nn.Sequential(unit, act(out_ch) if act is nn.PReLU else act())


def replaced_conv(conv: str, kernels: Sequence | None, default_sets: Sequence[Sequence[int]]):
    """(unit name, one kernel or kernel list per stage) for the ``conv``/``kernels`` knobs of a network."""
    check_conv(conv, MULTICEPTION_UNITS)
    if kernels is None:
        kernels = authors_kernels(conv, default_sets)
    if isinstance(kernels, (str, int)) or len(kernels) != len(default_sets):
        raise ValueError(
            f"kernels needs one entry (a kernel or a list of kernels) per stage ({len(default_sets)}), got {kernels}"
        )
    return conv, [_listify(k) for k in kernels]


def authors_kernels(conv: str, default_sets: Sequence[Sequence[int]]) -> list:
    if conv in MULTI_KERNEL:
        return [list(s) for s in default_sets]
    if conv == "splitconv":
        return [[3, 5, 7] for _ in default_sets]
    return [3 for _ in default_sets]


def _listify(kernel):
    """Kernel knobs arrive from YAML as ints or lists; units take an int or a list of ints."""
    if isinstance(kernel, Sequence) and not isinstance(kernel, str):
        return [int(k) for k in kernel]
    return int(kernel)


def strided(size: Sequence[int]) -> tuple[int, int]:
    """Output size of a 3x3 stride-2 layer with padding 1 (conv or pool): ceil(size / 2)."""
    return tuple(math.ceil(s / 2) for s in size)


def pair(size) -> tuple[int, int]:
    """The ``img_size`` knob: an int or (height, width)."""
    return size_pair(size, "img_size")
