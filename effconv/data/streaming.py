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

``data.gpu_decode=true`` on a CUDA device moves JPEG decoding to the GPU: workers only read the bytes and the
main process decodes the batch with ``torchvision.io.decode_jpeg(device='cuda')`` (nvJPEG), then crops and
resizes each image there. Images nvJPEG refuses (CMYK, PNG inside .JPEG) fall back to the CPU decoder.

Unreadable images: with ``data.skip_corrupt=false`` the first one stops the run with a line naming the file;
with ``true`` it is dropped from its batch (the batch is one image shorter), warned about once per file and
counted in ``loader.skipped``.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from effconv.data.files import CorruptImage, decode_rgb, warn
from effconv.data.memory import EpochOrder, derive_seed
from effconv.data.transforms import sample_transform
from effconv.errors import UserError


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

    Returns (payload, label, stream, problem): payload is the transformed uint8 image, or the encoded bytes
    when decoding happens on the GPU; problem is None or (path, message) of an unreadable image.
    """

    def __init__(self, dataset, transform, encoded: bool):
        self.dataset, self.transform, self.encoded = dataset, transform, encoded

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, stream = key
        try:
            if self.encoded:
                data, label = self.dataset.encoded(index)
                return data, label, (stream, self.dataset.path(index)), None
            image, label = self.dataset[index]
        except CorruptImage as e:
            return torch.empty(0, dtype=torch.uint8), -1, stream, (e.path, str(e))
        generator = torch.Generator().manual_seed(derive_seed(*stream))
        return self.transform(image, generator).contiguous(), label, stream, None


def _collate(samples):
    good = [s for s in samples if s[3] is None]
    payload = [s[0] for s in good]
    if good and payload[0].ndim == 3:  # decoded images of one size; encoded bytes stay a list
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
        for b, (payload, labels, streams, problems) in enumerate(self._data_loader(), start=start):
            if self.gpu_decode:
                payload, labels, more = self._decode_on_device(payload, labels, streams)
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

    def _decode_on_device(self, encoded: list, labels: torch.Tensor, streams: list):
        """nvJPEG decode of the whole batch on the GPU, the per-image preset there; CPU fallback per image."""
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:  # one image nvJPEG cannot take spoils the batch call: go image by image
            images = [None] * len(encoded)
        out, kept, problems = [], [], []
        for i, (image, (stream, path)) in enumerate(zip(images, streams)):
            if image is None:
                try:
                    image = decode_rgb(encoded[i], path).to(self.device)
                except CorruptImage as e:
                    problems.append((e.path, str(e)))
                    continue
            generator = torch.Generator().manual_seed(derive_seed(*stream))
            out.append(self.transform(image, generator))
            kept.append(i)
        images = torch.stack(out) if out else torch.empty(0, dtype=torch.uint8, device=self.device)
        return images, labels[kept], problems
