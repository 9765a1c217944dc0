"""The one error type users see.

A ``UserError`` carries a single line that says what was wrong and how to fix it. Entry points catch it,
print ``error: <line>`` to stderr and exit with status 2; nothing else is printed (no traceback wall).
Everything else (a genuine bug) keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: config, paths, files, knob values, checkpoints."""

    exit_code = 2

    def __init__(self, message: str):
        # one line, always: multi-line messages are folded so logs stay greppable
        super().__init__(" ".join(str(message).split()))


class NonFiniteLossError(UserError):
    """The loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 3


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean a, b?)' suffix, or '' when nothing is close."""
    found = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean {', '.join(found)}?)" if found else ""


def unknown_choice(
    kind: str, name: str, choices: Iterable[str], hint: str = "", listed: Iterable[str] | None = None
) -> UserError:
    """'unknown <kind> <name> (did you mean ...?); available: ...' with ``listed`` (default: all choices)."""
    choices = sorted(choices)
    listed = sorted(listed) if listed is not None else choices
    shown = ", ".join(listed[:40]) + (", ..." if len(listed) > 40 else "")
    return UserError(f"unknown {kind} '{name}'{close_matches(name, choices)}; available: {shown}{hint}")
