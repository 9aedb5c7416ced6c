"""One retrain's directory and its state file: the stages finished and what each left.

`retrain.json` holds the key (a hash of the settings that define the retrain), those
settings, and one record per finished stage. A rerun reads it, skips the finished stages
(saying so on stderr) and continues at the first unfinished one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from agent.errors import FixloopError
from trainer.train import rundir

STATE = "retrain.json"
SEED_SESSIONS = "sessions"  # the seeded sessions; kept by `fresh`, as is seed's progress
TRAIN = "train"  # parent of the training run directory
KEPT_BY_FRESH = (SEED_SESSIONS, "seed")


class RetrainError(FixloopError, ValueError):
    """A retrain that cannot continue as asked; the message says what to do."""


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able settings."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def say(message: str) -> None:
    print(f"retrain: {message}", file=sys.stderr, flush=True)


class RetrainState:
    """The state file of `directory`; `finish` saves a stage's record at once."""

    def __init__(self, directory: Path, key: str, settings: dict[str, Any]) -> None:
        self.directory = directory
        self.key = key
        self.settings = settings
        self.stages: dict[str, dict[str, Any]] = {}
        self.skipped: list[str] = []
        self.ran: list[str] = []

    @classmethod
    def open(
        cls, directory: Path, settings: dict[str, Any], *, fresh: bool = False
    ) -> RetrainState:
        """Read (or start) the state of `directory`; `fresh` discards its finished stages."""
        state = cls(directory, settings_key(settings), settings)
        path = directory / STATE
        if fresh and directory.is_dir():
            for child in directory.iterdir():
                if child.name in KEPT_BY_FRESH:
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            say(f"--fresh: starting {directory} over (seeded sessions kept)")
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("key") != state.key:
                old = saved.get("settings", {})
                changed = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
                raise RetrainError(
                    f"{directory} holds a retrain with other settings ({', '.join(changed)}); "
                    "pass --fresh to start it over, or choose another --out"
                )
            state.stages = saved.get("stages", {})
        else:
            say(f"new retrain in {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        state.save()
        return state

    def save(self) -> None:
        rundir.write_json(
            self.directory / STATE,
            {"key": self.key, "settings": self.settings, "stages": self.stages},
        )

    def get(self, stage: str) -> dict[str, Any] | None:
        """The record of `stage` if it finished."""
        return self.stages.get(stage)

    def skip(self, stage: str) -> dict[str, Any]:
        """Say that `stage` already finished; its record."""
        record = self.stages[stage]
        self.skipped.append(stage)
        say(f"{stage} already finished ({record['summary']})")
        return record

    def start(self, stage: str) -> None:
        """Note that `stage` runs; the first stage run after skipped ones says where it resumes."""
        if self.skipped and not self.ran:
            say(f"resuming at {stage} in {self.directory}")
        self.ran.append(stage)

    def finish(self, stage: str, summary: str, **record: Any) -> dict[str, Any]:
        self.stages[stage] = {
            **record,
            "summary": summary,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.save()
        return self.stages[stage]
