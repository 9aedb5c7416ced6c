"""The online preference round: `fixloop retrain --method dpo --preferences` (issue 16).

AutoIF's online DPO for the user's standing preferences. In place of the seed stage, the
model being retrained (`--base`: by default the current model, i.e. the latest promoted
version, else the configured base) plays each task K times (`--seed-samples`, default 4) at
T 0.8, one attempt each, on MBPP train or on the user's own logged tasks (`--pref-tasks`).
It plays through the seed machinery (`stages.play` -> `trainer.data.seed` -> the eval
runner's `AgentSession`s), so every attempt runs in the sandbox against the task's tests
*and* the active preferences' verifiers (`agent.preferences.env`: seed sessions are checked),
and is logged like any session. The build stage then makes the pairs where `fixloop data
build` makes them (`trainer.data.formats.pref_dpo_rows`: the same prompt, both programs pass
the tests, one follows a preference and the other does not, at most 2 x 2 per prompt and
preference) into pref_dpo.jsonl; `check_pairs` refuses to train on too few, and the usual
stages train DPO (LoRA by default) on them, export and gate. The report says how many pairs
came from how many prompts.

The round's settings (the active preferences' verifier versions included) are part of the
retrain's key, so another preference set or sample count makes another directory; the
sampling is resumable by the seed's progress file, like seeding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.retrain import stages
from trainer.retrain.state import RetrainError, RetrainState, say
from trainer.train.config import TrainConfig

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.events import Task
    from agent.preferences import Preference
    from trainer.gate import BackendFactory

ROUND_TEMPERATURE = 0.8  # AutoIF's online sampling temperature
ROUND_TURNS = 1  # each sample is one attempt: no repair turn
TASK_SOURCES = ("mbpp", "sessions")
STAGE = "sample"
PAIRS = "pairs"


def active_preferences(settings: Settings) -> list[Preference]:
    """The preferences the round checks; a RetrainError naming the fix when there are none."""
    from agent.preferences import PreferenceError, PreferenceStore

    if not settings.preferences:
        raise RetrainError(
            "preferences are switched off (preferences = false in the config or "
            "FIXLOOP_PREFERENCES), so no attempt would be checked against them; switch them "
            "on for the --preferences round"
        )
    store = PreferenceStore.for_data_dir(settings.data_dir)
    try:
        return store.require_active("the --preferences round trains the model to follow them")
    except PreferenceError as exc:
        raise RetrainError(f"the --preferences round cannot run: {exc}") from None


def round_settings(
    prefs: Sequence[Preference], *, tasks: str, samples: int, limit: int | None
) -> dict[str, Any]:
    """What defines the round's data (part of the retrain's key)."""
    return {
        "preferences": [
            {
                "id": p.id,
                "version": p.current.version,
                "verifier_sha256": hashlib.sha256(p.current.verifier.encode()).hexdigest()[:16],
            }
            for p in prefs
        ],
        "tasks": tasks,
        "samples": samples,
        "limit": limit,
        "temperature": ROUND_TEMPERATURE,
        "turns": ROUND_TURNS,
    }


def round_tasks(source: str, settings: Settings, limit: int | None) -> list[Task]:
    """The tasks the round plays: MBPP train, or the user's own logged function tasks with
    tests (evaluation and held-out tasks left out, as for self-play)."""
    from trainer.data.seed import seed_tasks
    from trainer.data.selfplay import user_tasks

    if source == "mbpp":
        return seed_tasks("mbpp", "train", limit=limit)
    if source != "sessions":
        raise RetrainError(f"--pref-tasks {source!r}: choose {' or '.join(TASK_SOURCES)}")
    tasks = user_tasks(settings.sessions_dir)
    if not tasks:
        raise RetrainError(
            f"no tasks of yours to sample in {settings.sessions_dir} (function tasks with "
            "assert tests from chat or solve sessions, held-out ones left out); solve some "
            "first, or sample MBPP train tasks (--pref-tasks mbpp)"
        )
    return tasks[:limit] if limit is not None else tasks


def sample(
    state: RetrainState,
    settings: Settings,
    cfg: TrainConfig,
    prefs: Sequence[Preference],
    *,
    source: str,
    samples: int,
    limit: int | None,
    backend_for: BackendFactory | None,
    progress: bool,
) -> list[Path]:
    """The round's sessions: the model being retrained plays the tasks, checked (see module)."""
    record = state.get(STAGE)
    if record is not None:
        state.skip(STAGE)
        return [Path(record["sessions"])]
    state.start(STAGE)
    tasks = round_tasks(source, settings, limit)
    names = ", ".join(f"{p.id} v{p.current.version}" for p in prefs)
    say(
        f"sampling {len(tasks)} {'MBPP train' if source == 'mbpp' else 'of your'} tasks x "
        f"{samples} at T {ROUND_TEMPERATURE} with {cfg.base}, checked against {names}"
    )
    record = stages.play(
        state,
        STAGE,
        settings,
        cfg.base,
        tasks,
        suite_name="mbpp-train" if source == "mbpp" else "user-tasks",
        samples=samples,
        max_turns=ROUND_TURNS,
        temperature=ROUND_TEMPERATURE,
        backend_for=backend_for,
        progress=progress,
    )
    return [Path(record["sessions"])]


def pair_counts(data_dir: Path) -> dict[str, dict[str, int]]:
    """{split: {"pairs": N, "prompts": M}} of the preference pairs in `data_dir`."""
    from trainer.train.config import PREF_DPO_FILE

    path = data_dir / PREF_DPO_FILE
    prompts: dict[str, set[str]] = {"train": set(), "validation": set()}
    pairs = {"train": 0, "validation": 0}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            split = row.get("split", "train")
            pairs[split] = pairs.get(split, 0) + 1
            prompts.setdefault(split, set()).add(json.dumps(row["prompt"], sort_keys=True))
    return {s: {"pairs": pairs[s], "prompts": len(prompts.get(s, ()))} for s in pairs}


def check_pairs(cfg: TrainConfig, min_pairs: int) -> dict[str, dict[str, int]]:
    """The pair counts, or a RetrainError naming the fix when the train split has too few."""
    counts = pair_counts(cfg.data_dir)
    train = counts["train"]
    if train["pairs"] < max(min_pairs, 1):
        raise RetrainError(
            f"too few preference pairs to train on: {train['pairs']} in the train split of "
            f"{cfg.data_dir} (from {train['prompts']} prompts; --min-pairs {min_pairs}). A pair "
            "needs two programs at one prompt that both pass the tests, one following a "
            "preference and one not. Sample more (--seed-samples K, or a higher --seed-limit), "
            "play tasks where your preferences matter (--pref-tasks sessions), or lower "
            "--min-pairs"
        )
    return counts


def pairs(
    state: RetrainState, cfg: TrainConfig, prefs: Sequence[Preference], *, min_pairs: int
) -> list[str]:
    """The pairs stage, after the build: enough pairs to train on (else a RetrainError), and
    the report's lines about where they came from."""
    record = state.get(PAIRS)
    if record is not None:
        state.skip(PAIRS)
        return record["lines"]
    state.start(PAIRS)
    counts = check_pairs(cfg, min_pairs)
    train, val = counts["train"], counts["validation"]
    names = ", ".join(f"{p.id} v{p.current.version}" for p in prefs) or "as in the dataset"
    lines = [
        f"preference pairs: {train['pairs']} pairs from {train['prompts']} prompts "
        f"(validation split: {val['pairs']} from {val['prompts']}); preferences: {names}"
    ]
    sampled = state.get(STAGE)
    if sampled is not None:
        lines.append(
            f"online round: {sampled['model']} sampled {sampled['tasks']} tasks x "
            f"{sampled['samples']} at T {ROUND_TEMPERATURE} ({sampled['episodes']} attempts, "
            f"each checked against the tests and the preferences), logged in "
            f"{sampled['sessions']}"
        )
    say(lines[0])
    state.finish(PAIRS, lines[0], counts=counts, lines=lines)
    return lines
