"""The ImageNet streaming loader: deterministic, resumable mid-epoch, sharded, independent of the workers."""

from __future__ import annotations

import pytest
import torch

from effconv.data import build, read_split
from effconv.data.streaming import StreamingLoader
from effconv.data.transforms import sample_transform
from tests.data_formats import write
from tests.data_helpers import data_cfg


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    written = write("imagenet", tmp_path_factory.mktemp("stream"), per_class=5, eval_per_class=3, classes=4)
    cfg = data_cfg("imagenet", written.root, num_classes=4, img_size=40, eval_size=32, num_workers=0)
    return written, cfg, read_split(cfg, "train")


def loader(cfg, dataset, train=True, rank=0, world_size=1, batch_size=6):
    return StreamingLoader(
        dataset,
        batch_size,
        cfg,
        train=train,
        mean=cfg.mean,
        std=cfg.std,
        device=torch.device("cpu"),
        seed=7,
        rank=rank,
        world_size=world_size,
    )


def run(stream, epoch=0, start=0):
    return [(x.clone(), y.clone()) for x, y in stream.batches(epoch, start)]


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def test_batches_are_normalised_float_and_a_function_of_seed_and_epoch(imagenet):
    _, cfg, dataset = imagenet
    first = run(loader(cfg, dataset))
    assert len(first) == 3 and loader(cfg, dataset).num_samples == 18  # 20 images, drop_last at batch 6
    x, y = first[0]
    assert x.dtype == torch.float32 and x.shape == (6, 3, 40, 40) and y.dtype == torch.int64
    assert -3 < float(x.mean()) < 3 and float(x.std()) > 0.3  # normalised, not 0..255
    assert same(first, run(loader(cfg, dataset)))
    assert not same(first, run(loader(cfg, dataset), epoch=1))


def test_resume_at_a_batch_gives_the_rest_of_the_epoch(imagenet):
    _, cfg, dataset = imagenet
    full = run(loader(cfg, dataset), epoch=2)
    assert same(full[1:], run(loader(cfg, dataset), epoch=2, start=1))


def test_ranks_see_disjoint_shards_of_the_same_permutation(imagenet):
    _, cfg, dataset = imagenet
    order = [loader(cfg, dataset, rank=r, world_size=2, batch_size=5).order.indices(0) for r in (0, 1)]
    assert len(set(order[0].tolist()) & set(order[1].tolist())) == 0 and len(order[0]) == 10
    labels = [torch.cat([y for _, y in run(loader(cfg, dataset, rank=r, world_size=2, batch_size=5))]) for r in (0, 1)]
    assert labels[0].tolist() == dataset.labels[order[0]].tolist()
    assert labels[1].tolist() == dataset.labels[order[1]].tolist()


def test_workers_do_not_change_the_batches(imagenet):
    _, cfg, dataset = imagenet
    in_process = run(loader(cfg, dataset), epoch=1)
    cfg2 = cfg.copy()
    cfg2.num_workers = 2
    with_workers = loader(cfg2, dataset)
    try:
        assert same(in_process, run(with_workers, epoch=1))
        assert same(in_process[2:], run(with_workers, epoch=1, start=2))  # persistent workers, next pass
    finally:
        with_workers.close()


def test_each_image_is_the_per_image_preset_of_its_own_stream(imagenet):
    _, cfg, dataset = imagenet
    stream = loader(cfg, dataset)
    x, y = next(stream.batches(0))
    index = stream.order.indices(0)[0].item()
    from effconv.data.memory import derive_seed

    image, label = dataset[index]
    expected = sample_transform("imagenet_train", cfg, True)(
        image, torch.Generator().manual_seed(derive_seed(7, 0, 0, 0))
    )
    mean, std = torch.tensor(cfg.mean).view(3, 1, 1), torch.tensor(cfg.std).view(3, 1, 1)
    assert label == y[0].item()
    assert torch.allclose(x[0] * std * 255 + mean * 255, expected.float(), atol=1e-3)


def test_eval_loader_covers_val_in_order_through_build(imagenet):
    written, cfg, _ = imagenet
    loaders = build(cfg, 6, 5, torch.device("cpu"), seed=0)
    assert loaders.classes == sorted(loaders.classes) and len(loaders.classes) == 4
    batches = run(loaders.eval)
    assert [len(y) for _, y in batches] == [5, 5, 2] and batches[0][0].shape[-1] == 32
    assert torch.cat([y for _, y in batches]).tolist() == written.labels["val"].tolist()
