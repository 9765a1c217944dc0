"""Evaluate: python evaluate.py run=outputs/<run> [which=best|last] | checkpoint=<file> [data_root=<dir>]
| checkpoint=<authors' file> model=<name> [model.<knob>=...] data=<dataset> (docs/weights.md)."""

import hydra

from effconv import cli
from effconv.config import CONF_DIR, register_configs

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg):
    from effconv.evaluate_saved import evaluate_saved

    results = cli.guarded(evaluate_saved, cfg)
    return results["top1"] if results else None


if __name__ == "__main__":
    cli.main(main, "eval")
