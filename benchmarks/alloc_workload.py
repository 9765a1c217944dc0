"""The workload bench_alloc runs in a process per allocator: seconds per bare train step, as JSON on stdout.

``python -m benchmarks.alloc_workload [--quick]``
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    import timm
    import torch

    import effconv  # noqa: F401  (registers the models)
    from benchmarks.harness import Context, compare, train_step
    from effconv.engine.workarounds import avoid_cpu_channels_last_crash

    ctx = Context(torch.device("cpu"), args.quick)
    ctx.rounds = 3
    steps = {}
    for name, size, classes, batch in (("dicenet_100", 224, 1000, 4), ("resnet20_cifar", 32, 10, 32)):
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=classes).to(memory_format=torch.channels_last).train()
        avoid_cpu_channels_last_crash(model, ctx.device, True)
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, classes, (batch,))
        steps[name] = train_step(model, x, y, torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9))
    print(json.dumps(compare(steps, ctx, warmup=2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
