"""Speed and memory measurements as ratios against reference implementations (not tests).

``python -m benchmarks`` (or ``make bench``) runs every ``benchmarks/bench_*.py`` module and writes
``docs/benchmarks.md`` and ``docs/benchmarks.json``. Each module exposes ``run(ctx) -> list[Row]``.
"""

import os

# idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads stall each other. Set
# before torch is imported (python -m benchmarks imports this package first).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
