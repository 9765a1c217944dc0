"""Where and how a run executes: device, precision, seeding, determinism, and the distributed environment.

Distributed runs are launched by an existing launcher, never by us:

* ``torchrun`` (single or multi node): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT are set by torchrun;
* a submitit job with several tasks (``hydra/launcher=submitit_slurm`` or ``submitit_local`` with
  ``tasks_per_node>1``, one task per GPU): submitit's ``TorchDistributedEnvironment`` exports the same
  variables from SLURM's (or the local executor's) task ids, with the first node as the master.

NCCL on GPUs, gloo on CPU. Host-side control messages (stop flags, RNG states for checkpoints) go through a
gloo group, so they never synchronise a GPU.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import io
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from timm.utils import random_seed
from torch.nn.parallel import DistributedDataParallel

from effconv.errors import UserError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None
    memory_format: torch.memory_format = torch.contiguous_format
    control_group: object = None  # gloo group for host-side messages (None: the default group)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_primary(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank): torchrun's variables, else those of a multi-task submitit job."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    if os.environ.get("SUBMITIT_EXECUTOR"):
        import submitit

        job = submitit.JobEnvironment()
        if job.num_tasks > 1:
            # MASTER_ADDR = first host of the job, MASTER_PORT derived from the job id (same on every task)
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            return job.global_rank, job.num_tasks, job.local_rank
    return 0, 1, 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but no CUDA GPU is visible; use device=cpu or device=auto")
        if device.index is None:  # one GPU per process; a scheduler may already show each task only its own
            device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` (a GPU) computes in bf16 natively: compute capability 8.0 on (Ampere), or ROCm.

    Not ``torch.cuda.is_bf16_supported()``: it counts emulation by default (a V100 or T4 "supports" bf16 at
    a fraction of fp32's speed) and asks about the current device, which need not be the run's."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":  # without native bf16, fp32: fp16 (amp=fp16) is faster there but needs loss scaling
        return torch.bfloat16 if device.type == "cuda" and native_bf16(device) else None
    if amp == "fp16" and device.type != "cuda":
        raise UserError("amp=fp16 needs a CUDA device (loss scaling); use amp=bf16 or amp=none on CPU")
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def cpu_threads(requested: int | None) -> int | None:
    """Intra-op threads for this process, or None to keep torch's choice (one per physical core).

    Several processes sharing the cores each with a full thread team spin against one another: a 2-job local
    sweep on 2 cores ran its first epoch 80x slower than alone. So, like torchrun (which exports
    OMP_NUM_THREADS=1 for several workers), a job of the local submitit executor, whose jobs all run at once,
    gets one thread, and a SLURM task gets the CPUs SLURM gave it. An explicit ``threads=N`` wins."""
    if requested is not None:
        return requested
    if "OMP_NUM_THREADS" in os.environ:  # torchrun's or the user's; torch already follows it
        return None
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    if os.environ.get("SUBMITIT_EXECUTOR") == "local":
        return 1
    return None


def setup(
    device: str = "auto",
    amp: str = "auto",
    seed: int = 0,
    deterministic: bool = False,
    channels_last: bool = True,
    threads: int | None = None,
) -> Runtime:
    chosen = cpu_threads(threads)
    if chosen is not None:
        torch.set_num_threads(chosen)
    rank, world_size, local_rank = distributed_env()
    dev = resolve_device(device, local_rank)
    control_group = None
    if dev.type == "cuda":  # one GPU per process, also alone on cuda:N: the current device for every CUDA call
        torch.cuda.set_device(dev)
    if world_size > 1:
        if not dist.is_initialized():
            _warn_on_shared_store_restart(rank)
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            atexit.register(_destroy_process_group)
        if dist.get_backend() != "gloo":
            control_group = dist.new_group(backend="gloo")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    random_seed(seed, rank)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return Runtime(dev, rank, local_rank, world_size, resolve_amp(amp, dev), memory_format, control_group)


def _destroy_process_group() -> None:
    """At exit, not after each run: NCCL asks for it (it warns, and may lose pending work, otherwise), and a
    group created again in the same process would meet the old group's keys in torchrun's shared store."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _warn_on_shared_store_restart(rank: int) -> None:
    """torchrun's elastic restart (``--max-restarts``) reuses the rendezvous store of the failed attempt, whose
    keys still hold the dead workers' addresses: the new process group waits for them until it times out
    (pytorch/pytorch#135712, #167288). TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 on torchrun avoids it."""
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if restarted and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and rank == 0:
        print(
            "note: restarted by torchrun with a shared rendezvous store; if the process group does not form, "
            "run torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (pytorch/pytorch#135712)",
            flush=True,
        )


def all_reduce_sum(values: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier(group=runtime.control_group)


def gather_to_primary(obj, runtime: Runtime) -> list | None:
    """Every rank's ``obj`` (plain data and tensors), in rank order, on rank 0 (None elsewhere); ``[obj]`` in a
    single process. Sent as ``torch.save`` bytes: tensors pickled by ``gather_object`` itself do not unpickle."""
    if not runtime.distributed:
        return [obj]
    payload = io.BytesIO()
    torch.save(obj, payload)
    gathered = [None] * runtime.world_size if runtime.is_primary else None
    dist.gather_object(payload.getvalue(), gathered, dst=0, group=runtime.control_group)
    if gathered is None:
        return None
    return [torch.load(io.BytesIO(data), weights_only=True) for data in gathered]


def average_bn_statistics(model: torch.nn.Module, runtime: Runtime) -> None:
    """Average BatchNorm running means/variances over ranks in one all-reduce (timm's ``distribute_bn`` with
    ``reduce=True``, coalesced: it issues one all-reduce per buffer, too many to do after every update)."""
    if not runtime.distributed:
        return
    buffers = [
        b
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        for b in (m.running_mean, m.running_var)
        if b is not None
    ]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).float() for b in buffers])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= runtime.world_size
    parts = [part.view_as(b) for b, part in zip(buffers, flat.split([b.numel() for b in buffers]))]
    torch._foreach_copy_(buffers, parts)  # one launch for all buffers, not one copy kernel per buffer


# DDP keyword that stops the broadcast of buffers before every forward (renamed in recent torch)
_NO_FORWARD_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def wrap_ddp(module: torch.nn.Module, runtime: Runtime) -> DistributedDataParallel:
    """DDP around ``module``: rank 0's parameters and buffers are copied into every rank here; afterwards the
    loop keeps buffers equal by averaging BN statistics at each update, not by a broadcast before every
    forward."""
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, **_NO_FORWARD_BUFFER_SYNC)


class Agreement:
    """Decisions every rank must take at the same optimizer update (stop on a signal, write a checkpoint).

    Each update, every rank posts its values (non-negative ints: a signal number, a flag); the decision is
    their maximum over ranks. Single process: the values count at once. Distributed: they go out in a
    non-blocking all-reduce on the gloo group and the loop acts on the result posted one update earlier, so a
    signal that reaches the ranks at different instants still stops them all at the same update, and no rank
    waits for another to decide.
    """

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.pending = None
        self.posted = None

    def poll(self, *values: int) -> tuple[int, ...]:
        if not self.runtime.distributed:
            return values
        agreed = (0,) * len(values)
        if self.pending is not None:
            self.pending.wait()
            agreed = tuple(int(v) for v in self.posted.tolist())
        self.posted = torch.tensor([int(v) for v in values], dtype=torch.int64)
        self.pending = dist.all_reduce(
            self.posted, op=dist.ReduceOp.MAX, group=self.runtime.control_group, async_op=True
        )
        return agreed

    def close(self) -> None:
        if self.pending is not None:
            self.pending.wait()
            self.pending = None
