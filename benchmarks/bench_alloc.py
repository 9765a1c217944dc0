"""The memory allocator: glibc malloc as is, glibc told to keep freed memory, jemalloc with page retention.

An allocator is chosen when a process starts, so each variant runs the same workload in its own process
(``python -m benchmarks.alloc_workload``): bare train steps of dicenet_100 (224 px, batch 4: PReLU and BN over
3C-channel maps, many large temporaries) and resnet20_cifar (32 px, batch 32). The variants alternate
process by process for ``rounds`` rounds and the median per variant counts; ratios are variant / glibc, so
they compare medians of separate processes (the one exception to "one process" in this suite).

* ``glibc``: the default (large blocks come from mmap and are returned on free: page faults every step);
* ``glibc, retain``: ``MALLOC_MMAP_THRESHOLD_`` at its 32 MiB maximum and ``MALLOC_TRIM_THRESHOLD_`` at 64 GiB:
  blocks up to 32 MiB come from the heap and freed memory is not returned (no library needed);
* ``jemalloc, retain``: ``LD_PRELOAD`` of libjemalloc.so.2 with ``dirty_decay_ms:-1,muzzy_decay_ms:-1``
  (performance-notes §6.0), when the library is installed (Debian: ``apt-get install libjemalloc2``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Context, Row

GROUP = "memory allocator (train step, separate processes)"
JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2")
JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:-1,muzzy_decay_ms:-1"
WORKLOADS = ("dicenet_100", "resnet20_cifar")


def jemalloc() -> str | None:
    return next((p for p in JEMALLOC_PATHS if Path(p).exists()), None)


def variants() -> dict[str, dict]:
    """Variant name -> the environment its process gets."""
    out = {
        "glibc": {},
        "glibc, retain": {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 30)},
    }
    lib = jemalloc()
    if lib:
        out["jemalloc, retain"] = {"LD_PRELOAD": lib, "MALLOC_CONF": JEMALLOC_CONF}
    return out


def _run(variant: dict, ctx: Context) -> dict[str, float]:
    env = {**os.environ, **variant}
    cmd = [sys.executable, "-m", "benchmarks.alloc_workload"]
    if ctx.quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> list[Row]:
    runs = variants()
    results: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(2):
        for name, variant in runs.items():
            results[name].append(_run(variant, ctx))
    median = {name: {w: statistics.median(r[w] for r in rs) for w in WORKLOADS} for name, rs in results.items()}
    rows = []
    for workload in WORKLOADS:
        base = median["glibc"][workload]
        for name in runs:
            if name == "glibc":
                continue
            rows.append(
                Row(
                    GROUP,
                    f"{workload}: {name}",
                    median[name][workload] * 1e3,
                    "ms/step",
                    reference="glibc malloc as configured by default",
                    ratio=base / median[name][workload],
                    ratio_meaning="speed-up (glibc time / this allocator's time)",
                    note=f"glibc {base * 1e3:.1f} ms/step",
                )
            )
    if not jemalloc():
        rows.append(
            Row(
                GROUP,
                "jemalloc, retain",
                None,
                "",
                note="libjemalloc.so.2 not installed (Debian: apt-get install libjemalloc2); not a Python "
                "requirement, so the suite measures it only where present",
            )
        )
    return rows
