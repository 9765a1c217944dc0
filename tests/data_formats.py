"""Small, format-exact copies of the seven datasets: what the tests read, and what acceptance runs train on.

    python -m tests.data_formats <format> <dir> [--per-class N] [--eval-per-class M] [--classes K]
                                 [--flat-val] [--npz] [--seed S]

writes a copy of ``<format>`` (cifar10, cifar100, svhn, stl10, tiny_imagenet, imagenet, imagenet32) so that
``data.root=<dir>`` reads it, and prints the command line to train on it. Each file is written as published
(specs/datasets.md): CIFAR as Python-2 protocol-2 pickles with Python-2 string opcodes, SVHN as compressed
MATLAB v5 with X[row, col, channel, n] and label 10 for the digit 0, STL-10 as raw column-major planes with
1-based labels, Tiny-ImageNet and ImageNet as JPEG trees (unsorted wnids.txt, val_annotations.txt, flat val
with a devkit whose class IDs are not in sorted-wnid order, greyscale/CMYK/PNG-inside-.JPEG files),
ImageNet32 as Python-3 pickles or npz with 1-based labels.

Every image shows its class (a class colour and a grating whose orientation and frequency depend on the
class, plus noise), so a network can learn the copy, and an asymmetric marker: a pure red block in the
top-right corner. A reader that transposes, flips or swaps channels moves or recolours it.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import struct
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MARKER_RGB = (255, 0, 0)
FORMATS = ("cifar10", "cifar100", "svhn", "stl10", "tiny_imagenet", "imagenet", "imagenet32")
NUM_CLASSES = {
    "cifar10": 10,
    "cifar100": 100,
    "svhn": 10,
    "stl10": 10,
    "tiny_imagenet": 200,
    "imagenet": 1000,
    "imagenet32": 1000,
}


@dataclass
class Written:
    """A generated copy: ``root`` is the data.root to pass; ``labels[split]`` are the 0-based labels in the
    order the reader returns them; ``special`` names files written with a quirk (greyscale, CMYK, PNG)."""

    name: str
    root: Path
    num_classes: int
    labels: dict[str, np.ndarray]
    size: int | None = None  # image side for fixed-size formats
    marker: int = 4  # side of the red marker block
    special: dict[str, Path] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- pixels
def class_images(
    labels: np.ndarray, height: int, width: int, num_classes: int, rng: np.random.Generator, marker: int
) -> np.ndarray:
    """uint8 (N, 3, H, W): class colour + class-oriented grating + noise, red block at the top right."""
    n = len(labels)
    palette = np.random.default_rng(12345).integers(40, 216, size=(max(num_classes, 1), 3))
    angle = (labels * 2.399963) % np.pi  # golden-angle steps: neighbouring classes differ in orientation
    freq = 2.0 + (labels % 3)
    ys, xs = np.mgrid[0:height, 0:width]
    ys, xs = ys / height, xs / width
    phase = rng.uniform(0, 2 * np.pi, size=n)
    wave = np.sin(
        2 * np.pi * freq[:, None, None] * (np.cos(angle)[:, None, None] * xs + np.sin(angle)[:, None, None] * ys)
        + phase[:, None, None]
    )
    images = palette[labels][:, :, None, None] + 45 * wave[:, None] + rng.normal(0, 12, size=(n, 3, height, width))
    images = np.clip(images, 0, 255).astype(np.uint8)
    images[:, :, :marker, width - marker :] = np.array(MARKER_RGB, dtype=np.uint8)[None, :, None, None]
    return images


def balanced_labels(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` of each class, shuffled (the published batches are not class-sorted)."""
    return rng.permutation(np.repeat(np.arange(num_classes), per_class))


def fake_wnids(count: int, rng: np.random.Generator) -> list[str]:
    """Distinct ImageNet-like synset ids (n + 8 digits), in an unsorted order."""
    numbers = rng.choice(np.arange(1_000_000, 15_000_000), size=count, replace=False)
    return [f"n{int(x):08d}" for x in numbers]


# ---------------------------------------------------------------------------------------------------- pickles
class _Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote the CIFAR batches: str and bytes as (SHORT_)BINSTRING opcodes
    and numpy's reconstructor under its old module path. Reading these needs ``encoding='latin1'`` (or
    ``'bytes'``); the default ASCII fails on the pixel bytes, as with the real files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str
    dispatch[type] = save_global


def dump_python2(obj, path: Path) -> None:
    with open(path, "wb") as f:
        _Python2Pickler(f, protocol=2).dump(obj)


def write_cifar(
    root: Path, name: str, per_class: int, eval_per_class: int, classes: int, rng: np.random.Generator
) -> Written:
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    train, test = balanced_labels(classes, per_class, rng), balanced_labels(classes, eval_per_class, rng)
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def batch(labels, title):
        images = class_images(labels, 32, 32, classes, rng, 4)
        entry = {
            "batch_label": title,
            label_key: [int(x) for x in labels],
            "data": images.reshape(len(labels), -1),
            "filenames": [f"img_{i:05d}.png" for i in range(len(labels))],
        }
        if name == "cifar100":
            entry["coarse_labels"] = [int(x) // 5 for x in labels]
        return entry

    if name == "cifar10":
        for i, part in enumerate(np.array_split(train, 5), start=1):
            dump_python2(batch(part, f"training batch {i} of 5"), folder / f"data_batch_{i}")
        dump_python2(batch(test, "testing batch 1 of 1"), folder / "test_batch")
        dump_python2(
            {
                "num_cases_per_batch": len(train) // 5,
                "label_names": [f"class{i}" for i in range(classes)],
                "num_vis": 3072,
            },
            folder / "batches.meta",
        )
    else:
        dump_python2(batch(train, "training batch 1 of 1"), folder / "train")
        dump_python2(batch(test, "testing batch 1 of 1"), folder / "test")
        dump_python2(
            {
                "fine_label_names": [f"fine{i}" for i in range(classes)],
                "coarse_label_names": [f"coarse{i}" for i in range(20)],
            },
            folder / "meta",
        )
    (folder / "readme.html").write_text("<html>generated test copy</html>\n")
    return Written(name, root, classes, {"train": train, "test": test}, size=32)


def write_imagenet32(
    root: Path, per_class: int, eval_per_class: int, classes: int, rng: np.random.Generator, npz: bool = False
) -> Written:
    suffix = "_npz" if npz else ""
    train, val = balanced_labels(classes, per_class, rng), balanced_labels(classes, eval_per_class, rng)
    train_dir, val_dir = root / f"Imagenet32_train{suffix}", root / f"Imagenet32_val{suffix}"
    train_dir.mkdir(parents=True, exist_ok=True)
    val_dir.mkdir(parents=True, exist_ok=True)
    images = class_images(train, 32, 32, classes, rng, 4).reshape(len(train), -1)
    mean = images.mean(0).astype(np.float64)
    # the authors' script: batches 1-9 hold n // 10 rows, batch 10 the rest; labels are 1-based
    step = len(train) // 10
    bounds = [i * step for i in range(10)] + [len(train)]

    def save(entry, path):
        if npz:
            np.savez(f"{path}.npz", **{k: np.asarray(v) for k, v in entry.items()})
        else:
            with open(path, "wb") as f:
                pickle.dump(entry, f, protocol=3)

    for i in range(10):
        part = slice(bounds[i], bounds[i + 1])
        save(
            {"data": images[part], "labels": [int(x) + 1 for x in train[part]], "mean": mean},
            train_dir / f"train_data_batch_{i + 1}",
        )
    val_images = class_images(val, 32, 32, classes, rng, 4).reshape(len(val), -1)
    save({"data": val_images, "labels": [int(x) + 1 for x in val]}, val_dir / "val_data")
    return Written("imagenet32", root, classes, {"train": train, "val": val}, size=32)


# --------------------------------------------------------------------------------------------- binary / .mat
def write_svhn(root: Path, per_class: int, eval_per_class: int, classes: int, rng: np.random.Generator) -> Written:
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for split, count in (("train", per_class), ("test", eval_per_class), ("extra", max(1, per_class // 2))):
        digits = balanced_labels(10, count, rng)
        images = class_images(digits, 32, 32, 10, rng, 4)
        on_disk = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]  # label 10 is the digit 0
        scipy.io.savemat(
            root / f"{split}_32x32.mat",
            {"X": np.ascontiguousarray(images.transpose(2, 3, 1, 0)), "y": on_disk},
            do_compression=True,
        )
        labels[split] = digits
    return Written("svhn", root, 10, labels, size=32)


def write_stl10(root: Path, per_class: int, eval_per_class: int, classes: int, rng: np.random.Generator) -> Written:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for split, count in (("train", per_class), ("test", eval_per_class)):
        y = balanced_labels(10, count, rng)
        images = class_images(y, 96, 96, 10, rng, 8)
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # each plane column-major
        (y + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
        labels[split] = y
    class_images(rng.integers(0, 10, 4), 96, 96, 10, rng, 8).transpose(0, 1, 3, 2).tofile(folder / "unlabeled_X.bin")
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    n_train = len(labels["train"])
    folds = [rng.choice(n_train, size=max(1, n_train // 5), replace=False) for _ in range(10)]
    (folder / "fold_indices.txt").write_text("".join(" ".join(map(str, f)) + " \n" for f in folds))
    return Written("stl10", root, 10, labels, size=96, marker=8)


# ------------------------------------------------------------------------------------------------------ JPEGs
def save_image(array_chw: np.ndarray, path: Path, mode: str = "RGB", fmt: str = "JPEG") -> None:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(array_chw.transpose(1, 2, 0)))
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, fmt, **({"quality": 92} if fmt == "JPEG" else {}))


def write_tiny_imagenet(
    root: Path, per_class: int, eval_per_class: int, classes: int, rng: np.random.Generator
) -> Written:
    base = root / "tiny-imagenet-200"
    wnids = fake_wnids(classes, rng)  # file order, not sorted: the reader must use one mapping for both splits
    index = {w: i for i, w in enumerate(sorted(wnids))}
    (base / "train").mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    words = [f"{w}\tthing {i}, object" for i, w in enumerate(wnids + fake_wnids(5, rng))]
    (base / "words.txt").write_text("\n".join(words) + "\n")
    special = {}
    for wnid in wnids:
        images_dir = base / "train" / wnid / "images"
        images_dir.mkdir(parents=True, exist_ok=True)
        pixels = class_images(np.full(per_class, index[wnid]), 64, 64, classes, rng, 16)
        boxes = []
        for i, image in enumerate(pixels):
            name = f"{wnid}_{i}.JPEG"
            grey = i == 1 and not special
            save_image(image, images_dir / name, mode="L" if grey else "RGB")
            if grey:
                special["greyscale"] = images_dir / name
            boxes.append(f"{name}\t0\t0\t63\t63")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    val = balanced_labels(classes, eval_per_class, rng)
    by_sorted = sorted(wnids)
    lines = []
    for i, (label, image) in enumerate(zip(val, class_images(val, 64, 64, classes, rng, 16))):
        save_image(image, base / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{by_sorted[label]}\t0\t32\t44\t62")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (base / "test" / "images").mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(class_images(rng.integers(0, classes, 3), 64, 64, classes, rng, 16)):
        save_image(image, base / "test" / "images" / f"test_{i}.JPEG")
    train = np.repeat(np.arange(classes), per_class)
    return Written("tiny_imagenet", root, classes, {"train": train, "val": val}, size=64, marker=16, special=special)


def _meta_mat(path, wnids_by_id: list[str], rng: np.random.Generator) -> None:
    """The devkit's meta.mat: a struct array of leaf synsets (IDs 1..K in this order) and a few inner ones."""
    import scipy.io

    inner = fake_wnids(3, rng)
    fields = [
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    ]
    synsets = np.empty((len(wnids_by_id) + len(inner), 1), dtype=[(f, "O") for f in fields])
    for i, wnid in enumerate(wnids_by_id + inner):
        leaf = i < len(wnids_by_id)
        children = np.zeros((1, 0)) if leaf else np.array([[1, 2]], dtype=np.uint16)
        synsets[i, 0] = (
            np.array([[i + 1]], dtype=np.uint16),
            np.array([wnid]),
            np.array([f"words {i}"]),
            np.array(["gloss"]),
            np.array([[0 if leaf else 2]], dtype=np.uint8),
            children,
            np.array([[0 if leaf else 1]], dtype=np.uint8),
            np.array([[1300]], dtype=np.uint16),
        )
    scipy.io.savemat(path, {"synsets": synsets})


def write_imagenet(
    root: Path,
    per_class: int,
    eval_per_class: int,
    classes: int,
    rng: np.random.Generator,
    flat_val: bool = False,
    devkit_tar: bool = False,
) -> Written:
    wnids = sorted(fake_wnids(classes, rng))  # label = index in sorted order
    special = {}
    train_labels = []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(48, 97)), int(rng.integers(48, 113))
            image = class_images(np.array([label]), h, w, classes, rng, 16)[0]
            path = folder / f"{wnid}_{i}.JPEG"
            quirk = {0: "greyscale", 1: "cmyk", 2: "png"}.get(len(special)) if i == 1 else None
            if quirk == "greyscale":
                save_image(image, path, mode="L")
            elif quirk == "cmyk":
                save_image(image, path, mode="CMYK")
            elif quirk == "png":  # the archive's n02105855_2933.JPEG is a PNG
                save_image(image, path, fmt="PNG")
            else:
                save_image(image, path)
            if quirk:
                special[quirk] = path
            train_labels.append(label)
    val = balanced_labels(classes, eval_per_class, rng)
    val_dir = root / "val"
    val_dir.mkdir(parents=True, exist_ok=True)
    names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(len(val))]
    for name, label in zip(names, val):
        h, w = int(rng.integers(48, 97)), int(rng.integers(48, 113))
        image = class_images(np.array([label]), h, w, classes, rng, 16)[0]
        target = val_dir / name if flat_val else val_dir / wnids[label] / name
        target.parent.mkdir(exist_ok=True)
        save_image(image, target)
    # the devkit numbers classes in its own order (ILSVRC2012_ID), not sorted by wnid
    id_order = list(rng.permutation(wnids))
    devkit = root / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True, exist_ok=True)
    _meta_mat(devkit / "meta.mat", id_order, rng)
    ids = [id_order.index(wnids[label]) + 1 for label in val]
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in ids))
    if devkit_tar:
        with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
            tar.add(root / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
        shutil.rmtree(root / "ILSVRC2012_devkit_t12")
    if flat_val:
        val_labels = val  # sorted file names = generation order
    else:
        val_labels = np.array(sorted(val.tolist()))  # class folders in sorted-wnid order
    return Written(
        "imagenet",
        root,
        classes,
        {"train": np.array(train_labels), "val": val_labels},
        marker=16,
        special=special,
    )


# ------------------------------------------------------------------------------------------------------ entry
def write(
    name: str,
    root,
    per_class: int = 10,
    eval_per_class: int | None = None,
    classes: int | None = None,
    seed: int = 0,
    **options,
) -> Written:
    """Write a copy of format ``name`` under ``root`` (the future data.root)."""
    if name not in FORMATS:
        raise ValueError(f"unknown format {name}; choose from {', '.join(FORMATS)}")
    root, rng = Path(root), np.random.default_rng(seed)
    eval_per_class = eval_per_class or max(1, per_class // 5)
    classes = classes or NUM_CLASSES[name]
    if name in ("svhn", "stl10") and classes != 10:
        raise ValueError(f"{name} always has 10 classes")
    if name in ("cifar10", "cifar100"):
        return write_cifar(root, name, per_class, eval_per_class, classes, rng)
    writer = {
        "svhn": write_svhn,
        "stl10": write_stl10,
        "tiny_imagenet": write_tiny_imagenet,
        "imagenet": write_imagenet,
        "imagenet32": write_imagenet32,
    }[name]
    return writer(root, per_class, eval_per_class, classes, rng, **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.data_formats", description=__doc__.split("\n\n")[0])
    parser.add_argument("format", choices=FORMATS)
    parser.add_argument("dir", type=Path, help="where to write; pass it as data.root")
    parser.add_argument("--per-class", type=int, default=10, help="training images per class")
    parser.add_argument("--eval-per-class", type=int, default=None, help="evaluation images per class")
    parser.add_argument("--classes", type=int, default=None, help="fewer classes (then set data.num_classes)")
    parser.add_argument("--flat-val", action="store_true", help="imagenet: flat val/ with the devkit")
    parser.add_argument("--devkit-tar", action="store_true", help="imagenet: the devkit as .tar.gz")
    parser.add_argument("--npz", action="store_true", help="imagenet32: the npz variant")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    options = {}
    if args.format == "imagenet":
        options = {"flat_val": args.flat_val, "devkit_tar": args.devkit_tar}
    elif args.format == "imagenet32":
        options = {"npz": args.npz}
    written = write(args.format, args.dir, args.per_class, args.eval_per_class, args.classes, args.seed, **options)
    counts = ", ".join(f"{split} {len(labels)}" for split, labels in written.labels.items())
    print(f"wrote {args.format} ({written.num_classes} classes; {counts}) under {written.root}")
    extra = "" if written.num_classes == NUM_CLASSES[args.format] else f" data.num_classes={written.num_classes}"
    print(f"train on it: python train.py data={args.format} data.root={written.root}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
