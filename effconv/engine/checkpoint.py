"""Checkpoints: atomic writes, validated loads, resume discovery, weight initialisation from another run.

A checkpoint is plain data (tensors, numbers, strings, lists, dicts), loadable with ``weights_only=True``.
Its keys follow timm's (``state_dict``, ``state_dict_ema``, ``optimizer``, ``amp_scaler``, ``epoch``,
``arch``), so ``timm.models.load_checkpoint(model, path, use_ema=True)`` reads our files, plus ``batch``
(batches of ``epoch`` already done), ``global_step``, ``progress`` (epoch loss sums, best/last metrics),
``rng`` (rank 0's RNG states), ``ranks`` (under DDP: every rank's RNG states and epoch loss sums),
``world_size``, ``updates_per_epoch`` and ``config``.

Writes go to a temporary file that is flushed, fsync'ed and ``os.replace``d over the target; the previous
``last.pt`` is hard-linked to ``last.prev.pt`` first, so a crash at any instant leaves a loadable ``last.pt``
(and a crash while the new one is written leaves the old one in place). Resume reads ``last.pt``; if that
cannot be read it takes the newest of ``last.prev.pt`` and ``best.pt`` that can, and says so.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from effconv.errors import UserError

LAST, PREVIOUS, BEST = "last.pt", "last.prev.pt", "best.pt"


def save_atomic(state: dict, path: Path, keep_previous: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"could not write checkpoint {path}: {e.strerror or e}; the previous checkpoint is intact "
            "(free disk space, then run the same command to resume)"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if keep_previous and path.exists():
        _keep_as_previous(path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _keep_as_previous(path: Path) -> None:
    previous = path.with_name(PREVIOUS)
    link = previous.with_name(PREVIOUS + ".tmp")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, previous)
    except OSError:  # no hard links here: move it (last.pt is then briefly absent; resume takes last.prev.pt)
        os.replace(path, previous)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: Path) -> dict:
    """Load a checkpoint on the CPU; a missing, truncated or foreign file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle of foreign objects, ...
        raise UserError(f"checkpoint {path} is unreadable ({type(e).__name__}); it is truncated or not ours") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise UserError(f"checkpoint {path} holds no 'state_dict'; it is not a model checkpoint")
    return state


def find_resumable(checkpoint_dir: Path, log=print) -> tuple[Path, dict] | None:
    """The checkpoint a run resumes from: ``last.pt``; if it cannot be read, whichever of ``last.prev.pt`` and
    ``best.pt`` loads and holds the most updates (saying so). None when the run has no checkpoint yet; a
    UserError when it has some and none loads: a run never silently starts over on top of its own files."""
    directory = Path(checkpoint_dir)
    candidates = [directory / name for name in (LAST, PREVIOUS, BEST) if (directory / name).exists()]
    found, problems = [], []
    for path in candidates:
        try:
            state = load(path)
        except UserError as e:
            problems.append(str(e))
            log(f"warning: {e}; looking for an older checkpoint")
            continue
        if path.name == LAST:
            return path, state
        found.append((state.get("global_step", 0), path, state))
    if not candidates:
        return None
    if not found:
        raise UserError(
            f"no checkpoint in {directory} can be loaded ({'; '.join(problems)}): move that run directory "
            "away, or pass resume=never to start the run over"
        )
    step, path, state = max(found, key=lambda item: item[0])  # equal steps: last.prev.pt, listed first
    log(f"resuming from {path}, the newest checkpoint that loads (update {step})")
    return path, state


def rng_state(device: torch.device | None = None) -> dict:
    """This process's RNG states: CPU torch, numpy, python, and the CUDA generator of its own GPU (``device``)
    only. Not every visible GPU's: those belong to other ranks, and the same rank may see another set of GPUs
    when it resumes (torchrun's node-wide view, then one GPU per SLURM task). A CPU run never touches CUDA."""
    np_state = np.random.get_state()
    own_gpu = device is not None and device.type == "cuda"
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if own_gpu else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *map(float, np_state[2:])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore ``rng_state``'s states; the CUDA one goes to this process's GPU, whatever its index now.
    Checkpoints written before hold every visible GPU's state: the entry of the GPU with ``device``'s index."""
    torch.set_rng_state(state["torch"])
    saved = state["cuda"]
    if device is not None and device.type == "cuda" and saved:
        index = 0 if len(saved) == 1 else device.index
        if index is not None and index < len(saved):
            torch.cuda.set_rng_state(saved[index], device)
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), int(pos), int(has_gauss), gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def checkpoint_of(source: str | Path) -> Path:
    """A checkpoint file, or a run directory (its best.pt, else last.pt)."""
    source = Path(source)
    if source.is_dir():
        for name in (BEST, LAST):
            if (source / "checkpoints" / name).is_file():
                return source / "checkpoints" / name
        raise UserError(f"{source} holds no checkpoints/{BEST} or checkpoints/{LAST}; is it a run directory?")
    return source


def init_weights_from(model: nn.Module, source: str | Path, use_ema: bool = True, log=print) -> None:
    """Fine-tuning start: another run's weights, or a checkpoint in a layout ``effconv.models.formats`` converts
    (the papers' authors' releases); a classifier of another class count starts from the model's initialisation."""
    from effconv.models import formats

    path = checkpoint_of(source)
    weights = formats.read(path)
    chosen = weights.default if use_ema else weights.raw
    converted = formats.convert(chosen, model, f"model.init_from={source}")
    model.load_state_dict(converted.state_dict)
    classifier = formats.classifier_prefixes(model)
    new_head = [m for m in converted.kept if f"{m}.".startswith(classifier)]
    untrained = [m for m in converted.kept if m not in new_head]
    origin = "" if converted.layout == "effconv" else f", {converted.layout} layout"
    log(
        f"initialised from {path} ({'EMA' if chosen is weights.ema else 'raw'} weights{origin})"
        + (f"; new classifier: {', '.join(new_head)}" if new_head else "")
        + (f"; not in the file, left to train: {', '.join(untrained)}" if untrained else "")
    )
