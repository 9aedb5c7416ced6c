"""`fixloop retrain` as one resumable directory: seeding, stage skipping, changed settings.

Seeding, the data build, the gate and the report are real (eval harness, sandbox, MBPP
tasks), the models are task-aware scripted backends (tests/trainer/tiny.py); training and
export are fakes that write what the real ones would, so that the test can count them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.events import Task
from agent.models import ModelSpec, Registry
from tests.trainer.tiny import OracleBackend, mbpp_solutions
from trainer.export.pipeline import ExportError, ExportResult
from trainer.retrain import GatePlan, RetrainError, SeedPlan, retrain
from trainer.retrain.state import STATE
from trainer.train import rundir
from trainer.train.config import TrainConfig
from trainer.train.data import load_examples
from trainer.train.loop import TrainResult

N_SEED = 3


@pytest.fixture(scope="module")
def mbpp() -> dict[str, Any]:
    from evals.suites import load_mbpp
    from trainer.data.seed import seed_tasks

    gate: list[Task] = load_mbpp("validation")[:2]
    train = seed_tasks("mbpp", "train", limit=N_SEED)
    return {"gate": gate, "train": train, "solutions": mbpp_solutions([*gate, *train])}


def _backend_for(mbpp: dict[str, Any]) -> Any:
    """The current model solves the train tasks only; any candidate solves every task."""
    train = {t.text for t in mbpp["train"]}

    def backend_for(name: str) -> OracleBackend:
        knows = train if name == "current" else set(mbpp["solutions"])
        return OracleBackend(name, mbpp["solutions"], knows)

    return backend_for


@pytest.fixture(scope="module")
def user_sessions(tmp_path_factory: pytest.TempPathFactory, mbpp: dict[str, Any]) -> Path:
    """A sessions dir with a few passing train episodes, as a user's would have."""
    from trainer.data.seed import seed_sessions

    root = tmp_path_factory.mktemp("user")
    settings = Settings(data_dir=root, sessions_dir=root / "sessions", cache_dir=root, max_turns=2)
    seed_sessions(
        mbpp["train"],
        settings,
        out_dir=root / "progress",
        suite_name="mbpp-train",
        backend=_backend_for(mbpp)("current"),
        progress=False,
    )
    return root / "sessions"


@dataclass
class World:
    settings: Settings
    cfg: TrainConfig
    mbpp: dict[str, Any]
    calls: list[tuple[str, Any]] = field(default_factory=list)
    trained_rows: list[list[dict[str, Any]]] = field(default_factory=list)  # per training call
    fail_export: int = 0  # raise in this many export calls
    interrupt_training: int = 0  # stop this many training calls after their config

    def retrain(self, seed: SeedPlan | None = None, **kwargs: Any) -> Any:
        """`retrain` on this world: its sessions, its gate tasks, its scripted models."""
        options: dict[str, Any] = {
            "sessions": [self.settings.sessions_dir],
            "seed": seed or SeedPlan(min_rows=1, limit=N_SEED),
            "gate": GatePlan(tasks=self.mbpp["gate"]),
            "backend_for": _backend_for(self.mbpp),
            "progress": False,
            **kwargs,
        }
        return retrain(self.settings, options.pop("cfg", self.cfg), **options)

    def count(self, what: str) -> int:
        return sum(name == what for name, _ in self.calls)


@pytest.fixture
def world(tmp_path: Path, mbpp: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> World:
    import trainer.retrain.stages as stages

    settings = Settings(
        model="current",
        data_dir=tmp_path / "data",
        sessions_dir=tmp_path / "no-sessions-yet",
        cache_dir=tmp_path / "cache",
        max_turns=2,
    )
    dummy = tmp_path / "dummy.gguf"
    dummy.write_bytes(b"GGUF")
    registry = Registry(settings.data_dir)
    spec = {"filename": dummy.name, "sha256": "0" * 64, "size": 4, "path": dummy}
    registry.add(ModelSpec(name="current", description="in use", kind="trained", **spec))
    cfg = TrainConfig(
        method="sft", base="current", data_dir=tmp_path / "datasets", out_dir=tmp_path / "runs"
    )
    w = World(settings, cfg, mbpp)

    def fake_training(
        cfg: TrainConfig | None, *, resume: Path | None = None, **_: Any
    ) -> TrainResult:
        w.calls.append(("train", resume))
        if resume is not None:
            run_dir = resume
            cfg = TrainConfig.model_validate(rundir.read_json(resume / rundir.CONFIG)["config"])
        else:
            assert cfg is not None
            run_dir = rundir.new_run_dir(cfg.out_dir, cfg.method)
            run_dir.mkdir(parents=True)
            rundir.write_json(run_dir / rundir.CONFIG, {"config": cfg.model_dump(mode="json")})
        rows = load_examples(  # the built data, as the real training reads it
            cfg.data_dir, cfg.method, None, "train", preferences=cfg.preferences
        )
        w.trained_rows.append(rows)
        if w.interrupt_training:
            w.interrupt_training -= 1
            raise KeyboardInterrupt
        metrics = {
            "method": cfg.method,
            "steps": 2,
            "examples": len(rows),
            "first_loss": 2.0,
            "final_loss": 1.0,
            "tokens_per_s": 10.0,
        }
        rundir.write_history(run_dir, [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
        rundir.write_json(run_dir / rundir.METRICS, metrics)
        return TrainResult(run_dir, metrics)

    def fake_export(run_dir: Path, *, data_dir: Path, **_: Any) -> ExportResult:
        w.calls.append(("export", run_dir))
        if w.fail_export:
            w.fail_export -= 1
            raise ExportError("the converter died (simulated interruption)")
        name = f"candidate-{run_dir.parent.parent.name}-{run_dir.name}"
        spec_out = Registry(data_dir).add(
            ModelSpec(name=name, description="fine-tune", kind="trained", **spec)
        )
        return ExportResult(spec_out, dummy, None, None)

    monkeypatch.setattr(stages, "run_training", fake_training)
    monkeypatch.setattr(stages, "export_run", fake_export)
    return w


def test_retrain_interrupted_after_training_resumes_at_export(
    world: World, user_sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.settings = world.settings.model_copy(update={"sessions_dir": user_sessions})
    world.fail_export = 1
    with pytest.raises(ExportError, match="simulated"):
        world.retrain()
    assert (world.count("train"), world.count("export")) == (1, 1)
    [run_dir] = [arg for name, arg in world.calls if name == "export"]
    capsys.readouterr()

    result = world.retrain()  # the same call again
    err = capsys.readouterr().err
    assert world.count("train") == 1  # not trained again
    assert world.count("export") == 2
    assert result.train.run_dir == run_dir and result.train.metrics["steps"] == 2
    assert f"train already finished ({run_dir})" in err
    assert "resuming at export" in err
    assert result.export.name == f"candidate-{result.directory.name}-{run_dir.name}"
    assert result.gate.promoted and Registry(world.settings.data_dir).active() == result.export.name
    assert result.report_md.parent == result.directory == run_dir.parent.parent
    assert "| pass@1 | 0/2 0.0%" in result.report_md.read_text()
    assert result.report_png.read_bytes()[:4] == b"\x89PNG"
    state = json.loads((result.directory / STATE).read_text())
    assert list(state["stages"]) == ["seed", "build", "train", "export", "gate"]
    assert not state["stages"]["seed"]["seeded"]  # the user's sessions were enough

    again = world.retrain()  # finished: every stage is skipped
    assert (world.count("train"), world.count("export")) == (1, 2)
    assert again.report_md == result.report_md and again.gate.promoted
    assert "every stage had finished" in capsys.readouterr().err


def test_interrupted_training_continues_its_run(world: World, user_sessions: Path) -> None:
    world.settings = world.settings.model_copy(update={"sessions_dir": user_sessions})
    world.interrupt_training = 1
    with pytest.raises(KeyboardInterrupt):
        world.retrain()
    [(_, first)] = world.calls
    assert first is None
    result = world.retrain()
    assert world.calls[1] == ("train", result.train.run_dir)  # resumed that run directory
    assert world.count("train") == 2 and len(list(result.train.run_dir.parent.iterdir())) == 1


def test_retrain_seeds_only_when_the_sessions_are_too_few(
    world: World, user_sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.data.episodes import find_logs

    result = world.retrain()  # no sessions at all: a fresh machine
    err = capsys.readouterr().err
    seeded = result.directory / "sessions"
    assert len(find_logs(seeded)) == N_SEED
    assert f"seeding {N_SEED} MBPP train tasks x 1 with current" in err
    manifest = json.loads((world.cfg.data_dir / "manifest.json").read_text())
    assert len(manifest["sessions"]) == N_SEED
    assert {s["purpose"] for s in manifest["sessions"]} == {"seed"}
    assert result.train.metrics["examples"] > 0

    enough = world.settings.model_copy(update={"sessions_dir": user_sessions})
    world.settings = enough
    other = world.retrain()  # other sources: another directory, and no seeding
    assert other.directory != result.directory
    assert not (other.directory / "sessions").exists()
    assert "not needed" in capsys.readouterr().err
    too_many = world.retrain(seed=SeedPlan(min_rows=10_000, limit=1))
    assert len(find_logs(too_many.directory / "sessions")) == 1


def test_changed_settings_do_not_reuse_stages(
    world: World, user_sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.settings = world.settings.model_copy(update={"sessions_dir": user_sessions})
    first = world.retrain()
    second = world.retrain(cfg=world.cfg.model_copy(update={"lr": 1e-3}))
    assert second.directory != first.directory and world.count("train") == 2
    assert "already finished" not in capsys.readouterr().err
    assert world.retrain(quant="Q8_0").directory not in (first.directory, second.directory)
    assert world.count("train") == 3

    # Other gate settings re-gate the same model; nothing is trained or exported again.
    regated = world.retrain(gate=GatePlan(tasks=world.mbpp["gate"][:1]))
    assert regated.directory == first.directory and world.count("train") == 3
    assert "gating again" in capsys.readouterr().err
    assert regated.gate.tasks == 1 and regated.gate.current == "current"

    # The same settings with fresh=True start over.
    fresh = world.retrain(fresh=True)
    assert fresh.directory == first.directory and world.count("train") == 4
    assert fresh.train.run_dir != first.train.run_dir

    # A directory whose state has other settings is refused, naming the fix.
    state = json.loads((first.directory / STATE).read_text())
    state["key"], state["settings"]["skip_build"] = "0" * 12, True
    (first.directory / STATE).write_text(json.dumps(state))
    with pytest.raises(RetrainError, match=r"other settings \(skip_build\).*--fresh"):
        world.retrain()


def test_data_changed_under_an_unfinished_retrain_is_refused(
    world: World, user_sessions: Path
) -> None:
    world.settings = world.settings.model_copy(update={"sessions_dir": user_sessions})
    world.interrupt_training = 1
    with pytest.raises(KeyboardInterrupt):
        world.retrain()
    manifest = world.cfg.data_dir / "manifest.json"
    manifest.write_text(manifest.read_text() + " ")
    with pytest.raises(RetrainError, match=r"changed since this retrain's build.*--fresh"):
        world.retrain()
    assert world.retrain(fresh=True).train.metrics["steps"] == 2


def test_a_teacher_seeds_for_the_model_being_retrained(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Strong-to-weak: --teacher plays the seed tasks; the base is still what is trained."""
    own = world.retrain()
    taught = world.retrain(seed=SeedPlan(min_rows=1, limit=N_SEED, teacher="teacher"))
    assert taught.directory != own.directory  # another seed, another retrain
    assert f"seeding {N_SEED} MBPP train tasks x 1 with teacher" in capsys.readouterr().err
    logs = [
        json.loads(p.read_text().splitlines()[0])
        for p in (taught.directory / "sessions").rglob("*.jsonl")
    ]
    assert logs and all("teacher" in json.dumps(h) for h in logs)
    assert json.loads((taught.train.run_dir / "config.json").read_text())["config"]["base"] == (
        world.cfg.base
    )


def test_the_gate_compares_the_candidate_with_its_base_not_the_model_in_use(
    world: World, user_sessions: Path, tmp_path: Path
) -> None:
    """`fixloop retrain --base qwen2.5-coder-0.5b` gated the candidate against the 1.5B in
    use; the before/after is against the base, and a candidate that beats its base does not
    replace a different model in use."""
    world.settings = world.settings.model_copy(update={"sessions_dir": user_sessions})
    registry = Registry(world.settings.data_dir)
    dummy = tmp_path / "big.gguf"
    dummy.write_bytes(b"GGUF")
    spec = {"filename": dummy.name, "sha256": "0" * 64, "size": 4, "path": dummy}
    registry.add(ModelSpec(name="big", description="in use", kind="trained", **spec))
    registry.set_active("big")
    result = world.retrain()
    assert result.gate.current == "current"  # the base (TrainConfig.base), not "big"
    assert not result.gate.promoted and registry.active() == "big"
    assert any("the model in use is big" in r for r in result.gate.reasons)
