"""`fixloop retrain`: seed -> build -> train -> export -> gate, resumable, ending in a report.

One retrain is one directory, `<--out>/retrain-<key>/`, <key> a hash of the settings that
define its model (training config, session sources, seeding, export): other settings make
another directory. Its `retrain.json` (`state.py`) lists the finished stages and what each
left; the same call again skips them and continues at the first unfinished one
(`stages.py`). `fresh=True` starts the directory over, keeping the seeded sessions.

- with `cfg.preferences` (DPO on the standing preferences), the seed stage is the online
  preference round instead (`preferences.py`): the model being retrained samples K attempts
  per task, checked against the tests and the active preferences; after the build, the pairs
  stage counts the preference pairs (too few stop the retrain before training, naming the
  fix) and the report says how many came from how many prompts;
- seed: when the sessions give fewer than `min_rows` train rows of the method, the model
  being retrained (or `seed_teacher`, strong-to-weak as AutoIF does) plays MBPP train
  tasks (`trainer.data.seed`) into `sessions/` there,
  resumable by its progress file in `seed/`;
- build: `fixloop data build` of the sessions and the seeded ones into `cfg.data_dir`
  (its manifest hash is recorded, and checked before training);
- train: `run_training` into `train/<ts>-<method>/`; an interrupted run continues from
  its last checkpoint;
- export: GGUF, registered inactive (an export that registered before an interruption
  is kept);
- gate: both models on held-out tasks in `gate-<key>/`, keyed by the gate's own settings
  (other gate settings re-gate without retraining), then `retrain.md` and `retrain.png`
  (`report.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.export.pipeline import ExportResult
from trainer.gate import GateReport
from trainer.retrain import preferences, stages
from trainer.retrain.preferences import (
    DEFAULT_MIN_PAIRS,
    ROUND_SAMPLES,
    active_preferences,
    round_settings,
)
from trainer.retrain.stages import build_data
from trainer.retrain.state import RetrainError, RetrainState, say, settings_key
from trainer.train.config import TrainConfig
from trainer.train.loop import TrainResult

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.events import Task
    from agent.preferences import Preference
    from trainer.gate import BackendFactory

DEFAULT_MIN_ROWS = 100

__all__ = [
    "DEFAULT_MIN_PAIRS",
    "DEFAULT_MIN_ROWS",
    "RetrainError",
    "RetrainResult",
    "build_data",
    "retrain",
]


@dataclass(frozen=True)
class RetrainResult:
    directory: Path
    data_dir: Path
    train: TrainResult
    export: ExportResult
    gate: GateReport
    report_md: Path
    report_png: Path


def retrain_settings(
    cfg: TrainConfig,
    sessions: Sequence[Path],
    *,
    skip_build: bool,
    min_rows: int,
    seed_samples: int,
    seed_limit: int | None,
    seed_teacher: str | None = None,
    quant: str,
    lora_only: bool,
    preference_round: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings that define a retrain's model: its directory is named by their hash."""
    # Left out when off, so the retrains started before the option keep their directories.
    exclude = {"out_dir"} if cfg.preferences else {"out_dir", "preferences"}
    train = cfg.model_dump(mode="json", exclude=exclude)
    train["data_dir"] = str(cfg.data_dir.resolve())
    out: dict[str, Any] = {"train": train, "skip_build": skip_build}
    if not skip_build:
        out["sessions"] = [str(Path(s).resolve()) for s in sessions]
        if preference_round is not None:
            out["preference_round"] = preference_round
        elif cfg.method != "rlef":
            out["seed"] = {"min_rows": min_rows, "samples": seed_samples, "limit": seed_limit}
            if seed_teacher:
                out["seed"]["teacher"] = seed_teacher
    out["export"] = {"quant": quant, "lora_only": lora_only}
    return out


def retrain(
    settings: Settings,
    cfg: TrainConfig,
    *,
    sessions: Sequence[Path],
    quant: str = "Q4_K_M",
    lora_only: bool = False,
    gate_limit: int | None = None,
    tasks: Sequence[Task] | None = None,
    max_turns: int | None = None,
    workers: int = 1,
    promote: bool = True,
    require_significant: bool = False,
    skip_build: bool = False,
    min_rows: int = DEFAULT_MIN_ROWS,
    seed_samples: int | None = None,
    seed_limit: int | None = None,
    seed_teacher: str | None = None,
    pref_tasks: str = "mbpp",
    min_pairs: int = DEFAULT_MIN_PAIRS,
    fresh: bool = False,
    backend_for: BackendFactory | None = None,
    progress: bool = True,
) -> RetrainResult:
    """The whole loop in its directory, from the first unfinished stage (see the module doc).

    `sessions` that do not exist are left out (a fresh machine has none); `backend_for`
    gives the seed's and the gate's models by name (tests script them). `seed_samples`
    defaults to 1 (the preference round: 4); `pref_tasks` and `min_pairs` are the round's.
    """
    if seed_samples is None:
        seed_samples = ROUND_SAMPLES if cfg.preferences else 1
    prefs: list[Preference] = []
    round_key = None
    if cfg.preferences and not skip_build:
        if seed_teacher:
            raise RetrainError(
                "--teacher seeds with another model, but the --preferences round samples the "
                "model being retrained (online DPO); drop --teacher"
            )
        prefs = active_preferences(settings)
        round_key = round_settings(prefs, tasks=pref_tasks, samples=seed_samples, limit=seed_limit)
    key_settings = retrain_settings(
        cfg,
        sessions,
        skip_build=skip_build,
        min_rows=min_rows,
        seed_samples=seed_samples,
        seed_limit=seed_limit,
        seed_teacher=seed_teacher,
        quant=quant,
        lora_only=lora_only,
        preference_round=round_key,
    )
    directory = cfg.out_dir / f"retrain-{settings_key(key_settings)}"
    state = RetrainState.open(directory, key_settings, fresh=fresh)
    sources = [Path(s) for s in sessions if Path(s).exists()]
    if round_key is not None:
        sources += preferences.sample(
            state,
            settings,
            cfg,
            prefs,
            source=pref_tasks,
            samples=seed_samples,
            limit=seed_limit,
            backend_for=backend_for,
            progress=progress,
        )
    elif not skip_build and cfg.method != "rlef":
        sources += stages.seed(
            state,
            settings,
            cfg,
            sources,
            min_rows=min_rows,
            samples=seed_samples,
            limit=seed_limit,
            teacher=seed_teacher,
            backend_for=backend_for,
            progress=progress,
        )
    stages.build(state, cfg, sources, skip=skip_build, progress=progress)
    notes: list[str] = []
    if cfg.preferences:
        notes = preferences.pairs(state, cfg, prefs, min_pairs=min_pairs)
    train = stages.train(state, settings, cfg, progress=progress)
    exported = stages.export(
        state, settings, train.run_dir, quant=quant, lora_only=lora_only, progress=progress
    )
    report, md, png = stages.gate(
        state,
        settings,
        cfg,
        train,
        exported,
        tasks=tasks,
        gate_limit=gate_limit,
        max_turns=max_turns,
        workers=workers,
        promote=promote,
        require_significant=require_significant,
        backend_for=backend_for,
        progress=progress,
        notes=notes,
    )
    if not state.ran:
        say(f"every stage had finished in {directory}; --fresh starts it over")
    return RetrainResult(directory, cfg.data_dir, train, exported, report, md, png)
