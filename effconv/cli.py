"""Entry-point glue: one-line errors for bad command lines, exit codes for the failures users cause, and the
task wrapper that lets a sweep survive a failing job.

Hydra reports composition errors as several lines plus a hint about HYDRA_FULL_ERROR. Before handing the
command line to ``@hydra.main``, ``preflight`` composes it once with the compose API and turns any failure
into a ``UserError`` naming the key (with close matches). ``guarded`` runs the job: in a single run a
``UserError`` is ``error: <line>`` on stderr and its exit status, an interrupt exit 143; in a sweep
(``-m``) a failure of any kind is recorded in the job's run directory and printed, and the job returns so the
next one runs (lightning-hydra-template's task wrapper); the sweeper's closing summary lists it and ``main``
exits 1.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from omegaconf import OmegaConf

from effconv.errors import UserError, close_matches

_HYDRA_INFO_FLAGS = {
    "-h",
    "--help",
    "--hydra-help",
    "--info",
    "-i",
    "--cfg",
    "-c",
    "--shell-completion",
    "-sc",
    "--version",
}


def _one_line(error: Exception, overrides: list[str], config_name: str) -> str:
    text = str(error)
    if error.__cause__ is not None:  # "Error merging override x=y" alone does not say what was wrong
        text += ": " + str(error.__cause__)
    text = text.split("Config search path:")[0]  # Hydra's list of search paths: noise for a wrong choice
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [
        line
        for line in lines
        if "HYDRA_FULL_ERROR" not in line and not line.startswith(("full_key", "object_type", "reference_type"))
    ]
    message = " ".join(lines) or type(error).__name__
    for line in overrides:
        key = line.partition("=")[0].lstrip("+~")
        parent, _, leaf = key.rpartition(".")
        if parent and (f"'{leaf}'" in message or f"'{key}'" in message):
            message += close_matches(leaf, _keys_of(parent, config_name))
            break
    return message


def _keys_of(parent: str, config_name: str) -> list[str]:
    from effconv.config import compose

    try:
        node = OmegaConf.select(compose([], config_name), parent)
        return list(node.keys()) if node is not None else []
    except Exception:  # best effort: only used to suggest a spelling
        return []


def preflight(argv: list[str], config_name: str) -> None:
    """Compose the command line once (single runs) or check its group choices (sweeps)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from effconv.config import check_group_choices, compose

    if _HYDRA_INFO_FLAGS & set(argv):
        return
    overrides = [a for a in argv if not a.startswith("-")]
    check_group_choices(overrides)
    if "-m" in argv or "--multirun" in argv:
        return
    try:
        cfg = compose(overrides, config_name)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise UserError(f"no value for {', '.join(missing)}: set it on the command line, e.g. {missing[0]}=...")
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        if "Missing mandatory value" in str(e):  # also when met while resolving an interpolation
            key = str(e).rsplit("Missing mandatory value:", 1)[-1].split()[0]
            raise UserError(
                f"no value for {key}: set {key}=<value> (model=timm needs model.name=<timm model>)"
            ) from None
        raise UserError(_one_line(e, overrides, config_name)) from None


def in_sweep() -> bool:
    """Whether this Hydra job is one of a multirun's."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not inside a Hydra job
        return False


def guarded(fn: Callable, *args):
    """Run ``fn(*args)`` (``args[0]``: the job's config). A UserError is one line on stderr; an interrupt exits
    143. A failure of a training job is recorded in its run directory. In a single run a UserError then exits
    with its status and anything else keeps its traceback; in a sweep the job returns None instead."""
    from effconv.engine.signals import Interrupted

    sweep = in_sweep()
    try:
        return fn(*args)
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr, flush=True)
        sys.exit(Interrupted.exit_code)
    except UserError as e:
        _record_failure(args, str(e), e.exit_code)
        print(f"error: {e}", file=sys.stderr, flush=True)
        if not sweep:
            sys.exit(e.exit_code)
    except Exception as e:  # a bug, or a library's error (CUDA out of memory, ...): its traceback is printed
        reason = f"{type(e).__name__}: {' '.join(str(e).split())}"
        _record_failure(args, reason, 1)
        if not sweep:
            raise
        traceback.print_exc()
        print(f"error: {reason}", file=sys.stderr, flush=True)
    return None


def _record_failure(args: tuple, reason: str, exit_code: int) -> None:
    """failed.json and a ``failed`` event in the run directory of a training job (rank 0 only; best effort:
    a config too broken to name its run directory is not recorded)."""
    from effconv.engine.outputs import record_failure, run_dir_of
    from effconv.engine.results import task_overrides

    cfg = args[0] if args else None
    if cfg is None or "run_name" not in cfg or os.environ.get("RANK", "0") != "0":
        return
    try:
        run_dir, facts = run_dir_of(cfg), {"run_name": cfg.run_name, "experiment": cfg.get("experiment")}
    except Exception:  # an interpolation that cannot resolve, say
        return
    record_failure(run_dir, reason, exit_code, **facts, overrides=task_overrides())


def main(hydra_main: Callable, config_name: str) -> None:
    from effconv.config import prepare_overrides

    sys.argv[1:] = prepare_overrides(sys.argv[1:])
    try:
        preflight(sys.argv[1:], config_name)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    hydra_main()
    from effconv import sweeps

    if sweeps.LAST.unfinished:  # a sweep ran and some job did not finish (its summary was printed)
        sys.exit(1)
