"""The resumable results file of a run: a header line naming its settings, then one record
per finished episode (``<out_dir>/episodes-<model>.jsonl``), appended as episodes end.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from evals.errors import EvalError
from evals.results import EpisodeRecord

if TYPE_CHECKING:
    from agent.config import Settings

_log = logging.getLogger(__name__)


class RunHeader(BaseModel):
    """First line of a results file: what the episodes in it were produced with."""

    model: str
    model_key: str
    max_turns: int
    temperature: float
    seed: int
    purpose: str
    policy: str = "greedy"  # the repair policy (agent/policies.py); older files: greedy
    preferences: list[str] = []  # `--preferences`: "ID vN" of each preference applied
    kernels: str | None = None  # CPU and llama.cpp build (`ModelIdentity.kernels`); older: None

    def differences(self, other: RunHeader) -> dict[str, tuple[object, object]]:
        """Fields whose values differ; a file from before `kernels` was kept matches any."""
        return {
            k: (getattr(self, k), getattr(other, k))
            for k in RunHeader.model_fields
            if getattr(self, k) != getattr(other, k)
            and not (k == "kernels" and None in (self.kernels, other.kernels))
        }


def model_label(settings: Settings) -> str:
    """How a run's model is named in tables and file names: --model (or the URL), + adapter."""
    label = settings.base_url or settings.model
    if settings.adapter is not None:
        label += f"+{Path(settings.adapter).stem}"
    return label


def results_path(out_dir: Path, label: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", label).strip("_") or "model"
    return out_dir / f"episodes-{slug}.jsonl"


def read_results(path: Path) -> tuple[RunHeader | None, list[EpisodeRecord]]:
    """The header and records of a results file; a torn last line is dropped from the file."""
    if not path.exists():
        return None, []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    header: RunHeader | None = None
    records: list[EpisodeRecord] = []
    good_bytes = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + (1 if i < len(lines) - 1 else 0)
            continue
        last = i == len(lines) - 1  # no newline after it: written partly
        try:
            data = json.loads(line)
            if last:
                raise ValueError("unterminated last line")
            if "run" in data:
                header = RunHeader.model_validate(data["run"])
            else:
                records.append(EpisodeRecord.model_validate(data))
        except (ValueError, ValidationError) as exc:
            if last:  # a crash mid-write: drop the partial line so appends stay valid
                with open(path, "r+b") as fh:
                    fh.truncate(good_bytes)
                break
            raise EvalError(
                f"{path}:{i + 1}: not a results line ({exc}); delete the file or use another --out"
            ) from exc
        good_bytes += len(line) + 1
    return header, records


class ResultsFile:
    """Append-only, thread-safe writer of one run's records."""

    def __init__(self, path: Path, header: RunHeader) -> None:
        self.path = path
        self._lock = threading.Lock()
        existing, _ = read_results(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if existing is None:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"run": header.model_dump()}) + "\n")
        elif diff := existing.differences(header):
            what = ", ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
            why = (
                " (another CPU or llama.cpp build: its greedy episodes would not be the ones "
                "this machine generates, so they are not mixed into one run)"
                if "kernels" in diff
                else ""
            )
            raise EvalError(
                f"{path} holds results of a different run ({what}){why}; "
                "use another --out directory, or move the file aside to start over"
            )
        elif existing.kernels is None and header.kernels is not None:
            _log.warning(
                "%s predates results files that name their machine: its episodes may come "
                "from another CPU, whose repair turns differ from this one's; evaluate both "
                "models of a comparison here for a paired result",
                path,
            )

    def append(self, record: EpisodeRecord) -> None:
        line = record.model_dump_json() + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
