"""Artefacts for deployment, each loadable without effconv, and a runner per format to check them.

* ``onnx``: ONNX through the dynamo exporter (torch.export + onnxscript), run by ONNX Runtime;
* ``pt2``: the ``torch.export`` ExportedProgram (``torch.export.load(path).module()``), for PyTorch runtimes
  and further compilation;
* ``aoti``: an AOTInductor package (``torch._inductor.aoti_compile_and_package``): compiled C++ that
  ``torch._inductor.aoti_load_package`` (Python) or ``torch::inductor::AOTIModelPackageLoader`` (C++) runs.

Batch is dynamic unless a fixed batch is asked for; height and width are dynamic on request, for networks
whose graph allows it (DiCENet does not: ``check_dynamic_size``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from effconv.errors import UserError

FORMATS = ("onnx", "pt2", "aoti")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "aoti": "_aoti.pt2"}
RUNTIME_OF_FORMAT = {"onnx": "onnx", "pt2": "eager", "aoti": "inductor"}  # the inference path's target
PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "pt2": (), "aoti": ()}
DIM_NAMES = ("batch", None, "height", "width")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        from effconv.errors import unknown_choice

        raise unknown_choice("format", fmt, FORMATS)
    missing = [p for p in PACKAGES[fmt] if importlib.util.find_spec(p) is None]
    if missing:
        raise UserError(
            f"format={fmt} needs the package(s) {', '.join(missing)}: pip install {' '.join(missing)} "
            "(all are in requirements.txt)"
        )
    if fmt == "aoti" and not any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "g++", "clang++")):
        raise UserError("format=aoti compiles C++ and no compiler was found: install g++ (or set CXX)")


def check_dynamic_size(model: nn.Module, name: str) -> None:
    """DiCENet's DimConv weights are built for one resolution and other sizes are resampled with size-dependent
    ops: a graph with dynamic height/width cannot hold them."""
    from effconv.deploy.dice import DiceUnitInference
    from effconv.ops.dimconv import DimensionWiseConv

    if any(isinstance(m, (DimensionWiseConv, DiceUnitInference)) for m in model.modules()):
        raise UserError(
            f"{name} cannot be exported with dynamic height/width: DimConv's height- and width-wise weights are "
            "built for one resolution (other sizes are resampled by size-dependent ops); export once per "
            "deployment resolution with img_size=<n> and dynamic_hw=false"
        )


def _dynamic_shapes(dynamic_batch: bool, dynamic_hw: bool):
    dims = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim.DYNAMIC
    if dynamic_hw:
        dims[2] = dims[3] = torch.export.Dim.DYNAMIC
    return ({**dims},) if dims else None


def export_program(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, dynamic_hw: bool):
    """torch.export of ``model`` on ``example`` with the requested dynamic dimensions."""
    with torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes(dynamic_batch, dynamic_hw))


def write_artefact(program, fmt: str, path: Path, optimize: bool = True) -> dict:
    """Write ``program`` (an ExportedProgram) as ``fmt`` to ``path``; returns facts for export.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # written whole, then moved into place
    info: dict = {}
    if fmt == "onnx":
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            onnx_program = torch.onnx.export(
                program, dynamo=True, optimize=optimize, verbose=False, input_names=["images"], output_names=["logits"]
            )
        _name_dimensions(onnx_program.model)
        onnx_program.save(str(tmp))
        proto = onnx_program.model_proto
        info["opset"] = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        info["input_shape"] = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    elif fmt == "pt2":
        torch.export.save(program, str(tmp))
    else:
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
    os.replace(tmp, path)
    if "input_shape" not in info:
        info["input_shape"] = _program_shape(program)
    info["file_bytes"] = path.stat().st_size
    return info


def _name_dimensions(model) -> None:
    """Rename the exporter's symbols (s77, s53...) on the graph's input and output to batch / height / width."""
    import onnx_ir as ir

    names = {}
    for dim, name in zip(model.graph.inputs[0].shape, DIM_NAMES):
        if name and isinstance(dim, ir.SymbolicDim) and dim.value:
            names[dim.value] = name
    for value in [*model.graph.inputs, *model.graph.outputs]:
        renamed = [
            ir.SymbolicDim(names.get(d.value, d.value)) if isinstance(d, ir.SymbolicDim) else d for d in value.shape
        ]
        value.shape = ir.Shape(renamed)


def _program_shape(program) -> list:
    placeholder = [n for n in program.graph.nodes if n.op == "placeholder"][-1]
    return [int(s) if isinstance(s, int) else name for s, name in zip(placeholder.meta["val"].shape, DIM_NAMES)]


def load_runner(path: Path, fmt: str, threads: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function running the artefact at ``path`` on a float32 CPU batch (NCHW), returning logits."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: x.contiguous().numpy()})[0])

        return run_onnx
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
        return lambda x: module(x.contiguous())
    runner = torch._inductor.aoti_load_package(str(path))
    return lambda x: runner(x.contiguous())
