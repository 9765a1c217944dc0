"""The installable package: pyproject.toml declares what requirements.txt installs, with the same bounds."""

from __future__ import annotations

import re

import pytest

from effconv.config import CONF_DIR
from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _requirements() -> set[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return {re.sub(r"\s+", "", line) for line in lines if line.strip() and not line.lstrip().startswith("#")}


def test_pyproject_dependencies_are_requirements_txt():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [set(group) for group in project["optional-dependencies"].values()]
    declared = set(project["dependencies"]).union(*extras)
    assert declared == _requirements()
    assert sum(len(group) for group in extras) + len(project["dependencies"]) == len(declared)  # each once


def test_configs_ship_inside_the_package():
    assert CONF_DIR.parent == REPO / "effconv" and (CONF_DIR / "config.yaml").is_file()
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["effconv"]
    shipped = {p for pattern in patterns for p in (REPO / "effconv").glob(pattern)}
    assert shipped == set(CONF_DIR.rglob("*.yaml")) and CONF_DIR / "model" / "micronet_m0.yaml" in shipped
