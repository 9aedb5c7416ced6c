"""A real logged session with its clock, ids and machine details pinned, for snapshots.

The session is produced by the real AgentSession (scripted model, real sandbox):
a failing attempt, the user's feedback, a passing repair, accept. Then every
time, duration, id and isolation detail is replaced by a fixed value, so that
its replay renders the same on every machine and every day.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import Task
from agent.session import AgentSession
from tests.tui.conftest import BAD_REPLY, GOOD_REPLY, TESTS

START = 1_767_261_600.0  # 2026-01-01 10:00:00 UTC
SESSION_ID = "20260101-100000-c0ffee"


def _pin(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _pin(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_pin(v, key) for v in value]
    if key == "duration_s" and isinstance(value, float):
        return 0.05 if value < 1 else round(value, 0)
    if key == "peak_memory_kb" and value is not None:
        return 20_000
    return value


def write_pinned_session(settings: Settings) -> Path:
    """Run the episode, then rewrite its log with pinned values; returns the log path."""
    task = Task(text="Write a function add(a, b) that returns the sum of a and b.", tests=TESTS)
    backend = ScriptedBackend([BAD_REPLY, GOOD_REPLY])
    with AgentSession(task, backend, settings) as session:
        list(session.start())
        list(session.feedback("It must add the numbers, not subtract them."))
        list(session.accept())
        source = session.log_path
    lines = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    for raw in lines:
        raw["ts"] = START + raw["seq"] * 1.5
        if raw["type"] == "session_started":
            raw["session_id"] = SESSION_ID
            raw["cwd"] = "/home/user/project"
            raw["config"] = {"max_turns": raw["config"]["max_turns"]}
        if raw["type"] == "model_replied":
            raw["duration_s"] = 2.0
            raw["completion_tokens"] = 50
        if raw["type"] == "episode_finished":
            raw["duration_s"] = 4.5
        for result in [raw.get("result")]:
            if isinstance(result, dict):
                result["isolation"] = {
                    "level": "bwrap",
                    "network": True,
                    "filesystem": "private",
                    "pids": "cgroup",
                    "notes": [],
                }
                result["command"] = []
    pinned = [_pin(raw) for raw in lines]
    target = source.with_name(f"{SESSION_ID}.jsonl")
    target.write_text("".join(json.dumps(raw) + "\n" for raw in pinned), encoding="utf-8")
    source.unlink()
    return target
