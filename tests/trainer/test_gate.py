"""The promotion gate, through the real eval harness and sandbox on MBPP validation tasks.

The models are tiny task-aware backends: each answers a task with MBPP's reference
solution when it "knows" the task and with a broken program otherwise, so their eval
outcomes differ in a known way and the gate's real decision logic can be checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.events import Task
from agent.models import ModelSpec, Registry
from tests.trainer.tiny import OracleBackend, mbpp_solutions
from trainer.gate import MetricComparison, decide, gate_tasks, paired_bootstrap_ci, run_gate

N_TASKS = 6


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    from evals.suites import load_mbpp

    tasks: list[Task] = load_mbpp("validation")[:N_TASKS]
    solutions = mbpp_solutions(tasks)
    texts = [t.text for t in tasks]
    settings = Settings(
        model="current",
        data_dir=tmp_path / "data",
        sessions_dir=tmp_path / "sessions",
        cache_dir=tmp_path / "cache",
        max_turns=2,
    )
    reg = Registry(settings.data_dir)
    dummy = tmp_path / "dummy.gguf"
    dummy.write_bytes(b"GGUF")
    for name in ("current", "better", "worse"):
        reg.add(
            ModelSpec(
                name=name,
                description=name,
                filename=dummy.name,
                sha256="0" * 64,
                size=4,
                path=dummy,
                kind="trained",
            )
        )
    knows = {"current": set(texts[:3]), "better": set(texts), "worse": set()}
    backends = {n: OracleBackend(n, solutions, k) for n, k in knows.items()}
    return {"tasks": tasks, "settings": settings, "registry": reg, "backends": backends}


def test_gate_promotes_a_better_model_and_refuses_a_worse_one(world: dict[str, Any]) -> None:
    reg: Registry = world["registry"]
    common = {
        "settings": world["settings"],
        "tasks": world["tasks"],
        "current": "current",
        "backend_for": world["backends"].get,
        "progress": False,
    }

    worse = run_gate("worse", **common)
    assert not worse.report.promoted
    assert reg.active() is None
    assert any("worse on pass@1 beyond noise" in r for r in worse.report.reasons)
    p1 = worse.report.metrics[0]
    assert (p1.current_rate, p1.candidate_rate, p1.diff) == (0.5, 0.0, -0.5)
    assert p1.ci95[1] < 0 and sorted(p1.only_current) == sorted(
        t.task_id for t in world["tasks"][:3]
    )
    assert reg.get("worse").lineage["gate"]["promoted"] is False  # kept, inactive

    better = run_gate("better", **common)
    rep = better.report
    assert rep.promoted and reg.active() == "better"
    assert [m.metric for m in rep.metrics] == ["pass@1", "pass within 2 turns"]
    assert all(m.diff == 0.5 and m.ci95[0] > 0 for m in rep.metrics)
    assert rep.tasks == N_TASKS and rep.suites == {"mbpp": N_TASKS}
    md = (Path(rep.out_dir) / "gate.md").read_text()
    assert "PROMOTED" in md and "| pass@1 | 3/6 50.0%" in md
    gained = ", ".join(sorted(t.task_id for t in world["tasks"][3:]))
    assert f"- pass@1: gained {gained}; lost none" in md  # what changed hands, by task
    assert reg.get("better").lineage["gate"]["promoted"] is True
    # Evaluation episodes were logged as real sessions.
    assert len(list(world["settings"].sessions_dir.rglob("*.jsonl"))) >= 3 * N_TASKS


def test_a_later_gate_reads_the_current_models_episodes_back(world: dict[str, Any]) -> None:
    """The current model is evaluated once: a second candidate's gate reads its episodes
    back, unless its weights, the settings or `reuse` say otherwise."""
    current = world["backends"]["current"]
    common = {
        "settings": world["settings"],
        "tasks": world["tasks"],
        "current": "current",
        "backend_for": world["backends"].get,
        "progress": False,
        "promote": False,
    }
    run_gate("worse", **common)
    first = current.calls
    assert first >= N_TASKS

    result = run_gate("better", **common)
    assert current.calls == first  # not one reply generated again
    assert world["backends"]["better"].calls >= N_TASKS  # the candidate's episodes ran
    assert result.report.metrics[0].current_rate == 0.5  # the same verdicts, read back
    notes = [r for r in result.report.reasons if "read back" in r]
    assert notes == [
        f"note: {N_TASKS} of current's {N_TASKS} episodes were read back from an earlier "
        "gate with the same weights, settings and code (--no-reuse runs them again)"
    ]

    run_gate("better", **common, max_turns=1)  # another turn budget: other episodes
    assert current.calls > first
    again = current.calls
    run_gate("better", **common, reuse=False)
    assert current.calls > again

    reg: Registry = world["registry"]
    spec = reg.get("current")
    reg.add(spec.model_copy(update={"sha256": "1" * 64}), overwrite=True)  # new weights
    before = current.calls
    result = run_gate("better", **common)
    assert current.calls > before
    assert not any("current's" in r for r in result.report.reasons)


def test_a_candidate_better_than_a_model_not_in_use_is_not_promoted(
    world: dict[str, Any],
) -> None:
    """`fixloop retrain --base qwen2.5-coder-0.5b` while the 1.5B is in use: the candidate is
    compared with its base; beating it does not make it replace the model in use."""
    reg: Registry = world["registry"]
    result = run_gate(
        "better",
        settings=world["settings"],
        tasks=world["tasks"],
        current="worse",  # the base it was trained from; "current" is in use
        backend_for=world["backends"].get,
        progress=False,
    )
    assert not result.report.promoted and reg.active() is None
    assert result.report.current == "worse"
    assert any("the model in use is current" in r for r in result.report.reasons)


def test_gate_refuses_a_model_that_is_only_as_good(world: dict[str, Any]) -> None:
    world["backends"]["better"].knows = set(world["backends"]["current"].knows)
    result = run_gate(
        "better",
        settings=world["settings"],
        tasks=world["tasks"],
        current="current",
        backend_for=world["backends"].get,
        progress=False,
    )
    assert not result.report.promoted
    assert any(r.startswith("no gain") for r in result.report.reasons)
    assert world["registry"].active() is None


def test_a_pooled_gain_does_not_buy_a_loss_on_one_suite(world: dict[str, Any]) -> None:
    """The gold control's shape: better on one suite, worse beyond noise on the other. Pooled
    it is a gain (+2 of 8 tasks, within noise); suite b's loss (3 of 3) refuses it."""
    from evals.suites import load_mbpp

    tasks = load_mbpp("validation")[:8]
    suite_a = [t.model_copy(update={"suite": "a"}) for t in tasks[:5]]
    suite_b = [t.model_copy(update={"suite": "b"}) for t in tasks[5:]]
    solutions = mbpp_solutions(tasks)
    backends = {
        "current": OracleBackend("current", solutions, {t.text for t in suite_b}),
        "better": OracleBackend("better", solutions, {t.text for t in suite_a}),
    }
    result = run_gate(
        "better",
        settings=world["settings"],
        tasks=suite_a + suite_b,
        current="current",
        backend_for=backends.get,
        progress=False,
    )
    rep = result.report
    assert rep.suites == {"a": 5, "b": 3}
    pooled = {m.metric: m for m in rep.metrics if not m.guard}
    guards = {m.metric: m for m in rep.metrics if m.guard}
    assert list(pooled) == ["pass@1", "pass within 2 turns"]
    assert pooled["pass@1"].diff == 0.25 and not pooled["pass@1"].worse_beyond_noise
    assert list(guards) == [
        "a: pass@1",
        "a: pass within 2 turns",
        "b: pass@1",
        "b: pass within 2 turns",
    ]
    assert guards["a: pass@1"].diff == 1.0 and guards["b: pass@1"].diff == -1.0
    assert guards["b: pass@1"].ci95 == (-1.0, -1.0)
    b_cur, b_cand = guards["b: pass@1"].current_ci95, guards["b: pass@1"].candidate_ci95
    assert b_cur[0] > 0.4 and b_cur[1] == 1.0 and b_cand[0] < 1e-9 and b_cand[1] < 0.6  # Wilson
    assert not rep.promoted and world["registry"].active() is None
    assert any(r.startswith("worse on b: pass@1 beyond noise") for r in rep.reasons)
    md = (Path(rep.out_dir) / "gate.md").read_text()
    assert "| b: pass@1 | 3/3 100.0%" in md and "within each suite" in md
    assert md.count("- pass@1: gained") == 1  # flips are listed once, pooled


def test_guards_only_refuse() -> None:
    """A guard's gain is not counted (it is already in the pooled rows); its loss refuses."""
    guard_gain = _metric(0.5, (0.2, 0.8)).model_copy(update={"guard": True})
    ok, reasons = decide([_metric(0.0, (-0.1, 0.1))] * 2 + [guard_gain])
    assert not ok and reasons[0].startswith("no gain")
    guard_loss = _metric(-0.3, (-0.5, -0.1)).model_copy(update={"guard": True})
    ok, reasons = decide([_metric(0.1, (-0.05, 0.2))] * 2 + [guard_loss])
    assert not ok and len(reasons) == 1 and "beyond noise" in reasons[0]


def test_gate_tasks_add_humaneval_per_suite_limit(tmp_path: Path) -> None:
    tasks = gate_tasks(sessions_dir=tmp_path, limit=3, humaneval=True)
    assert [t.suite for t in tasks] == ["mbpp"] * 3 + ["humaneval"] * 3
    assert tasks[3].task_id == "HumanEval/0"
    assert all(t.suite == "mbpp" for t in gate_tasks(sessions_dir=tmp_path, limit=3))


def _metric(diff: float, ci: tuple[float, float]) -> MetricComparison:
    return MetricComparison(
        metric="m",
        current="",
        candidate="",
        current_rate=0.5,
        candidate_rate=0.5 + diff,
        diff=diff,
        ci95=ci,
        mcnemar_p=1.0,
        only_candidate=[],
        only_current=[],
    )


def test_decision_rule() -> None:
    # A small loss within noise on one metric, a gain on the other: promoted.
    ok, reasons = decide([_metric(-0.02, (-0.1, 0.05)), _metric(0.06, (-0.01, 0.12))])
    assert ok and "within noise" in reasons[0]
    # Worse beyond noise on one metric outweighs any gain on the other.
    ok, reasons = decide([_metric(-0.1, (-0.2, -0.01)), _metric(0.3, (0.1, 0.5))])
    assert not ok and "beyond noise" in reasons[0]
    # With require_significant a gain within noise is not enough.
    ok, _ = decide([_metric(0.02, (-0.05, 0.1))] * 2, require_significant=True)
    assert not ok
    ok, _ = decide([_metric(0.2, (0.05, 0.3))] * 2, require_significant=True)
    assert ok


def test_paired_bootstrap_interval() -> None:
    assert paired_bootstrap_ci([0] * 20) == (0.0, 0.0)
    lo, hi = paired_bootstrap_ci([1] * 10 + [0] * 30)
    assert 0.0 < lo < 0.25 < hi < 0.5
    assert paired_bootstrap_ci([1, -1] * 10) == paired_bootstrap_ci([1, -1] * 10)  # seeded
