"""Shared helpers for the dataset tests (tests/trainer/test_data_*.py)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SESSIONS = FIXTURES / "sessions"  # written by tests/fixtures/make_sessions.py (the real loop)
GOLDEN = FIXTURES / "sessions_golden.json"  # the expected build, written by hand


def golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def session_file(name: str, root: Path = SESSIONS) -> Path:
    """The log of fixture session `name` (e.g. "s04-user-edit-accept") under `root`."""
    matches = sorted(root.glob(f"*/{name}.jsonl"))
    assert len(matches) == 1, f"fixture session {name} not found under {root}"
    return matches[0]
