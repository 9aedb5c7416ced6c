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
- seed (`plans.SeedPlan`): when the sessions give fewer than `min_rows` train rows of the
  method, the model being retrained (or the plan's `teacher`, strong-to-weak as AutoIF
  does) plays MBPP train tasks (`trainer.data.seed`) into `sessions/` there,
  resumable by its progress file in `seed/`;
- build: `fixloop data build` of the sessions and the seeded ones into `cfg.data_dir`
  (its manifest hash is recorded, and checked before training);
- train: `run_training` into `train/<ts>-<method>/`; an interrupted run continues from
  its last checkpoint;
- export: GGUF, registered inactive (an export that registered before an interruption
  is kept);
- gate (`plans.GatePlan`): both models on held-out tasks in `gate-<key>/`, keyed by the
  gate's own settings (others re-gate without retraining), then `retrain.md` and `retrain.png`
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
from trainer.retrain.plans import DEFAULT_MIN_PAIRS, DEFAULT_MIN_ROWS, GatePlan, SeedPlan
from trainer.retrain.preferences import active_preferences, round_settings
from trainer.retrain.stages import build_data
from trainer.retrain.state import RetrainError, RetrainState, say, settings_key
from trainer.train.config import TrainConfig
from trainer.train.loop import TrainResult

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.preferences import Preference
    from trainer.gate import BackendFactory

__all__ = [
    "DEFAULT_MIN_PAIRS",
    "DEFAULT_MIN_ROWS",
    "GatePlan",
    "RetrainError",
    "RetrainResult",
    "SeedPlan",
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
    seed: SeedPlan,
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
            samples = seed.samples_for(preferences=False)
            out["seed"] = {"min_rows": seed.min_rows, "samples": samples, "limit": seed.limit}
            if seed.teacher:
                out["seed"]["teacher"] = seed.teacher
    out["export"] = {"quant": quant, "lora_only": lora_only}
    return out


def retrain(
    settings: Settings,
    cfg: TrainConfig,
    *,
    sessions: Sequence[Path],
    seed: SeedPlan = SeedPlan(),
    gate: GatePlan = GatePlan(),
    quant: str = "Q4_K_M",
    lora_only: bool = False,
    skip_build: bool = False,
    fresh: bool = False,
    backend_for: BackendFactory | None = None,
    progress: bool = True,
) -> RetrainResult:
    """The whole loop in its directory, from the first unfinished stage (see the module doc).

    `sessions` that do not exist are left out (a fresh machine has none); `backend_for`
    gives the seed's and the gate's models by name (tests script them).
    """
    samples = seed.samples_for(cfg.preferences)
    prefs: list[Preference] = []
    round_key = None
    if cfg.preferences and not skip_build:
        if seed.teacher:
            raise RetrainError(
                "--teacher seeds with another model, but the --preferences round samples the "
                "model being retrained (online DPO); drop --teacher"
            )
        prefs = active_preferences(settings)
        round_key = round_settings(prefs, tasks=seed.pref_tasks, samples=samples, limit=seed.limit)
    key_settings = retrain_settings(
        cfg,
        sessions,
        skip_build=skip_build,
        seed=seed,
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
            source=seed.pref_tasks,
            samples=samples,
            limit=seed.limit,
            backend_for=backend_for,
            progress=progress,
        )
    elif not skip_build and cfg.method != "rlef":
        sources += stages.seed(
            state,
            settings,
            cfg,
            sources,
            min_rows=seed.min_rows,
            samples=samples,
            limit=seed.limit,
            teacher=seed.teacher,
            backend_for=backend_for,
            progress=progress,
        )
    stages.build(state, cfg, sources, skip=skip_build, progress=progress)
    notes: list[str] = []
    if cfg.preferences:
        notes = preferences.pairs(state, cfg, prefs, min_pairs=seed.min_pairs)
    if cfg.preferences and not prefs:  # --skip-build: the gate still measures compliance
        prefs = active_preferences(settings)
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
        gate,
        backend_for=backend_for,
        progress=progress,
        notes=notes,
        preferences=prefs,
    )
    if not state.ran:
        say(f"every stage had finished in {directory}; --fresh starts it over")
    return RetrainResult(directory, cfg.data_dir, train, exported, report, md, png)
