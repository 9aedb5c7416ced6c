"""The evaluation harness's error: an evaluation that cannot run as asked."""

from __future__ import annotations

from agent.errors import FixloopError


class EvalError(FixloopError, ValueError):
    """An evaluation that cannot run as asked; the message names the problem and the fix."""
