"""ImageNet-1k (ILSVRC2012) from its JPEG folders, streamed through DataLoader workers.

``data.root`` holds ``train/<wnid>/*.JPEG`` and ``val/``, where ``val/`` is either class folders
(``val/<wnid>/ILSVRC2012_val_*.JPEG``, as valprep.sh or ``python -m effconv.data.prepare imagenet-val`` leave
it) or the flat folder of the official tar (``ILSVRC2012_val_00000001.JPEG`` ...) with its ground truth in the
root: the devkit ``ILSVRC2012_devkit_t12/`` (or its ``.tar.gz``), or Kaggle's ``LOC_val_solution.csv``.

Labels are the index of the wnid in **sorted** order (ImageFolder, torchvision and timm weights). The devkit
numbers classes differently (ILSVRC2012_ID, meta.mat order), so its ground truth is mapped ID -> wnid
(leaf synsets of meta.mat) -> sorted index, never used as ``ID - 1``. specs/datasets.md §1.6.

Images are decoded by ``effconv.data.files.decode_rgb``, which reads the archive's PNG-inside-.JPEG, CMYK and
greyscale files as RGB and names any file it cannot read.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from effconv.data import register_dataset
from effconv.data.files import DatasetFiles, decode_rgb, read_bytes, verify_md5, warn
from effconv.errors import UserError

ENV = "EFFCONV_IMAGENET_ROOT"
EXPECT = (
    "train/<wnid>/*.JPEG and val/ (val/<wnid>/*.JPEG, or the flat val/ with ILSVRC2012_devkit_t12/ or "
    "LOC_val_solution.csv beside it)"
)
EXTENSIONS = (".jpeg", ".jpg", ".png")
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.(jpeg|jpg|png)$", re.IGNORECASE)
DEVKIT = "ILSVRC2012_devkit_t12"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
ARCHIVE_MD5 = {
    "ILSVRC2012_img_train.tar": "1d675b47d978889d74fa0da5fadfb00e",
    "ILSVRC2012_img_val.tar": "29b22e2961454d5413ddabcf34fc5622",
    f"{DEVKIT}.tar.gz": "fa75699e90414af021442c21a62c3abf",
}


class ImageFiles(Dataset):
    """(uint8 RGB image (3, H, W), label) per file; the paths are kept as one bytes array so forked workers
    do not copy them (Python lists of strings are touched by reference counting)."""

    def __init__(self, root: Path, relative_paths: list[str], labels: list[int], classes: list[str]):
        self.root = str(root)
        self.files = np.array(relative_paths, dtype=np.bytes_)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = classes

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return os.path.join(self.root, self.files[index].decode())

    def encoded(self, index: int) -> tuple[torch.Tensor, int]:
        """The file's bytes (decoded later, e.g. on the GPU) and its label."""
        return read_bytes(self.path(index)), int(self.labels[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.path(index)
        return decode_rgb(read_bytes(path), path), int(self.labels[index])


# ---------------------------------------------------------------------------------------------- ground truth
def _leaf_wnids_by_id(meta_mat) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid of the 1,000 leaf synsets of the devkit's meta.mat (path or file object)."""
    import scipy.io

    synsets = scipy.io.loadmat(meta_mat, squeeze_me=True)["synsets"]
    return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in np.atleast_1d(synsets) if int(s["num_children"]) == 0}


def _devkit_ground_truth(meta_mat, lines: list[str]) -> dict[int, str]:
    wnid_of = _leaf_wnids_by_id(meta_mat)
    truth = {}
    for number, line in enumerate((x for x in lines if x.strip()), start=1):
        class_id = int(line)
        if class_id not in wnid_of:
            raise UserError(
                f"validation ground truth line {number}: ILSVRC2012_ID {class_id} is not a leaf synset "
                "of meta.mat; the devkit files do not belong together"
            )
        truth[number] = wnid_of[class_id]
    return truth


def val_ground_truth(source: Path) -> dict[int, str]:
    """Val image number (ILSVRC2012_val_<number>) -> wnid, from the devkit (folder, .tar.gz, or its
    ground-truth .txt with meta.mat beside it) or Kaggle's LOC_val_solution.csv."""
    source = Path(source)
    gt_name, meta_name = "ILSVRC2012_validation_ground_truth.txt", "meta.mat"
    try:
        if source.is_dir():
            for data in (source / "data", source):
                if (data / gt_name).is_file() and (data / meta_name).is_file():
                    return _devkit_ground_truth(data / meta_name, (data / gt_name).read_text().splitlines())
            raise UserError(f"{source} is not the ILSVRC2012 devkit: no data/{gt_name} with data/{meta_name}")
        if source.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(source) as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                if gt_name not in members or meta_name not in members:
                    raise UserError(f"{source} holds no {gt_name} and {meta_name}; is it {DEVKIT}.tar.gz?")
                meta = io.BytesIO(tar.extractfile(members[meta_name]).read())
                lines = tar.extractfile(members[gt_name]).read().decode().splitlines()
            return _devkit_ground_truth(meta, lines)
        if source.suffix == ".csv":
            truth = {}
            for line in source.read_text().splitlines()[1:]:  # ImageId,PredictionString (wnid x1 y1 x2 y2 ...)
                image_id, _, prediction = line.partition(",")
                match = re.search(r"(\d{8})$", image_id.strip())
                if match and prediction.split():
                    truth[int(match.group(1))] = prediction.split()[0]
            return truth
        if source.name == gt_name:
            if not (source.parent / meta_name).is_file():
                raise UserError(f"{source} needs {meta_name} beside it (the devkit's data/ folder) to map IDs to wnids")
            return _devkit_ground_truth(source.parent / meta_name, source.read_text().splitlines())
    except (OSError, ValueError, KeyError, tarfile.TarError) as e:
        raise UserError(f"cannot read the validation ground truth from {source} ({type(e).__name__}: {e})") from None
    raise UserError(
        f"{source} is not a validation ground truth: give the {DEVKIT} folder or .tar.gz, its "
        f"{gt_name}, or Kaggle's {KAGGLE_SOLUTION}"
    )


def find_ground_truth(root: Path) -> Path | None:
    for name in (DEVKIT, f"{DEVKIT}.tar.gz", KAGGLE_SOLUTION):
        if (root / name).exists():
            return root / name
    return None


# ------------------------------------------------------------------------------------------------ the tree
def _listing(folder: Path) -> tuple[list[str], list[str]]:
    """Sorted (sub-folder names, image file names) of a folder."""
    dirs, images = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                dirs.append(entry.name)
            elif entry.name.lower().endswith(EXTENSIONS):
                images.append(entry.name)
    return sorted(dirs), sorted(images)


def _classes(files: DatasetFiles) -> list[str]:
    """Sorted wnids: train/'s class folders, else val/'s, else the devkit's leaves (evaluation only)."""
    for split in ("train", "val"):
        if (files.root / split).is_dir():
            dirs, _ = _listing(files.root / split)
            if dirs:
                return dirs
    truth = find_ground_truth(files.root)
    if truth is None:
        raise files.error(f"{files.root} has no class folders in train/ or val/ and no devkit to name the classes")
    return sorted(set(val_ground_truth(truth).values()))


def _class_folder_split(files: DatasetFiles, folder: Path, dirs: list[str], index: dict[str, int]):
    paths, labels = [], []
    for wnid in dirs:
        if wnid not in index:
            raise files.error(f"{folder / wnid} is not one of the {len(index)} classes of train/")
        _, images = _listing(folder / wnid)
        if not images:
            raise files.error(f"class folder {folder / wnid} holds no images ({', '.join(EXTENSIONS)})")
        paths += [f"{folder.name}/{wnid}/{name}" for name in images]
        labels += [index[wnid]] * len(images)
    return paths, labels


def _flat_val(files: DatasetFiles, folder: Path, images: list[str], index: dict[str, int]):
    source = find_ground_truth(files.root)
    if source is None:
        raise files.error(
            f"{folder} is flat ({len(images)} images, no class folders) and no ground truth was found "
            f"in {files.root} ({DEVKIT}/, {DEVKIT}.tar.gz or {KAGGLE_SOLUTION}); put the devkit there, "
            "or sort val/ once with: python -m effconv.data.prepare imagenet-val "
            f"{folder} <{DEVKIT}.tar.gz>"
        )
    truth = val_ground_truth(source)
    paths, labels = [], []
    for name in images:
        match = VAL_NAME.match(name)
        if match is None:
            raise files.error(
                f"{folder / name} is not named ILSVRC2012_val_<8 digits>.JPEG, so the ground truth "
                f"in {source.name} cannot label it"
            )
        wnid = truth.get(int(match.group(1)))
        if wnid is None or wnid not in index:
            raise files.error(f"{source} gives no class of train/ for {name} (got {wnid})")
        paths.append(f"{folder.name}/{name}")
        labels.append(index[wnid])
    return paths, labels


@register_dataset("imagenet")
def read_imagenet(data_cfg, split: str) -> ImageFiles:
    files = DatasetFiles.open(data_cfg, None, ENV, EXPECT)
    if split not in ("train", "val"):
        raise UserError(f"imagenet has splits ['train', 'val'], not '{split}'; set data.train_split / data.eval_split")
    folder = files.require(split, "split folder")
    if data_cfg.verify_checksums:
        archives = {files.root / name: md5 for name, md5 in ARCHIVE_MD5.items() if (files.root / name).is_file()}
        if not archives:
            warn("imagenet: md5s exist for the archives only and none is in data.root; nothing verified")
        verify_md5("imagenet", archives)
    classes = _classes(files)
    if len(classes) != data_cfg.num_classes:
        raise files.error(
            f"found {len(classes)} classes but data.num_classes={data_cfg.num_classes}: set "
            f"data.num_classes={len(classes)} (subsets of ImageNet are fine)"
        )
    index = {wnid: i for i, wnid in enumerate(classes)}
    dirs, images = _listing(folder)
    if dirs:
        paths, labels = _class_folder_split(files, folder, dirs, index)
    elif images and split == "val":
        paths, labels = _flat_val(files, folder, images, index)
    else:
        raise files.error(f"{folder} holds no class folders" + (" (train/ must be class folders)" if images else ""))
    return ImageFiles(files.root, paths, labels, classes)
