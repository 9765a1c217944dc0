"""MobileNetV3-Small at the widths MicroNet compares against (MicroNet paper, Table 7 and Fig. 5):
0.15x and 0.2x (the MicroNet authors' extension to 4 M / 6 M MAdds), 0.35x and 0.5x (Howard et al. 2019).

Built by timm's own generator, ``timm.models.mobilenetv3._gen_mobilenet_v3('mobilenetv3_small_100',
channel_multiplier)``: the architecture is timm's, only two of the generator's arguments differ from timm's
registered ``mobilenetv3_small_050/075``:

* the stem scales with the multiplier (timm keeps it at 16 channels below 0.75x, ``fix_stem``). A 16-channel
  3x3 stem at 112x112 alone costs 5.4 M MAdds, more than the whole 4 M budget of the 0.15x row; scaled, 0.35x
  and 0.5x land on the MobileNetV3 paper's 12 M and 21 M.
* at 0.15x and 0.2x channels are rounded to the nearest whole channel instead of to multiples of 8: with the
  multiple-of-8 floor nearly every layer of both sits at 8 channels (8.8 M and 10.1 M MAdds, far from the
  paper's 4 M and 6 M). No configuration was published for these two; plain rounding gives 4.09 M / 5.54 M.
  The 1024-wide last layer is not scaled (as in timm and the MobileNetV3 paper), so both keep 1.15-1.2 M
  parameters: the 1024 x 1000 classifier alone holds 1.03 M (paper: 1.0 M / 1.2 M).

timm's ``_gen_mobilenet_v3`` fixes ``fix_stem`` and ``round_chs_fn`` itself, so the two values are set on the
keyword arguments it hands to ``_create_mnv3`` (patched only for the duration of the call). Registered as
``mnv3_small_015``, ``mnv3_small_020``, ``mnv3_small_035``, ``mnv3_small_050`` (names timm does not own);
at 0.75x and 1.0x timm's own ``mobilenetv3_small_075/100`` are already this construction.
"""

from __future__ import annotations

from functools import partial
from unittest import mock

import timm.models.mobilenetv3 as timm_mnv3
from timm.layers import make_divisible
from timm.models import generate_default_cfgs

from effconv.models import register
from effconv.models.pretrained_cfgs import dataset_cfgs


def mobilenetv3_small_scaled(multiplier: float, round_to: int = 8, **kwargs):
    """timm's MobileNetV3-Small at ``multiplier`` with a scaled stem and channels rounded to ``round_to``."""
    create = timm_mnv3._create_mnv3

    def create_with_scaled_stem(variant, pretrained=False, **model_kwargs):
        model_kwargs["fix_stem"] = False
        model_kwargs["round_chs_fn"] = partial(_round_channels, multiplier=multiplier, divisor=round_to)
        return create(variant, pretrained, **model_kwargs)

    with mock.patch.object(timm_mnv3, "_create_mnv3", create_with_scaled_stem):
        return timm_mnv3._gen_mobilenet_v3("mobilenetv3_small_100", multiplier, **kwargs)


def _round_channels(channels: int, multiplier: float, divisor: int) -> int:
    """timm's ``round_channels`` with a chosen divisor (timm: 8); divisor 1 is plain rounding."""
    if divisor == 1:
        return max(1, round(channels * multiplier))
    return make_divisible(channels * multiplier, divisor)


# name: (channel multiplier, rounding divisor)
WIDTHS = {
    "mnv3_small_015": (0.15, 1),
    "mnv3_small_020": (0.2, 1),
    "mnv3_small_035": (0.35, 8),
    "mnv3_small_050": (0.5, 8),
}
# MicroNet's Table 7 and Fig. 5 compare against these on ImageNet
default_cfgs = generate_default_cfgs(
    {
        name: cfg
        for model in WIDTHS
        for name, cfg in dataset_cfgs(model, "micronet", ["imagenet"], 32, "conv_stem", "classifier").items()
    }
)
for _name, (_multiplier, _round_to) in WIDTHS.items():
    register(_name, mobilenetv3_small_scaled, multiplier=_multiplier, round_to=_round_to)
