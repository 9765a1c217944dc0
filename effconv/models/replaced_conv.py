"""The ``conv`` and ``kernels`` knobs of the networks the Depthwise Multiception paper swaps convolutions in.

``conv`` names the convolution method of the paper's tables; it maps to a unit of ``effconv.ops.UNITS``:

==============  ===============  =====================================================================
knob value      unit             what it is
==============  ===============  =====================================================================
standard        ``standard``     k x k conv + BN (the baseline of Table V)
dsconv          ``dsconv``       the authors' depth-wise separable conv (Tables I-III "DSConv")
mixconv         ``mixconv_sep``  Tan & Le's depth-wise MixConv + 1x1 (the operator the paper describes)
splitconv       ``splitconv``    the authors' channel-split full conv (what produced the "MixConv" column)
multiception    ``multiception`` Depthwise Multiception
==============  ===============  =====================================================================

Any other registered unit name is used as given. ``mixconv`` is translated because the unit of that name is
the bare MixConv operator of the MixConv paper (depth-wise, width-preserving), while these networks need a
unit that also changes the width.

``kernels`` gives the replaced conv's kernel(s) per stage. ``None`` means what the authors' code uses for the
chosen method: the network's kernel sets for multiception and mixconv (ResNets: {3,5,7}, {3,5}, {3,3});
{3,5,7} in every stage for splitconv (the authors' MixConv ignores the stage lists); 3 for standard and
dsconv.
"""

from __future__ import annotations

from collections.abc import Sequence

from effconv.ops import UNITS

CONV_TO_UNIT = {
    "standard": "standard",
    "dsconv": "dsconv",
    "mixconv": "mixconv_sep",
    "splitconv": "splitconv",
    "multiception": "multiception",
}
MULTI_KERNEL = ("multiception", "mixconv")


def replaced_conv(conv: str, kernels: Sequence | None, default_sets: Sequence[Sequence[int]]):
    """(unit name, one kernel or kernel list per stage) for the ``conv``/``kernels`` knobs of a network."""
    unit = CONV_TO_UNIT.get(conv, conv)
    if unit not in UNITS:
        raise ValueError(
            f"unknown conv '{conv}'; use one of {', '.join(CONV_TO_UNIT)} "
            f"or a unit of effconv.ops.UNITS ({', '.join(sorted(UNITS))})"
        )
    if kernels is None:
        kernels = authors_kernels(conv, default_sets)
    if isinstance(kernels, (str, int)) or len(kernels) != len(default_sets):
        raise ValueError(
            f"kernels needs one entry (a kernel or a list of kernels) per stage ({len(default_sets)}), got {kernels}"
        )
    return unit, [_listify(k) for k in kernels]


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
