"""SVHN cropped digits, format 2 (Netzer et al. 2011; ufldl.stanford.edu/housenumbers).

``data.root`` holds ``train_32x32.mat``, ``test_32x32.mat`` and, for ``data.use_extra=true`` (train on
train + extra, as XSepConv does), ``extra_32x32.mat``. Each is a MATLAB v5 file with ``X`` uint8
(32, 32, 3, N) indexed [row, column, channel, image] and ``y`` (N, 1) with values 1..10, where 10 is the
digit 0. specs/datasets.md §1.3; md5s from torchvision's ``svhn.py``.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from effconv.data import ImageArrays, register_dataset
from effconv.data.files import DatasetFiles, cached, verify_md5
from effconv.errors import UserError

SPLITS = ("train", "test", "extra")
MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    "extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
}


def _load_mat(path, files: DatasetFiles) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5)
        raise files.error(
            f"{path} is a MATLAB v7.3 (HDF5) file; the published files are v5, re-save it with "
            "save(..., '-v7') or download it again"
        ) from None
    except (ValueError, TypeError, OSError, EOFError, zlib.error) as e:
        raise files.error(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); download it again") from None
    if "X" not in mat or "y" not in mat:
        raise files.error(f"{path} has no X/y variables (found {sorted(k for k in mat if not k.startswith('__'))})")
    x, y = mat["X"], mat["y"].ravel()
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise files.error(f"{path}: X is {x.dtype} {x.shape} for {len(y)} labels, expected uint8 (32, 32, 3, N)")
    # X[row, col, channel, n] -> [n, channel, row, col]; label 10 is the digit 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y.astype(np.int64) % 10


@register_dataset("svhn")
def read_svhn(data_cfg, split: str) -> ImageArrays:
    files = DatasetFiles.open(
        data_cfg,
        None,
        "EFFCONV_SVHN_ROOT",
        "train_32x32.mat and test_32x32.mat (and extra_32x32.mat) directly",
    )
    if split not in SPLITS:
        raise UserError(f"svhn has splits {list(SPLITS)}, not '{split}'; set data.train_split / data.eval_split")
    parts = [split, "extra"] if data_cfg.use_extra and split == "train" else [split]
    paths = [
        files.require(f"{part}_32x32.mat", "split file" if part != "extra" else "split file (data.use_extra=true)")
        for part in parts
    ]
    if data_cfg.verify_checksums:
        verify_md5("svhn", {p: MD5[p.name] for p in paths})

    def decode() -> ImageArrays:
        loaded = [_load_mat(p, files) for p in paths]
        images = np.concatenate([x for x, _ in loaded]) if len(loaded) > 1 else loaded[0][0]
        labels = np.concatenate([y for _, y in loaded])
        return ImageArrays(torch.from_numpy(images), torch.from_numpy(labels), [str(d) for d in range(10)])

    return cached(data_cfg, files, "+".join(parts), paths, decode)
