"""What a retrain is told besides the training config: where rows come from when the sessions
give too few (`SeedPlan`), and how the candidate is judged (`GatePlan`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.events import Task

DEFAULT_MIN_ROWS = 100  # fewer train rows of the method in the sessions: seed first
DEFAULT_MIN_PAIRS = 8  # the preference round: fewest pairs worth training on
ROUND_SAMPLES = 4  # the preference round: K attempts per task


@dataclass(frozen=True)
class SeedPlan:
    """The seed stage (or, with `--preferences`, the online preference round).

    `samples` episodes per task (default 1; the round: ROUND_SAMPLES) on the first `limit`
    tasks, played by the model being retrained or by `teacher` (strong-to-weak; not with the
    round, which must sample the model it trains). `min_rows`: seed only when the sessions
    give fewer train rows (0: never). The round plays `pref_tasks` ("mbpp": MBPP train, or
    "sessions": the user's own tasks) and stops before training below `min_pairs` pairs.
    """

    min_rows: int = DEFAULT_MIN_ROWS
    samples: int | None = None
    limit: int | None = None
    teacher: str | None = None
    pref_tasks: str = "mbpp"
    min_pairs: int = DEFAULT_MIN_PAIRS

    def samples_for(self, preferences: bool) -> int:
        if self.samples is not None:
            return self.samples
        return ROUND_SAMPLES if preferences else 1


@dataclass(frozen=True)
class GatePlan:
    """The gate: `tasks` (default: the first `limit` MBPP validation tasks, with `humaneval`
    the first `limit` HumanEval tasks, and the user's held-out ones), up to `max_turns`
    attempts each (default: the settings'), `workers` episodes at a time; `promote` a
    candidate that wins (`require_significant`: only by a significant margin); `reuse` the
    episodes of an earlier gate with the same model, settings and code."""

    tasks: Sequence[Task] | None = None
    limit: int | None = None
    humaneval: bool = False
    max_turns: int | None = None
    workers: int = 1
    promote: bool = True
    require_significant: bool = False
    reuse: bool = True
