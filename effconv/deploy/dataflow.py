"""Who produced each tensor of one forward pass, and who read its values: what a rewrite must know before it
changes a layer's output.

Folding a BatchNorm into the convolution before it changes what that convolution returns, so it is only
correct when nothing but the BatchNorm reads the convolution's output; the same holds for a channel
permutation folded into the layer that produces it. Module structure does not say this (a block's forward may
read any tensor it likes), so ``trace_dataflow`` runs the model once and records, with a wrapper around every
module's forward and a ``TorchFunctionMode``, which module returned each tensor and inside which module every
torch call read it.
Reads of metadata (shape, dtype, device) do not count: a rewrite that keeps shapes cannot change them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# torch calls that look at a tensor without reading its values
_METADATA_PROPERTIES = {"shape", "ndim", "dtype", "device", "is_cuda", "layout", "requires_grad", "is_sparse"}
_METADATA_METHODS = {"dim", "size", "numel", "is_contiguous", "is_floating_point", "element_size", "stride"}


@dataclass
class Dataflow:
    """One forward pass: producers and readers by tensor, and how often each module ran."""

    producer: dict[int, nn.Module] = field(default_factory=dict)  # id(tensor) -> innermost module returning it
    readers: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))  # id(tensor) -> id(module)
    calls: Counter = field(default_factory=Counter)  # id(module) -> forward calls
    first_input: dict[int, torch.Tensor] = field(default_factory=dict)  # id(module) -> its first tensor input
    output: dict[int, torch.Tensor] = field(default_factory=dict)  # id(module) -> its tensor output
    _alive: list = field(default_factory=list)  # keeps every seen tensor alive, so no id() is reused

    def ran_once(self, *modules: nn.Module) -> bool:
        return all(self.calls[id(m)] == 1 for m in modules)

    def only_reader(self, tensor: torch.Tensor, module: nn.Module, producer: nn.Module | None = None) -> bool:
        """True when every value read of ``tensor`` happened inside ``module`` (or its children), apart from
        reads inside its ``producer`` while making it (in-place updates)."""
        allowed = self._subtree(module) | (self._subtree(producer) if producer is not None else set())
        return self.readers.get(id(tensor), set()) <= allowed

    def feeds(self, producer: nn.Module, consumer: nn.Module) -> bool:
        """``consumer`` takes ``producer``'s output as its input, and nothing else reads that output."""
        out = self.output.get(id(producer))
        return (
            out is not None
            and self.ran_once(producer, consumer)
            and self.first_input.get(id(consumer)) is out
            and self.producer.get(id(out)) is producer
            and self.only_reader(out, consumer, producer)
        )

    def reads_only_inside(self, module: nn.Module) -> bool:
        """True when ``module``'s own parameters and buffers were read by no module but itself (a weight
        borrowed by another module's forward would otherwise change under it)."""
        own = {id(module)}
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        return all(self.readers.get(id(t), set()) <= own for t in tensors)

    def _subtree(self, module: nn.Module) -> set[int]:
        return {id(m) for m in module.modules()}


class _ReadRecorder(TorchFunctionMode):
    def __init__(self, flow: Dataflow, stack: list[nn.Module]):
        super().__init__()
        self.flow, self.stack = flow, stack

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not _is_metadata(func):
            reader = id(self.stack[-1]) if self.stack else 0
            for t in _tensors((args, kwargs)):
                self.flow.readers[id(t)].add(reader)
                self.flow._alive.append(t)
        return func(*args, **kwargs)


def _is_metadata(func) -> bool:
    name = getattr(func, "__name__", "")
    if name == "__get__":
        return getattr(getattr(func, "__self__", None), "__name__", "") in _METADATA_PROPERTIES
    return name in _METADATA_METHODS


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


@torch.no_grad()
def trace_dataflow(model: nn.Module, sample: torch.Tensor) -> Dataflow:
    """Run ``model(sample)`` once (eval mode expected) and record its dataflow.

    Every module's ``forward`` is wrapped for the call instead of given hooks: some modules choose their
    computation by whether hooks are present (the DiCE unit does, for the MAdds counter), and the trace must
    see the path the model really takes."""
    flow, stack, wrapped = Dataflow(), [], []

    def wrap(module: nn.Module) -> None:
        inner = module.forward

        def forward(*args, **kwargs):
            flow.calls[id(module)] += 1
            first = next(_tensors((args, kwargs)), None)
            if first is not None:
                flow.first_input.setdefault(id(module), first)
                flow._alive.append(first)
            stack.append(module)
            try:
                output = inner(*args, **kwargs)
            finally:
                stack.pop()
            if isinstance(output, torch.Tensor):
                flow.output.setdefault(id(module), output)
                flow.producer.setdefault(id(output), module)  # inner modules return first: innermost wins
                flow._alive.append(output)
            return output

        wrapped.append((module, "forward" in module.__dict__, inner))
        module.forward = forward

    for module in model.modules():
        wrap(module)
    try:
        with _ReadRecorder(flow, stack):
            model(sample)
    finally:
        for module, had_own, inner in wrapped:
            if had_own:
                module.forward = inner
            else:
                del module.forward
    return flow


def replace_module(root: nn.Module, target: nn.Module, replacement: nn.Module) -> None:
    """Put ``replacement`` wherever ``target`` is registered under ``root`` (by identity)."""
    found = False
    for parent in root.modules():
        for name, child in list(parent.named_children()):
            if child is target:  # setattr registers the child under the same key (Sequential, ModuleList too)
                setattr(parent, name, replacement)
                found = True
    if not found:
        raise ValueError(f"{type(target).__name__} is not a submodule of {type(root).__name__}")
