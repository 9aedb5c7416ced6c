"""The dataset build: session logs in, one JSONL file per format and a manifest out.

Steps: read every log (bad lines reported with file and line, skipped), rebuild
each session, refuse evaluation tasks, build rows per format, assign each task
to train or validation (by a hash of the task, so a task never straddles both
and keeps its side as data grows), remove near-duplicates, drop rows over the
token budget, write `<format>.jsonl` and `manifest.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent import __version__
from agent.hashing import sha256_file
from trainer.data.copied_tests import strip_row
from trainer.data.episodes import Episode, Judgement, LogProblem, find_logs, judge, read_log
from trainer.data.episodes import reconstruct as reconstruct_episode
from trainer.data.formats import (
    FORMATS,
    LETI_SPECIAL_TOKENS,
    Row,
    dpo_rows,
    episode_rows,
    ilf_final_rows,
    ilf_triples,
    kto_rows,
    leti_rows,
    pref_dpo_rows,
    repair_rows,
    sft_rows,
)
from trainer.data.hygiene import (
    DedupStats,
    EvalGuard,
    HFTokenCounter,
    ProxyTokenCounter,
    TokenCounter,
    apply_budget,
    deduplicate,
)

MANIFEST_VERSION = 1


@dataclass
class BuildOptions:
    sessions: Sequence[Path]
    out: Path
    formats: Sequence[str] = FORMATS
    validation_fraction: float = 0.1
    max_tokens: int = 4096
    near_duplicate_threshold: float = 0.95
    tokenizer: str | None = None  # a transformers tokenizer dir; None: the proxy counter
    strip_copied_tests: bool = False  # drop the shown asserts a trained reply repeats
    guard: EvalGuard = field(default_factory=EvalGuard)
    progress: bool = False

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ValueError(
                f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}"
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in [0, 1)")
        for path in (self.out, *self.out.parents):
            if path.exists() and not path.is_dir():
                raise ValueError(
                    f"--out {self.out}: {path} is a file; give a directory to write the "
                    "datasets into (it is created if missing)"
                )


@dataclass(frozen=True)
class Refusal:
    path: Path
    session_id: str
    task: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: session {self.session_id} refused: {self.reason}"


@dataclass
class BuildResult:
    out: Path
    rows: dict[str, int]
    files: dict[str, Path]
    manifest: dict[str, Any]
    problems: list[LogProblem]
    refused: list[Refusal]
    sessions: int

    @property
    def manifest_path(self) -> Path:
        return self.out / "manifest.json"


def split_of(task_key: str, validation_fraction: float) -> str:
    """'validation' or 'train' for a task, fixed by a hash of its key."""
    digest = hashlib.sha256(f"fixloop-split:{task_key}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "validation" if position < validation_fraction else "train"


def _write_jsonl(path: Path, rows: Iterable[Row]) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def load_episodes(
    sessions: Sequence[Path], guard: EvalGuard, progress: bool = False
) -> tuple[list[Episode], list[LogProblem], list[Refusal]]:
    """Every usable session under the given files/directories, in a stable order."""
    paths: list[Path] = []
    for location in sessions:
        location = Path(location)
        if not location.exists():
            raise FileNotFoundError(
                f"no sessions at {location}: pass a directory of session logs (--sessions DIR)"
            )
        paths += find_logs(location)
    episodes: list[Episode] = []
    problems: list[LogProblem] = []
    refused: list[Refusal] = []
    seen: dict[str, Path] = {}
    for path in tqdm(paths, desc="reading sessions", unit="log", disable=not progress):
        log, found = read_log(path)
        problems += found
        if log is None:
            continue
        if log.session_id in seen:
            problems.append(
                LogProblem(
                    path,
                    1,
                    f"session {log.session_id} already read from {seen[log.session_id]}; skipped",
                )
            )
            continue
        seen[log.session_id] = path
        reason = guard.reason(log.header.task)
        if reason is not None:
            refused.append(Refusal(path, log.session_id, log.header.task.task_id or "", reason))
            continue
        episodes.append(reconstruct_episode(log))
    return episodes, problems, refused


def compile_rows(
    episodes: Sequence[Episode], strip_copied_tests: bool = False
) -> dict[str, list[Row]]:
    """Rows per format before hygiene, in session order; with `strip_copied_tests`, the
    trained replies of SFT, repair, DPO and KTO rows lose the task's asserts they repeat."""
    judged: list[tuple[Episode, Judgement]] = [(e, judge(e)) for e in episodes]
    rows: dict[str, list[Row]] = {f: [] for f in FORMATS}
    triples: list[Row] = []
    groups: dict[str, list[tuple[Episode, Judgement]]] = {}
    for episode, judgement in judged:
        rows["leti"] += leti_rows(episode)
        triples += ilf_triples(episode, judgement)
        rows["sft"] += sft_rows(episode, judgement)
        rows["repair"] += repair_rows(episode)
        rows["kto"] += kto_rows(episode, judgement)
        rows["episodes"] += episode_rows(episode)
        groups.setdefault(episode.task_key, []).append((episode, judgement))
    rows["ilf"] = triples + ilf_final_rows(triples)
    for group in groups.values():
        rows["dpo"] += dpo_rows(group)
        rows["pref_dpo"] += pref_dpo_rows([episode for episode, _ in group])
    if strip_copied_tests:
        tests = {e.task_key: e.task.tests for e in episodes}
        for fmt in ("sft", "repair", "dpo", "kto"):
            rows[fmt] = [strip_row(r, tests.get(r["task_key"], [])) for r in rows[fmt]]
        rows["dpo"] = [r for r in rows["dpo"] if r["chosen"] != r["rejected"]]
    return rows


def _counter(options: BuildOptions) -> TokenCounter:
    return HFTokenCounter(options.tokenizer) if options.tokenizer else ProxyTokenCounter()


def build(options: BuildOptions) -> BuildResult:
    """Compile the sessions into datasets under `options.out`; see the module docstring."""
    started = time.perf_counter()
    counter = _counter(options)  # first: a bad --tokenizer fails before any work
    episodes, problems, refused = load_episodes(options.sessions, options.guard, options.progress)
    all_rows = compile_rows(episodes, options.strip_copied_tests)
    options.out.mkdir(parents=True, exist_ok=True)

    task_split = {e.task_key: split_of(e.task_key, options.validation_fraction) for e in episodes}
    formats_info: dict[str, Any] = {}
    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for fmt in options.formats:
        raw = all_rows[fmt]
        for row in raw:
            row["split"] = task_split[row["task_key"]]
        deduped, stats = deduplicate(fmt, raw, options.near_duplicate_threshold)
        kept, over_budget = apply_budget(fmt, deduped, counter, options.max_tokens)
        path = options.out / f"{fmt}.jsonl"
        _write_jsonl(path, kept)
        files[fmt] = path
        counts[fmt] = len(kept)
        formats_info[fmt] = _format_info(path, raw, kept, stats, over_budget)

    manifest = _manifest(options, episodes, formats_info, task_split, problems, refused, counter)
    manifest["wall_s"] = round(time.perf_counter() - started, 3)
    manifest_path = options.out / "manifest.json"
    tmp = manifest_path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(manifest_path)
    return BuildResult(
        out=options.out,
        rows=counts,
        files=files,
        manifest=manifest,
        problems=problems,
        refused=refused,
        sessions=len(episodes),
    )


def _format_info(
    path: Path, raw: list[Row], kept: list[Row], stats: DedupStats, over_budget: int
) -> dict[str, Any]:
    by_split = {"train": 0, "validation": 0}
    for row in kept:
        by_split[row["split"]] += 1
    return {
        "file": path.name,
        "rows": len(kept),
        "rows_by_split": by_split,
        "rows_before_hygiene": len(raw),
        "dedup": {"exact": stats.exact, "near": stats.near},
        "over_token_budget": over_budget,
        "sha256": sha256_file(path),
    }


def _manifest(
    options: BuildOptions,
    episodes: Sequence[Episode],
    formats_info: dict[str, Any],
    task_split: dict[str, str],
    problems: Sequence[LogProblem],
    refused: Sequence[Refusal],
    counter: TokenCounter,
) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for episode in episodes:
        identity = episode.header.model
        entry = models.setdefault(
            identity.key, {"identity": identity.model_dump(mode="json"), "sessions": 0}
        )
        entry["sessions"] += 1
    sources = [
        {
            "session_id": e.session_id,
            "path": str(e.source) if e.source else None,
            "sha256": sha256_file(e.source) if e.source else None,
            "task_key": e.task_key,
            "purpose": e.header.purpose,
            "model": e.model_key,
            "outcome": e.outcome.outcome if e.outcome else "unfinished",
        }
        for e in episodes
    ]
    return {
        "manifest_version": MANIFEST_VERSION,
        "fixloop_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "formats": formats_info,
        "rows": {fmt: info["rows"] for fmt, info in formats_info.items()},
        "sessions": sources,
        "models": models,
        "split": {
            "by": "task",
            "validation_fraction": options.validation_fraction,
            "train": sorted(k for k, s in task_split.items() if s == "train"),
            "validation": sorted(k for k, s in task_split.items() if s == "validation"),
        },
        "hygiene": {
            "near_duplicate_threshold": options.near_duplicate_threshold,
            "strip_copied_tests": options.strip_copied_tests,
            "max_tokens": options.max_tokens,
            "token_counter": counter.name,
            "dedup_removed": {
                fmt: info["dedup"]["exact"] + info["dedup"]["near"]
                for fmt, info in formats_info.items()
            },
        },
        "refused": [
            {"path": str(r.path), "session_id": r.session_id, "task": r.task, "reason": r.reason}
            for r in refused
        ],
        "problems": [str(p) for p in problems],
        "leti_special_tokens": list(LETI_SPECIAL_TOKENS),
    }
