"""Tiny-ImageNet-200 (cs231n.stanford.edu/tiny-imagenet-200.zip): 200 ImageNet classes at 64x64.

``data.root`` holds ``tiny-imagenet-200/`` with ``wnids.txt``, ``train/<wnid>/images/<wnid>_<i>.JPEG``
(500 per class) and ``val/images/val_<i>.JPEG`` labelled by ``val/val_annotations.txt`` (file, wnid, box;
50 per class).
``test/`` has no labels, so papers report val as their test accuracy. specs/datasets.md §1.5.

Labels are the index of the wnid in **sorted** order (torchvision ImageFolder's convention), for train and val
alike. Some images are greyscale; they are decoded to RGB. The JPEGs are decoded once into a uint8 cache.
"""

from __future__ import annotations

import numpy as np
import torch

from effconv.data import ImageArrays, register_dataset
from effconv.data.files import DatasetFiles, cached, decode_files
from effconv.errors import UserError

FOLDER = "tiny-imagenet-200"
SIZE = 64


def _train_files(files: DatasetFiles, wnids: list[str]) -> tuple[list, list[int]]:
    paths, labels = [], []
    for label, wnid in enumerate(wnids):
        folder = files.require(f"train/{wnid}/images", "class folder")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        if not found:
            raise files.error(f"{folder} holds no .JPEG images")
        paths += found
        labels += [label] * len(found)
    return paths, labels


def _val_files(files: DatasetFiles, index: dict[str, int]) -> tuple[list, list[int]]:
    annotations = files.require("val/val_annotations.txt", "split file")
    images = files.require("val/images", "image folder")
    paths, labels = [], []
    for n, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in index:
            raise files.error(f"{annotations} line {n} is not '<file><TAB><wnid of wnids.txt>...': {line[:60]!r}")
        paths.append(images / fields[0].strip())
        labels.append(index[fields[1].strip()])
    return paths, labels


@register_dataset("tiny_imagenet")
def read_tiny_imagenet(data_cfg, split: str) -> ImageArrays:
    files = DatasetFiles.open(
        data_cfg,
        FOLDER,
        "EFFCONV_TINY_IMAGENET_ROOT",
        f"{FOLDER}/ (wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt)",
    )
    if split == "test":
        raise UserError(
            "tiny_imagenet: the test split has no labels; evaluate on val (data.eval_split=val), as the papers do"
        )
    if split not in ("train", "val"):
        raise UserError(
            f"tiny_imagenet has splits ['train', 'val'], not '{split}'; set data.train_split / data.eval_split"
        )
    wnids_path = files.require("wnids.txt", "class list")
    wnids = sorted(set(wnids_path.read_text().split()))
    if not wnids:
        raise files.error(f"{wnids_path} is empty")
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        paths, labels = _train_files(files, wnids)
    else:
        paths, labels = _val_files(files, index)
        missing = next((p for p in paths if not p.is_file()), None)
        if missing is not None:
            raise files.error(f"missing image {missing} (listed in val/val_annotations.txt)")

    def decode() -> ImageArrays:
        images, kept = decode_files(paths, (SIZE, SIZE), data_cfg.skip_corrupt, f"tiny_imagenet {split}")
        targets = torch.from_numpy(np.asarray(labels, dtype=np.int64)[kept])
        return ImageArrays(images, targets, wnids)

    key = f"{split}-skip" if data_cfg.skip_corrupt else split
    return cached(data_cfg, files, key, [wnids_path, *paths], decode)
