"""The streaming path for datasets too large to hold decoded (ImageNet): files through DataLoader workers.

The order of an epoch is ``EpochOrder`` (the same as the in-memory path: a function of seed, epoch and rank,
sharded like ``DistributedSampler``), handed to the DataLoader as a batch sampler that starts at any batch, so
a run resumes mid-epoch exactly where it stopped. Every sample carries its own random stream
(seed, epoch, rank, position in the epoch), so its augmentation does not depend on which worker processes it
or on how many workers there are.

Workers read and decode each file to uint8 (``torchvision.io``), apply the per-image preset
(``transforms.v2`` functionals on uint8 tensors) and collate uint8 batches into pinned memory; the copy to
the device is asynchronous and the float conversion and normalisation happen there (performance-notes §5,
§6.4: uint8 tensors end to end, no PIL and no float work on the CPU).

``data.gpu_decode=true`` on a CUDA device moves JPEG decoding to the GPU. Workers read the bytes and the JPEG
header (size, colour model), draw the image's augmentation from its own stream there (the same draws as the
CPU path), and hand over bytes + plan; the main process decodes the batch's JPEGs in one
``torchvision.io.decode_jpeg(device='cuda')`` call (nvJPEG) and applies each plan on the GPU. Files nvJPEG
cannot take (CMYK JPEGs, PNGs named .JPEG: 23 in ImageNet's train set) are recognised by their header and
finished on the CPU by the worker; should nvJPEG still refuse one image, only that image goes to the CPU
decoder, not its batch.

Unreadable images: with ``data.skip_corrupt=false`` the first one stops the run with a line naming the file;
with ``true`` it is dropped from its batch (the batch is one image shorter), warned about once per file and
counted in ``loader.skipped``.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from effconv.data.files import CorruptImage, decode_rgb, warn
from effconv.data.memory import EpochOrder, derive_seed
from effconv.data.transforms import flip_where, sample_transform, to_device
from effconv.errors import UserError

NVJPEG_MODES = ("RGB", "L")  # colour models of baseline/progressive JPEGs that nvJPEG decodes to RGB


def nvjpeg_size(data: torch.Tensor) -> tuple[int, int] | None:
    """(height, width) of a JPEG that nvJPEG can decode, from its header only; None for anything else."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            if image.format == "JPEG" and image.mode in NVJPEG_MODES:
                return image.height, image.width
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    return None


class _EpochBatches(Sampler):
    """Batches of (index, random stream) keys for one epoch, from batch ``start`` on; set before each pass."""

    def __init__(self, order: EpochOrder):
        self.order, self.epoch, self.start = order, 0, 0

    def __len__(self) -> int:
        return len(self.order) - self.start

    def _stream(self, position: int) -> tuple[int, ...]:
        o = self.order
        return (o.seed, self.epoch, o.rank, position) if o.train else (o.seed, -1, o.shard[0] + position)

    def __iter__(self):
        indices, size = self.order.indices(self.epoch).tolist(), self.order.batch_size
        for b in range(self.start, len(self.order)):
            positions = range(b * size, min((b + 1) * size, len(indices)))
            yield [(indices[p], self._stream(p)) for p in positions]


class _Samples(Dataset):
    """What a worker does with one key: read (and decode and transform) the image, never raise for bad files.

    Returns (payload, label, plan, problem): payload is the transformed uint8 image, or with GPU decoding the
    encoded bytes of a JPEG nvJPEG takes, whose augmentation ``plan`` ((crop box, flip), path) the main process
    applies after decoding; problem is None or (path, message) of an unreadable image.
    """

    def __init__(self, dataset, transform, encoded: bool):
        self.dataset, self.transform, self.encoded = dataset, transform, encoded

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, stream = key
        generator = torch.Generator().manual_seed(derive_seed(*stream))
        try:
            if self.encoded:
                data, label = self.dataset.encoded(index)
                size = nvjpeg_size(data)
                if size is not None:
                    return data, label, (self.transform.plan(*size, generator), self.dataset.path(index)), None
                image = decode_rgb(data, self.dataset.path(index))  # CMYK, PNG: finished here, on the CPU
            else:
                image, label = self.dataset[index]
        except CorruptImage as e:
            return torch.empty(0, dtype=torch.uint8), -1, None, (e.path, str(e))
        return self.transform(image, generator).contiguous(), label, None, None


def _collate(samples):
    good = [s for s in samples if s[3] is None]
    payload = [s[0] for s in good]
    if good and all(p.ndim == 3 for p in payload):  # transformed images of one size; encoded bytes stay a list
        payload = torch.stack(payload)
    labels = torch.tensor([s[1] for s in good], dtype=torch.int64)
    return payload, labels, [s[2] for s in good], [s[3] for s in samples if s[3] is not None]


class StreamingLoader:
    """The loader protocol (``len``, ``num_samples``, ``batches(epoch, start)``) over DataLoader workers."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        data_cfg,
        train: bool,
        mean,
        std,
        device: torch.device,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        memory_format=torch.contiguous_format,
    ):
        self.dataset, self.name = dataset, data_cfg.name
        self.device = torch.device(device)
        self.memory_format = memory_format
        self.skip_corrupt = data_cfg.skip_corrupt
        self.skipped: set[str] = set()
        preset = data_cfg.train_transform if train else data_cfg.eval_transform
        self.transform = sample_transform(preset, data_cfg, train)
        self.gpu_decode = bool(data_cfg.gpu_decode)
        if self.gpu_decode and (
            self.device.type != "cuda" or not hasattr(dataset, "encoded") or not hasattr(dataset, "path")
        ):
            warn(
                f"{self.name}: data.gpu_decode=true needs a CUDA device and an encoded-file dataset; "
                "decoding on the CPU workers instead"
            )
            self.gpu_decode = False
        self.order = EpochOrder(len(dataset), batch_size, seed, train, rank, world_size)
        self.sampler = _EpochBatches(self.order)
        self.num_workers = max(0, int(data_cfg.num_workers))
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=self.device).view(shape) * 255
        self.inv_std = 1 / (torch.tensor(std, device=self.device).view(shape) * 255)
        self._loader = None  # workers start on first use, then persist across epochs

    def __len__(self) -> int:
        return len(self.order)

    @property
    def num_samples(self) -> int:
        return self.order.num_samples

    def _data_loader(self) -> DataLoader:
        if self._loader is None:
            self._loader = DataLoader(
                _Samples(self.dataset, self.transform, encoded=self.gpu_decode),
                batch_sampler=self.sampler,
                num_workers=self.num_workers,
                collate_fn=_collate,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
            )
        return self._loader

    def close(self) -> None:
        """Stop the worker processes now (persistent workers otherwise live as long as the loader)."""
        if self._loader is not None and self._loader._iterator is not None:
            self._loader._iterator._shutdown_workers()
        self._loader = None

    def batches(self, epoch: int, start: int = 0):
        self.sampler.epoch, self.sampler.start = epoch, start
        for b, (payload, labels, plans, problems) in enumerate(self._data_loader(), start=start):
            if self.gpu_decode:
                payload, labels, more = self._decode_on_device(payload, labels, plans)
                problems = problems + more
            self._report(problems, b, len(labels))
            x = payload.to(self.device, non_blocking=True).to(torch.float32, memory_format=self.memory_format)
            x.sub_(self.mean).mul_(self.inv_std)
            yield x, labels.to(self.device, non_blocking=True)

    def _report(self, problems: list[tuple[str, str]], batch: int, remaining: int) -> None:
        if not problems:
            return
        if not self.skip_corrupt:
            raise UserError(f"{self.name}: {problems[0][1]}")
        for path, _ in problems:
            if path not in self.skipped:
                self.skipped.add(path)
                warn(f"{self.name}: skipping {path} (data.skip_corrupt=true; {len(self.skipped)} so far)")
        if remaining == 0:
            raise UserError(
                f"{self.name}: every image of batch {batch} is unreadable; check the files (first: {problems[0][0]})"
            )

    def _decode_on_device(self, payload, labels: torch.Tensor, plans: list):
        """The batch's JPEGs decoded by nvJPEG in one call, each plan applied on the GPU, the batch flipped at
        once; images the workers finished (CMYK, PNG) join it. The resize stays one call per image: the crops
        differ in size, and a padded canvas for one batched call would cost a copy per image as well."""
        if isinstance(payload, torch.Tensor):  # every image was finished by a worker
            return to_device(payload, self.device), labels, []
        jpegs = [i for i, p in enumerate(payload) if p.ndim == 1]
        decoded = dict(zip(jpegs, self._nvjpeg([payload[i] for i in jpegs], [plans[i][1] for i in jpegs])))
        out, flips, kept, problems = [], [], [], []
        for i, item in enumerate(payload):
            image = decoded.get(i)
            if isinstance(image, CorruptImage):
                problems.append((image.path, str(image)))
                continue
            if image is None:  # finished on the CPU by its worker, flip included
                out.append(to_device(item, self.device))
                flips.append(False)
            else:
                (box, flip), _ = plans[i]
                out.append(self.transform.apply(image, box))
                flips.append(flip)
            kept.append(i)
        if not out:
            return torch.empty(0, dtype=torch.uint8, device=self.device), labels[kept], problems
        return flip_where(torch.stack(out), torch.tensor(flips)), labels[kept], problems

    def _nvjpeg(self, encoded: list, paths: list) -> list:
        """nvJPEG decodes of ``encoded`` (RGB uint8 on the device); should the batched call fail, image by image,
        with the CPU decoder for the images nvJPEG refuses (a CorruptImage in place of one no decoder reads)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        if not encoded:
            return []
        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            pass
        images = []
        for data, path in zip(encoded, paths):
            try:
                images.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:
                try:
                    images.append(to_device(decode_rgb(data, path), self.device))
                except CorruptImage as e:
                    images.append(e)
        return images
