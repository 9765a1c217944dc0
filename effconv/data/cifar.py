"""CIFAR-10 and CIFAR-100, python version (Krizhevsky 2009; cs.toronto.edu/~kriz/cifar.html).

``data.root`` holds ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``) or
``cifar-100-python/`` (``train``, ``test``, ``meta``). Each file is a Python-2 pickle of a dict whose ``data``
is uint8 (N, 3072): the R, G and B planes of a 32x32 image, each row-major, so ``reshape(-1, 3, 32, 32)`` is
already CHW. Labels are ``labels`` (CIFAR-10, 0..9) or ``fine_labels`` (CIFAR-100, 0..99). specs/datasets.md
§1.1-1.2; md5s from torchvision's ``cifar.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from effconv.data import ImageArrays, register_dataset
from effconv.data.files import DatasetFiles, cached, field, load_pickle, rows_to_images, verify_md5
from effconv.errors import UserError


@dataclass(frozen=True)
class CifarFormat:
    folder: str
    splits: dict[str, tuple[str, ...]]
    meta: str
    names_key: str
    labels_key: str
    env: str
    md5: dict[str, str]


FORMATS = {
    "cifar10": CifarFormat(
        folder="cifar-10-batches-py",
        splits={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        meta="batches.meta",
        names_key="label_names",
        labels_key="labels",
        env="EFFCONV_CIFAR10_ROOT",
        md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    ),
    "cifar100": CifarFormat(
        folder="cifar-100-python",
        splits={"train": ("train",), "test": ("test",)},
        meta="meta",
        names_key="fine_label_names",
        labels_key="fine_labels",
        env="EFFCONV_CIFAR100_ROOT",
        md5={
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    ),
}


def read_cifar(data_cfg, split: str) -> ImageArrays:
    fmt = FORMATS[data_cfg.name]
    files = DatasetFiles.open(
        data_cfg,
        fmt.folder,
        fmt.env,
        f"{fmt.folder}/ ({', '.join(fmt.splits['train'])}, {', '.join(fmt.splits['test'])}, {fmt.meta})",
    )
    if split not in fmt.splits:
        raise UserError(
            f"{data_cfg.name} has splits {sorted(fmt.splits)}, not '{split}'; set data.train_split / data.eval_split"
        )
    paths = [files.require(name) for name in fmt.splits[split]]
    meta = files.require(fmt.meta, "metadata file")
    if data_cfg.verify_checksums:
        verify_md5(data_cfg.name, {p: fmt.md5[p.name] for p in [*paths, meta]})

    def decode() -> ImageArrays:
        images, labels = [], []
        for path in paths:
            # Python-2 str keys and values: latin1 turns them into str, as torchvision reads them
            entry = load_pickle(path, files, encoding="latin1")
            images.append(rows_to_images(field(entry, "data", path, files), path, files))
            labels.append(np.asarray(field(entry, fmt.labels_key, path, files), dtype=np.int64))
            if len(labels[-1]) != len(images[-1]):
                raise files.error(f"{path} holds {len(images[-1])} images but {len(labels[-1])} labels")
        names = [str(n) for n in field(load_pickle(meta, files, encoding="latin1"), fmt.names_key, meta, files)]
        return ImageArrays(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), names)

    return cached(data_cfg, files, split, [*paths, meta], decode)


for _name in FORMATS:
    register_dataset(_name)(read_cifar)
