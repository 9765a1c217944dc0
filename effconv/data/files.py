"""What every reader needs from the disk: the root contract, one-line errors, checksums, caches, images.

* ``DatasetFiles`` checks ``data.root`` against the contract (the directory holding the published top-level
  item, as torchvision does) and phrases every failure as one line naming the expected tree, the config key /
  environment variable and the section of ``docs/datasets.md``.
* ``verify_md5`` compares files with the official md5s; a mismatch only warns (users keep re-packed copies).
* ``cached`` stores a decoded split as one uint8 file so the second run starts fast. The file is keyed by the
  source files' sizes and mtimes; it goes to ``data.cache_dir`` if set, else ``<root>/.effconv_cache`` if that
  is writable, else the user's cache directory (``$XDG_CACHE_HOME/effconv``).
* ``decode_rgb`` / ``decode_files`` turn encoded images into uint8 RGB tensors, naming the file that fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from effconv.data import ImageArrays
from effconv.errors import UserError

DOCS = "docs/datasets.md"
CACHE_VERSION = 1  # bump when a reader's decoded output changes, so old cache files are not reused


class DataWarning(UserWarning):
    """A dataset problem that does not stop the run (checksum mismatch, skipped images, unwritable cache)."""


def warn(message: str) -> None:
    """One line on stderr, "effconv.data:0: DataWarning: <message>", without a source line under it."""
    warnings.warn_explicit(message, DataWarning, "effconv.data", 0)


class CorruptImage(UserError):
    """An image file that no decoder can read; ``path`` names it."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        super().__init__(
            f"corrupt or truncated image {path} ({reason}); replace the file, or set "
            "data.skip_corrupt=true to skip such images (they are counted and reported)"
        )


@dataclass
class DatasetFiles:
    """A dataset's place on disk: ``root`` holds ``item`` (or the files themselves when ``item`` is None)."""

    name: str  # the data config name, e.g. cifar10
    root: Path
    item: str | None  # published top-level folder, e.g. cifar-10-batches-py
    env: str  # environment variable that sets the root
    expect: str  # the tree, in words, for messages

    @classmethod
    def open(cls, data_cfg, item: str | None, env: str, expect: str) -> DatasetFiles:
        """Check the root and the top-level item; return the located dataset."""
        files = cls(data_cfg.name, Path(str(data_cfg.root)).expanduser(), item, env, expect)
        root = files.root
        if data_cfg.root is None or not root.exists():
            raise files.error(f"data.root={data_cfg.root} does not exist")
        if not root.is_dir():
            raise files.error(f"data.root={root} is not a directory")
        if item is not None and not (root / item).is_dir():
            raise files.error(f"{root} holds no {item}/{files._misplaced_hint()}")
        return files

    @property
    def base(self) -> Path:
        return self.root / self.item if self.item else self.root

    def error(self, problem: str) -> UserError:
        return UserError(
            f"{self.name}: {problem}; expected data.root (or {self.env}) to be the directory "
            f"holding {self.expect} (see {DOCS}#{self.name})"
        )

    def _misplaced_hint(self) -> str:
        """Spot the two usual mistakes: root is the item itself, or the item sits one level further down."""
        if self.root.name == self.item:
            return f" (data.root points at {self.item}/ itself: use data.root={self.root.parent})"
        deeper = sorted(self.root.glob(f"*/{self.item}"))
        if deeper:
            return f" (found {deeper[0]}: use data.root={deeper[0].parent})"
        return ""

    def require(self, relative: str, what: str = "split file") -> Path:
        """A file (or folder) under ``base`` that must exist."""
        path = self.base / relative
        if not path.exists():
            raise self.error(f"missing {what} {path}")
        return path

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.root)


# ------------------------------------------------------------------------------------------------ checksums
def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_md5(name: str, expected: dict[Path, str]) -> list[Path]:
    """Warn for each file whose md5 differs from the official one; return those files."""
    mismatched = []
    for path, md5 in expected.items():
        actual = md5_of(path)
        if actual != md5:
            mismatched.append(path)
            warn(
                f"{name}: {path} has md5 {actual}, not the official {md5}; continuing (a re-packed copy is "
                "fine if its contents are the same)"
            )
    return mismatched


# ----------------------------------------------------------------------------------------------- file reading
def load_pickle(path: Path, files: DatasetFiles, encoding: str = "ASCII") -> dict:
    """A pickled dict, or one line saying the file is damaged."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding=encoding)
    except (EOFError, pickle.UnpicklingError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as e:
        raise files.error(
            f"{path} is truncated or corrupt ({type(e).__name__}: {e}); re-extract it from the archive"
        ) from None
    if not isinstance(entry, dict):
        raise files.error(f"{path} holds a {type(entry).__name__}, not the published dict of arrays")
    return entry


def field(entry, key: str, path: Path, files: DatasetFiles):
    """``entry[key]``, with Python-2 pickles' bytes keys accepted too; a missing key names the file."""
    for k in (key, key.encode()):
        if k in entry:
            return entry[k]
    raise files.error(f"{path} has no '{key}' entry (keys: {sorted(map(str, entry))}); is it the right file?")


def rows_to_images(data, path: Path, files: DatasetFiles, size: int = 32) -> np.ndarray:
    """CIFAR-style rows (N, 3*size*size) of R, G, B planes, each row-major, as (N, 3, size, size) uint8."""
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * size * size:
        raise files.error(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {3 * size * size})")
    return data.reshape(-1, 3, size, size)


# ---------------------------------------------------------------------------------------------- decoded cache
def user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "effconv"


def cache_dir_for(data_cfg, files: DatasetFiles) -> Path:
    if data_cfg.cache_dir:
        return Path(str(data_cfg.cache_dir)).expanduser()
    local = files.root / ".effconv_cache"
    if os.access(local if local.is_dir() else files.root, os.W_OK):
        return local
    return user_cache_dir() / "datasets"


def fingerprint(files: DatasetFiles, split_key: str, sources: Iterable[Path]) -> str:
    """Hash of what the decoded split depends on: reader version, split, and each source's size and mtime."""
    stats = []
    for path in sources:
        st = path.stat()
        stats.append((files.relative(path), st.st_size, st.st_mtime_ns))
    blob = json.dumps([CACHE_VERSION, files.name, str(files.root.resolve()), split_key, stats])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def cached(
    data_cfg, files: DatasetFiles, split_key: str, sources: Sequence[Path], decode: Callable[[], ImageArrays]
) -> ImageArrays:
    """The decoded split from the cache file if it matches ``sources``, else ``decode()`` and store it."""
    key = fingerprint(files, split_key, sources)
    directory = cache_dir_for(data_cfg, files)
    stem = f"{files.name}-{split_key}"
    path = directory / f"{stem}-{key}.pt"
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            if state.get("fingerprint") == key:
                return ImageArrays(state["images"], state["labels"], list(state["classes"]))
        except Exception as e:  # a damaged cache is rebuilt, never trusted
            warn(f"{files.name}: cache {path} is unreadable ({type(e).__name__}); decoding the files again")
    arrays = decode()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(
            {
                "fingerprint": key,
                "images": arrays.images.contiguous(),
                "labels": arrays.labels,
                "classes": list(arrays.classes),
            },
            tmp,
        )
        os.replace(tmp, path)
        for stale in directory.glob(f"{stem}-*.pt"):  # older decodes of the same split
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError as e:
        warn(
            f"{files.name}: could not write the decoded cache to {directory} ({e}); set data.cache_dir to a "
            "writable directory to start faster next time"
        )
    return arrays


# ------------------------------------------------------------------------------------------------ image files
def read_bytes(path) -> torch.Tensor:
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)


def decode_rgb(data: torch.Tensor, path) -> torch.Tensor:
    """uint8 (3, H, W) from encoded bytes: torchvision's decoder (JPEG incl. CMYK and greyscale, PNG, ...),
    PIL for anything it refuses; ``CorruptImage`` naming ``path`` when neither can read it."""
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        first_error = str(e).rsplit(", ", 1)[-1]
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise CorruptImage(path, f"{first_error}; PIL: {e}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def decode_files(
    paths: Sequence[Path], size: tuple[int, int], skip_corrupt: bool, name: str, threads: int | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """Decode same-sized images in parallel threads into (N, 3, H, W) uint8; returns (images, kept mask).

    An image that cannot be decoded, or is not ``size``, raises ``CorruptImage`` naming it, or with
    ``skip_corrupt`` is left out, counted and reported in one warning.
    """
    out = torch.empty((len(paths), 3, *size), dtype=torch.uint8)
    kept = np.ones(len(paths), dtype=bool)

    def one(i: int) -> str | None:
        try:
            image = decode_rgb(read_bytes(paths[i]), paths[i])
            if tuple(image.shape[1:]) != size:
                raise CorruptImage(paths[i], f"{image.shape[1]}x{image.shape[2]}, expected {size[0]}x{size[1]}")
        except (CorruptImage, OSError) as e:
            if not skip_corrupt:
                corrupt = e if isinstance(e, CorruptImage) else CorruptImage(paths[i], str(e))
                raise UserError(f"{name}: {corrupt}") from None
            kept[i] = False
            return str(paths[i])
        out[i] = image
        return None

    failed = []
    with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(paths), 4096):  # chunks, so an error surfaces without decoding the rest
            failed += [p for p in pool.map(one, range(start, min(start + 4096, len(paths)))) if p is not None]
    if failed:
        warn(f"{name}: skipped {len(failed)} corrupt image(s) (data.skip_corrupt=true), first: {failed[0]}")
        return out[torch.from_numpy(kept)], kept
    return out, kept
