"""The data loaders, with one guard: a file that cannot be read is one line naming it, not a traceback.

Readers (effconv/data) check layouts and formats themselves and raise UserErrors naming the file. What they
do not anticipate, a file truncated or overwritten on disk (a gzip stream that ends early, an I/O error),
surfaces as a low-level exception; here it becomes a UserError naming the file, or data.root when the
exception does not say which file.
"""

from __future__ import annotations

import pickle
import zlib

from effconv import data as data_lib
from effconv.errors import UserError

UNREADABLE = (OSError, EOFError, zlib.error, pickle.UnpicklingError)


def build_loaders(data_cfg, *args, **kwargs):
    """``effconv.data.build`` with unreadable files reported as one line."""
    try:
        return data_lib.build(data_cfg, *args, **kwargs)
    except UNREADABLE as e:
        raise UserError(unreadable(data_cfg, e)) from None


def unreadable(data_cfg, error: BaseException) -> str:
    filename = getattr(error, "filename", None)
    detail = (error.strerror if isinstance(error, OSError) and error.strerror else str(error)) or "no detail"
    where = filename or f"the files under data.root={data_cfg.root}"
    return (
        f"{data_cfg.name}: cannot read {where} ({type(error).__name__}: {detail}); a file is missing, truncated "
        "or corrupt: restore it (see docs/datasets.md)"
    )
