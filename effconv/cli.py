"""Entry-point glue: one-line errors for bad command lines, exit codes for the failures users cause.

Hydra reports composition errors as several lines plus a hint about HYDRA_FULL_ERROR. Before handing the
command line to ``@hydra.main``, ``preflight`` composes it once with the compose API and turns any failure
into a ``UserError`` naming the key (with close matches); ``guarded`` maps ``UserError`` and interrupts to
``error: <line>`` on stderr and a non-zero exit status.
"""

from __future__ import annotations

import sys
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


def guarded(fn: Callable, *args):
    """Run ``fn``; a UserError or an interrupt becomes one line on stderr and its exit status."""
    from effconv.engine.loop import Interrupted

    try:
        return fn(*args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr, flush=True)
        sys.exit(Interrupted.exit_code)


def main(hydra_main: Callable, config_name: str) -> None:
    from effconv.config import prepare_overrides

    sys.argv[1:] = prepare_overrides(sys.argv[1:])
    try:
        preflight(sys.argv[1:], config_name)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    hydra_main()
