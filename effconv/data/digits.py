"""The offline default dataset: scikit-learn's bundled handwritten digits, upsampled to 32x32 RGB.

1,797 8x8 images with 17 grey levels (0..16), 10 classes (the test part of UCI optdigits). Images are
upsampled bilinearly to 32x32, scaled to 0..255 and repeated over three channels, so any network built for
CIFAR-sized RGB input trains on it unchanged. The train/test split is fixed and stratified: 360 test images
(20%), ``random_state=0``, independent of the run's seed.

``data.root=null`` reads scikit-learn's bundled ``digits.csv.gz``; a directory holding a file of that name
and format (65 comma-separated columns: 64 pixels, then the label) is read instead.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from effconv.data import ImageArrays, register_dataset
from effconv.errors import UserError

SIZE = 32
TEST_COUNT = 360
SPLIT_SEED = 0


def _load_table(root: str | None) -> tuple[np.ndarray, np.ndarray]:
    if root is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.data, bunch.target
    path = Path(root) / "digits.csv.gz"
    if not Path(root).is_dir():
        raise UserError(
            f"digits: data.root={root} is not a directory; expected one holding digits.csv.gz "
            "(scikit-learn's format), or data.root=null for the bundled copy (docs/datasets.md)"
        )
    if not path.is_file():
        raise UserError(
            f"digits: {path} not found; expected scikit-learn's digits.csv.gz there, "
            "or data.root=null for the bundled copy (docs/datasets.md)"
        )
    try:
        table = np.loadtxt(path, delimiter=",")
    except ValueError as e:
        raise UserError(
            f"digits: {path} is malformed ({e}); expected 65 comma-separated numbers per row"
        ) from None
    if table.ndim != 2 or table.shape[1] != 65:
        raise UserError(f"digits: {path} has shape {table.shape}; expected rows of 64 pixels + 1 label")
    return table[:, :64], table[:, 64].astype(int)


@functools.lru_cache(maxsize=4)
def _splits(root: str | None) -> dict[str, ImageArrays]:
    from sklearn.model_selection import train_test_split

    pixels, labels = _load_table(root)
    images = torch.from_numpy(pixels.reshape(-1, 1, 8, 8) / 16.0).float()
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    targets = torch.from_numpy(np.asarray(labels)).long()
    train_idx, test_idx = train_test_split(
        np.arange(len(targets)), test_size=TEST_COUNT, stratify=targets.numpy(), random_state=SPLIT_SEED
    )
    classes = [str(d) for d in range(10)]
    return {
        name: ImageArrays(images[idx], targets[idx], classes)
        for name, idx in (("train", np.sort(train_idx)), ("test", np.sort(test_idx)))
    }


@register_dataset("digits")
def read_digits(data_cfg, split: str) -> ImageArrays:
    splits = _splits(data_cfg.root)
    if split not in splits:
        raise UserError(
            f"digits has splits {sorted(splits)}, not '{split}'; set data.train_split / data.eval_split"
        )
    return splits[split]
