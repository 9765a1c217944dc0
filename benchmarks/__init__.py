"""Speed and memory measurements as ratios against reference implementations (not tests).

``python -m benchmarks`` (or ``make bench``) runs every ``benchmarks/bench_*.py`` module and writes
``docs/benchmarks.md`` and ``docs/benchmarks.json``. Each module exposes ``run(ctx) -> list[Row]``.
"""
