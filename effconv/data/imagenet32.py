"""Downsampled ImageNet 32x32 (Chrabaszcz, Loshchilov & Hutter 2017, arXiv 1707.08819; image-net.org).

``data.root`` holds ``Imagenet32_train/train_data_batch_1..10`` and ``Imagenet32_val/val_data`` (Python-3
pickles), or the ``.npz`` variant ``Imagenet32_train_npz/train_data_batch_<i>.npz`` and
``Imagenet32_val_npz/val_data.npz``. Each holds ``data`` uint8 (N, 3072) laid out as CIFAR (R, G, B planes,
row-major) and ``labels`` 1..1000 in ``map_clsloc.txt`` order (the devkit's ILSVRC2012_ID, **not** the sorted
wnid order of ImageNet folders); the reader subtracts 1. The training batches' ``mean`` is ignored: images are
normalised with ``data.mean``/``data.std``. specs/datasets.md §1.7. No checksums are published for the files.
"""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from effconv.data import ImageArrays, register_dataset
from effconv.data.files import DatasetFiles, cached, field, load_pickle, rows_to_images, warn
from effconv.errors import UserError

BATCHES = {"train": [f"train_data_batch_{i}" for i in range(1, 11)], "val": ["val_data"]}
FOLDERS = {"train": "Imagenet32_train", "val": "Imagenet32_val"}


def _locate(data_cfg, split: str) -> tuple[DatasetFiles, str]:
    """The split's folder, pickles preferred, else the _npz form; the suffix of its files."""
    expect = "Imagenet32_train/ and Imagenet32_val/ (pickles) or Imagenet32_train_npz/ and Imagenet32_val_npz/"
    root = DatasetFiles.open(data_cfg, None, "EFFCONV_IMAGENET32_ROOT", expect).root
    for folder, suffix in ((FOLDERS[split], ""), (FOLDERS[split] + "_npz", ".npz")):
        if (root / folder).is_dir():
            return DatasetFiles.open(data_cfg, folder, "EFFCONV_IMAGENET32_ROOT", expect), suffix
    files = DatasetFiles(data_cfg.name, root, FOLDERS[split], "EFFCONV_IMAGENET32_ROOT", expect)
    raise files.error(f"{root} holds neither {FOLDERS[split]}/ nor {FOLDERS[split]}_npz/{files._misplaced_hint()}")


def _load(path, files: DatasetFiles) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                entry = {key: npz[key] for key in ("data", "labels") if key in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise files.error(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from None
    else:
        entry = load_pickle(path, files)  # written by Python 3: plain pickle.load
    images = rows_to_images(field(entry, "data", path, files), path, files)
    labels = np.asarray(field(entry, "labels", path, files)).astype(np.int64).ravel() - 1
    if len(labels) != len(images):
        raise files.error(f"{path} holds {len(images)} images but {len(labels)} labels")
    return images, labels


def class_names(root, num_classes: int) -> list[str]:
    """wnids in label order from ``map_clsloc.txt`` (ships with the authors' scripts) if it is in the root."""
    mapping = root / "map_clsloc.txt"
    if mapping.is_file():
        rows = sorted(
            (int(parts[1]), parts[0]) for parts in map(str.split, mapping.read_text().splitlines()) if len(parts) >= 2
        )
        return [wnid for _, wnid in rows]
    return [f"ILSVRC2012_ID {i + 1}" for i in range(num_classes)]


@register_dataset("imagenet32")
def read_imagenet32(data_cfg, split: str) -> ImageArrays:
    if split not in BATCHES:
        raise UserError(
            f"imagenet32 has splits {sorted(BATCHES)}, not '{split}'; set data.train_split / data.eval_split"
        )
    files, suffix = _locate(data_cfg, split)
    paths = [files.require(name + suffix) for name in BATCHES[split]]
    if data_cfg.verify_checksums:
        warn(
            "imagenet32: no per-file checksums are published (only sha256s of the npz zips, see "
            "docs/datasets.md); nothing verified"
        )

    def decode() -> ImageArrays:
        loaded = [_load(p, files) for p in paths]
        images = np.concatenate([x for x, _ in loaded]) if len(loaded) > 1 else loaded[0][0]
        labels = np.concatenate([y for _, y in loaded])
        return ImageArrays(
            torch.from_numpy(images), torch.from_numpy(labels), class_names(files.root, data_cfg.num_classes)
        )

    return cached(data_cfg, files, split + suffix, paths, decode)
