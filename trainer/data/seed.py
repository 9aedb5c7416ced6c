"""Seeding: LeTI without a human. The agent plays train tasks with the sandbox as teacher.

Every episode is logged as a session (purpose "seed") that `fixloop data build` compiles.
Resumable through the eval harness's progress file: a rerun with the same `out_dir` skips
the finished episodes. `fixloop data seed` and `fixloop retrain`'s seed stage both run this.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import FixloopError

if TYPE_CHECKING:
    from agent.backends.base import Backend
    from agent.config import PolicyName, Settings
    from agent.events import Task
    from evals.results import SuiteResult

MAX_TURNS = 3  # attempts per seed episode
# Seeds repair whatever policy the user solves with: their episodes hold the repair
# trajectories and feedback rows the recipes train on (a `resample` seed holds none).
SEED_POLICY: PolicyName = "greedy"


class SeedError(FixloopError, ValueError):
    """Seeding asked of evaluation tasks; the message says what to seed from instead."""


def seed_tasks(
    suite: str = "mbpp",
    split: str = "train",
    *,
    ids: str | None = None,
    limit: int | None = None,
) -> list[Task]:
    """The tasks to seed from; SeedError for evaluation tasks (they never become data)."""
    from evals.suites import load_suite
    from trainer.data.hygiene import NEVER_TRAIN_SPLITS, EvalGuard

    if split in NEVER_TRAIN_SPLITS or suite == "humaneval":
        raise SeedError(
            f"refusing to seed from {suite} {split}: evaluation tasks (test and validation "
            "splits, HumanEval) never become training data. Seed from --suite mbpp --split train."
        )
    tasks = load_suite(suite, split=split, ids=ids, limit=limit)
    guard = EvalGuard()
    refused = [why for why in map(guard.reason, tasks) if why is not None]
    if refused:
        raise SeedError(
            f"{len(refused)} of {len(tasks)} tasks are evaluation tasks ({refused[0]}); "
            "seed from a train split only"
        )
    return tasks


def seed_temperature(samples: int, temperature: float | None = None) -> float:
    """The given temperature, else greedy for one sample and 0.8 for several."""
    if temperature is not None:
        return temperature
    return 0.8 if samples > 1 else 0.0


def seed_sessions(
    tasks: list[Task],
    settings: Settings,
    *,
    out_dir: Path,
    suite_name: str,
    samples: int = 1,
    max_turns: int = MAX_TURNS,
    temperature: float | None = None,
    workers: int = 1,
    seed: int = 0,
    backend: Backend | None = None,
    progress: bool = True,
) -> SuiteResult:
    """Play `tasks` with `settings`' model (or `backend`), logging sessions to its sessions_dir."""
    from evals.runner import run_suite

    return run_suite(
        tasks,
        settings,
        max_turns=max_turns,
        samples=samples,
        temperature=seed_temperature(samples, temperature),
        workers=workers,
        seed=seed,
        out_dir=out_dir,
        purpose="seed",
        progress=progress,
        backend=backend,
        suite_name=suite_name,
    )
