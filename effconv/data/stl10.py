"""STL-10, binary version (Coates et al. 2011; cs.stanford.edu/~acoates/stl10).

``data.root`` holds ``stl10_binary/`` with ``train_X.bin``/``train_y.bin`` (5,000 images),
``test_X.bin``/``test_y.bin`` (8,000), ``class_names.txt`` (and ``unlabeled_X.bin``, ``fold_indices.txt``,
not used here). ``*_X.bin`` is raw uint8, 3x96x96 per image, R then G then B plane, each plane stored
**column-major**, so a reshape to (N, 3, 96, 96) gives [n, c, x, y] and needs a transpose of the last two
axes. ``*_y.bin`` holds one byte per image, 1..10. specs/datasets.md §1.4; md5s from torchvision.
"""

from __future__ import annotations

import numpy as np
import torch

from effconv.data import ImageArrays, register_dataset
from effconv.data.files import DatasetFiles, cached, verify_md5
from effconv.errors import UserError

FOLDER = "stl10_binary"
SIZE = 96
IMAGE_BYTES = 3 * SIZE * SIZE
CLASS_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
MD5 = {
    "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
    "train_y.bin": "5a34089d4802c674881badbb80307741",
    "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
    "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
    "unlabeled_X.bin": "5242ba1fed5e4be9e1e742405eb56ca4",
}


@register_dataset("stl10")
def read_stl10(data_cfg, split: str) -> ImageArrays:
    files = DatasetFiles.open(
        data_cfg,
        FOLDER,
        "EFFCONV_STL10_ROOT",
        f"{FOLDER}/ (train_X.bin, train_y.bin, test_X.bin, test_y.bin, class_names.txt)",
    )
    if split not in ("train", "test"):
        raise UserError(
            f"stl10 has labelled splits ['train', 'test'], not '{split}'; set data.train_split / data.eval_split"
        )
    x_path, y_path = files.require(f"{split}_X.bin"), files.require(f"{split}_y.bin")
    names_path = files.base / "class_names.txt"
    if data_cfg.verify_checksums:
        verify_md5("stl10", {x_path: MD5[x_path.name], y_path: MD5[y_path.name]})

    def decode() -> ImageArrays:
        size = x_path.stat().st_size
        if size % IMAGE_BYTES:
            raise files.error(
                f"{x_path} is {size} bytes, not a multiple of {IMAGE_BYTES} (3x96x96): truncated or "
                "corrupt; extract it again"
            )
        images = np.fromfile(x_path, dtype=np.uint8).reshape(-1, 3, SIZE, SIZE)
        images = np.ascontiguousarray(images.transpose(0, 1, 3, 2))  # column-major planes -> [n, c, row, col]
        labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1
        if len(labels) != len(images):
            raise files.error(f"{x_path} holds {len(images)} images but {y_path} {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise files.error(f"{y_path} holds labels {labels.min() + 1}..{labels.max() + 1}, expected 1..10")
        names = names_path.read_text().split() if names_path.is_file() else CLASS_NAMES
        return ImageArrays(torch.from_numpy(images), torch.from_numpy(labels), names)

    return cached(data_cfg, files, split, [x_path, y_path], decode)
