"""Evaluation: top-1 / top-5 / loss over a loader, exact under DDP (counts are summed, not averaged)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from effconv.engine.runtime import Runtime, all_reduce_sum


@torch.no_grad()
def evaluate(model: nn.Module, loader, runtime: Runtime, limit_batches: int | None = None) -> dict:
    """Accuracy in percent (as timm's ``accuracy``) and mean cross-entropy over the whole split."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)  # loss, top1, top5
    count = 0  # known on the host: no tensor per batch to copy to the device
    for i, (images, labels) in enumerate(loader.batches(epoch=0)):
        if limit_batches is not None and i >= limit_batches:
            break
        with runtime.autocast():
            logits = model(images)
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(labels[:, None])
        sums += torch.stack(
            [
                F.cross_entropy(logits, labels, reduction="sum").double(),
                hits[:, :1].sum().double(),
                hits.sum().double(),
            ]
        )
        count += len(labels)
    model.train(was_training)
    totals = torch.cat([sums, torch.tensor([float(count)], dtype=torch.float64, device=runtime.device)])
    loss, top1, top5, count = all_reduce_sum(totals, runtime).tolist()
    count = max(count, 1.0)
    return {"loss": loss / count, "top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count}
