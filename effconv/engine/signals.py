"""Pre-emption: SIGTERM/SIGUSR1 (and submitit's signal) become a stop at the next optimizer update boundary.

The loop polls ``StopSignal.received`` once per update through the ranks' ``Agreement`` (runtime.py), so
every rank stops at the same update; it writes ``last.pt`` there and calls ``stop_and_hand_over``, which waits
for rank 0's checkpoint, passes the signal to the handler installed before ours (submitit's requeue) and
raises ``Interrupted``: the entry point prints one line and exits 143, and the same command resumes.
"""

from __future__ import annotations

import contextlib
import os
import signal

from effconv.engine.runtime import Agreement, Runtime, barrier


class Interrupted(Exception):
    """SIGTERM/SIGUSR1 arrived; a checkpoint was written and the run can be resumed."""

    exit_code = 143


class StopSignal:
    """SIGTERM/SIGUSR1 become a flag the loop acts on at the next update boundary: write ``last.pt``, stop.

    Inside a submitit job (``hydra/launcher=submitit_slurm`` / ``submitit_local``) submitit's own
    pre-emption/time-out signal (SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` names another) is caught too.
    Submitit installed its handler before ours; after our checkpoint, ``hand_over`` calls it: it asks the
    launcher's ``checkpoint()`` for the resubmission (hydra-submitit-launcher resubmits the same job with the
    same overrides, hence the same run directory) and requeues the job, which resumes from ``last.pt``.
    Handlers are installed while the object is entered (``with stop: ...``) and restored after.
    """

    def __init__(self):
        self.received: int | None = None
        self.previous = {}

    @staticmethod
    def signals() -> tuple[int, ...]:
        names = ["SIGTERM", "SIGUSR1"]
        if os.environ.get("SUBMITIT_EXECUTOR"):
            names.append("SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
        return tuple(dict.fromkeys(getattr(signal, n) for n in names if hasattr(signal, n)))

    @property
    def name(self) -> str | None:
        return signal.Signals(self.received).name if self.received else None

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for s in self.signals():
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum

    def hand_over(self) -> None:
        """Pass the signal on to the handler installed before ours (submitit's requeue), if any."""
        previous = self.previous.get(self.received)
        if callable(previous):
            previous(self.received, None)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}


def stop_and_hand_over(stop: StopSignal, runtime: Runtime, agreement: Agreement, message: str):
    """Every rank, after rank 0 wrote ``last.pt``: leave together, requeue where a launcher can, raise."""
    agreement.close()
    barrier(runtime)  # rank 0's checkpoint is on disk before any rank leaves
    try:
        stop.hand_over()  # in a submitit job, rank 0 requeues it here (and exits)
    finally:
        barrier(runtime)  # ranks leave together, after the requeue was asked for
    raise Interrupted(message)
