"""Train: python train.py [model=<name>] [data=<dataset>] [recipe=<recipe>] [key=value ...] [-m for sweeps]."""

import hydra

from effconv import cli
from effconv.config import CONF_DIR, register_configs

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg):
    from effconv.engine.loop import train

    results = cli.guarded(train, cfg)  # None: a sweep job that failed (recorded in its run directory)
    return results["top1"] if results else None


if __name__ == "__main__":
    cli.main(main, "config")
