"""effconv.profile against hand-computed MAdds and params (DESIGN §3 convention)."""

import torch
from torch import nn

from effconv.profile import count_cost, count_params, measure_throughput


def test_conv_madds_by_hand():
    # 4 -> 8 channels, 3x3, 10x10 output: 10*10 * 8 * 4 * 9
    cost = count_cost(nn.Conv2d(4, 8, 3, padding=1), (4, 10, 10))
    assert cost.madds == 10 * 10 * 8 * 4 * 9 == 28_800
    assert cost.params == 8 * 4 * 9 + 8


def test_strided_depthwise_and_grouped_madds():
    depthwise = nn.Conv2d(16, 16, 5, stride=2, padding=2, groups=16, bias=False)
    assert count_cost(depthwise, (16, 14, 14)).madds == 7 * 7 * 16 * 25
    grouped = nn.Conv2d(12, 24, 1, groups=4, bias=False)  # each output sees 12/4 = 3 inputs
    assert count_cost(grouped, (12, 5, 5)).madds == 5 * 5 * 24 * 3
    asymmetric = nn.Conv2d(8, 8, (3, 1), stride=(2, 1), padding=(1, 0), groups=8, bias=False)
    assert count_cost(asymmetric, (8, 6, 6)).madds == 3 * 6 * 8 * 3


def test_linear_and_batch_independence():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    assert count_cost(model, (3, 4, 4)).madds == 48 * 10
    assert count_cost(model, (3, 4, 4), batch_size=4).madds == 48 * 10  # per image


def test_not_counted_bn_activation_pool():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.PReLU(3))
    cost = count_cost(model, (3, 8, 8))
    assert cost.madds == 0
    assert cost.params == count_params(model) == 3 * 2 + 3


class CustomOp(nn.Module):
    """A functional conv on its own weight plus per-element products reported through madds()."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 1, 3, 3))
        self.inner = nn.Conv2d(6, 6, 1)

    def forward(self, x):
        return self.inner(nn.functional.conv2d(x, self.weight, padding=1, groups=6))

    def madds(self, inputs, output):
        return output.numel() * 9 + 2 * output.numel()  # the functional conv + 2 multiplies per element


def test_custom_madds_hook_adds_to_children():
    cost = count_cost(CustomOp(), (6, 5, 5))
    assert cost.madds == 5 * 5 * 6 * 9 + 2 * 5 * 5 * 6 + 5 * 5 * 6 * 6
    assert cost.by_module[""] == 5 * 5 * 6 * 11 and cost.by_module["inner"] == 5 * 5 * 6 * 6
    assert cost.madds_under("inner") == 900


def test_count_leaves_model_state_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_cost(model, (3, 8, 8))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model[0]._forward_hooks


def test_throughput_reports_positive_rate():
    result = measure_throughput(nn.Conv2d(3, 4, 3), (3, 16, 16), batch_size=2, min_time_s=0.01, repeats=2)
    assert result.images_per_s > 0 and result.batch_size == 2
