"""The in-memory fast path: deterministic, resumable, DDP-sharded; batched crops equal per-image crops."""

import torch

from effconv.data import build
from effconv.data.memory import InMemoryLoader
from effconv.data.transforms import crop_flip
from tests.conftest import compose


def loader(train=True, rank=0, world=1, n=50, batch=8, seed=0, transform=lambda x, g: x):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    return InMemoryLoader(
        images, torch.arange(n), batch, transform, [0, 0, 0], [1 / 255] * 3, "cpu", seed, train, rank, world
    )


def labels(l, epoch, start=0):
    return [y.tolist() for _, y in l.batches(epoch, start)]


def test_order_is_a_function_of_seed_and_epoch():
    a, b = loader(), loader()
    assert labels(a, 0) == labels(b, 0)
    assert labels(a, 0) != labels(a, 1)
    assert labels(loader(seed=1), 0) != labels(a, 0)
    assert len(a) == 50 // 8 and a.num_samples == 48  # drop_last: every update sees a full batch


def test_resume_mid_epoch_gives_the_remaining_batches():
    full = labels(loader(), 3)
    assert labels(loader(), 3, start=4) == full[4:]


def test_normalisation_and_label_alignment():
    x, y = next(loader(train=False).batches(0))
    # mean 0, std 1/255: pixel value v -> v, and image i holds value i
    assert torch.equal(x[:, 0, 0, 0], y.float())
    assert x.dtype == torch.float32


def test_ddp_shards_cover_the_epoch():
    shards = [sum(labels(loader(rank=r, world=3, batch=4), 0), []) for r in range(3)]
    assert all(len(s) == len(shards[0]) for s in shards)
    assert not set(shards[0]) & set(shards[1])
    evaluation = [sum(labels(loader(train=False, rank=r, world=3, batch=4), 0), []) for r in range(3)]
    assert sorted(sum(evaluation, [])) == list(range(50))  # exact partition, no padding


def test_batched_crop_flip_equals_per_image_reference():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    top, left = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    flip = torch.tensor([True, False, True, False, False, True])
    out = crop_flip(images, top, left, flip, (8, 8), padding=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(6):
        ref = padded[i, :, top[i] : top[i] + 8, left[i] : left[i] + 8]
        assert torch.equal(out[i], ref.flip(2) if flip[i] else ref)


def test_digits_split_and_presets():
    cfg = compose()
    loaders = build(cfg.data, 64, 128, torch.device("cpu"), seed=0)
    assert loaders.train.num_samples == 1437 // 64 * 64 and loaders.eval.num_samples == 360
    x, y = next(loaders.train.batches(0))
    assert x.shape == (64, 3, 32, 32) and y.max() < 10
    counts = torch.bincount(torch.cat([y for _, y in loaders.eval.batches(0)]), minlength=10)
    assert counts.min() >= 35 and counts.sum() == 360  # stratified: 36 per class (+-1)


def test_channels_last_batches_equal_nchw_batches():
    """The channels_last path (NHWC selection, row-wise normalisation) gives the NCHW path's numbers exactly."""
    from effconv.data.transforms import batch_transform
    from tests.data_helpers import data_cfg

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 12, 10), dtype=torch.uint8, generator=gen)
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    for preset in ("none", "flip", "pad_crop_flip"):
        transform = batch_transform(preset, data_cfg("cifar10"), True)
        made = {
            fmt: InMemoryLoader(images, torch.arange(20), 8, transform, mean, std, "cpu", 3, True, memory_format=fmt)
            for fmt in (torch.contiguous_format, torch.channels_last)
        }
        batches = {fmt: list(loader.batches(1)) for fmt, loader in made.items()}
        for (x, y), (x_cl, y_cl) in zip(batches[torch.contiguous_format], batches[torch.channels_last]):
            assert x_cl.is_contiguous(memory_format=torch.channels_last) and x_cl.dtype == torch.float32
            assert torch.equal(x, x_cl) and torch.equal(y, y_cl), preset
