"""Export: python export.py run=outputs/<run> format=onnx|pt2|aoti [which=] [weights=] [batch=] [img_size=] [out=]
| checkpoint=<file> | model=<name> (random weights). See README "Deploy"."""

import hydra

from effconv import cli
from effconv.config import CONF_DIR, register_configs

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def main(cfg):
    from effconv.export import export_saved

    return cli.guarded(export_saved, cfg)["max_rel_diff"]


if __name__ == "__main__":
    cli.main(main, "export")
