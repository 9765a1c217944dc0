"""Shared by the data tests: dataset configs composed once per dataset, then copied with changes."""

from __future__ import annotations

import copy
import functools


@functools.cache
def _composed(name: str):
    from effconv.config import compose

    return compose([f"data={name}"]).data


def data_cfg(name: str, root=None, **changes):
    """effconv/conf/data/<name>.yaml as train.py composes it, with ``root`` and other keys replaced."""
    cfg = copy.deepcopy(_composed(name))
    cfg.root = None if root is None else str(root)
    for key, value in changes.items():
        cfg[key] = value  # struct mode: a misspelt key fails
    return cfg
