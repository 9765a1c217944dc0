"""Find the width multiplier at which a network costs a given number of MAdds.

The DiCENet paper compares units "at similar FLOPs" (Tables 1-3) without publishing the widths; we find
them by search: bisection on ``width_mult`` (cost grows with width, up to channel rounding), then a scan of
the neighbourhood on a fixed grid for the width whose MAdds are closest to the target.

    python -m effconv.width_search resnet_dw 122 conv=dice [img_size=224] [--grid 0.005]
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import timm

from effconv.profile import count_cost


def madds_at(name: str, width_mult: float, img_size: int = 224, num_classes: int = 1000, **knobs) -> float:
    """MAdds (M) of registry model ``name`` at ``width_mult``, counted at its build size."""
    model = timm.create_model(name, num_classes=num_classes, width_mult=width_mult, img_size=img_size, **knobs)
    return count_cost(model, (3, img_size, img_size)).madds_m


def find_width(
    cost: Callable[[float], float],
    target: float,
    low: float = 0.1,
    high: float = 4.0,
    grid: float = 0.005,
    steps: int = 10,
) -> tuple[float, float]:
    """(width, cost) on a ``grid`` with the cost closest to ``target``; ``cost`` must grow with width."""
    cost = functools.cache(cost)
    for _ in range(steps):
        mid = (low + high) / 2
        if cost(mid) < target:
            low = mid
        else:
            high = mid
    centre = round((low + high) / 2 / grid)
    candidates = [round(i * grid, 6) for i in range(max(1, centre - 3), centre + 4)]
    best = min((abs(cost(w) - target), w) for w in candidates)[1]
    return best, cost(best)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m effconv.width_search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model")
    parser.add_argument("target", type=float, help="MAdds in millions")
    parser.add_argument("knobs", nargs="*", help="key=value model knobs (values parsed as YAML)")
    parser.add_argument("--grid", type=float, default=0.005)
    args = parser.parse_args(argv)
    import yaml

    import effconv  # noqa: F401  (registers the models)

    knobs = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.knobs)}
    width, madds = find_width(lambda w: madds_at(args.model, w, **knobs), args.target, grid=args.grid)
    print(
        f"{args.model} {knobs}: width_mult={width} -> {madds:.2f} M MAdds "
        f"({100 * (madds - args.target) / args.target:+.2f}% vs {args.target})"
    )


if __name__ == "__main__":
    main()
