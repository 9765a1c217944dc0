"""``train.py`` as a user runs it, plus the test-only models and one injected fault (tests/robustness only).

``EFFCONV_FAULT=<kind>@<update>`` injects, in this process, right after optimizer update ``<update>``:

* ``kill``: SIGKILL (nothing after it runs: no handler, no ``finally``, files as they are);
* ``kill_in_save``: SIGKILL half-way through writing the checkpoint of that update (a partial ``.tmp`` stays);
* ``term`` / ``usr1``: SIGTERM / SIGUSR1 to itself (the loop's handler writes a checkpoint and exits 143).

``EFFCONV_FAULT_RANK`` limits the fault to one rank under torchrun, and only the first attempt faults
(``TORCHELASTIC_RESTART_COUNT``), so an elastic restart runs clean.
"""

from __future__ import annotations

import io
import os
import runpy
import signal
import sys
from pathlib import Path

import torch

import tests.helper_models  # noqa: F401  (registers test_tiny_mlp)
from effconv.engine.loop import Trainer

REPO = Path(__file__).resolve().parents[2]
SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "usr1": signal.SIGUSR1}


def inject(kind: str, update: int) -> None:
    if kind == "kill_in_save":
        save = torch.save

        def save_half_then_die(state, f, *args, **kwargs):
            if isinstance(state, dict) and state.get("global_step") == update:
                buffer = io.BytesIO()
                save(state, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            return save(state, f, *args, **kwargs)

        torch.save = save_half_then_die
        return
    step = Trainer._after_update

    def step_then_fault(self):
        step(self)
        if self.state.global_step == update:
            os.kill(os.getpid(), SIGNALS[kind])

    Trainer._after_update = step_then_fault


if __name__ == "__main__":
    fault = os.environ.get("EFFCONV_FAULT")
    rank_ok = os.environ.get("EFFCONV_FAULT_RANK") in (None, os.environ.get("RANK", "0"))
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if fault and rank_ok and first_attempt:
        kind, _, update = fault.partition("@")
        inject(kind, int(update))
    sys.argv[0] = str(REPO / "train.py")
    runpy.run_path(str(REPO / "train.py"), run_name="__main__")
