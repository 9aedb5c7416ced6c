"""`fixloop retrain --method dpo --preferences`: the online preference round (issue 16).

The sampled model is scripted per task (its K samples differ in whether they pass the tests
and whether they follow the preference); the tests and the preference's verifier really run
in the sandbox, the data build and the gate are real, and training and export are the fakes
of test_retrain.py, which load the rows exactly as the real training does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.backends.base import StreamChunk
from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import ChatMessage, SamplingParams, Task
from agent.preferences import PreferenceStore
from agent.preferences.reference import reference
from agent.session import AgentSession
from tests.agent.test_preferences_loop import COMPLIES, PREF, TASK, VIOLATES
from tests.trainer import test_retrain
from tests.trainer.test_data_pref_dpo import ALSO_COMPLIES, WRONG
from tests.trainer.test_retrain import World, _backend_for
from tests.trainer.tiny import OracleBackend
from trainer.retrain import RetrainError, SeedPlan
from trainer.retrain.state import STATE
from trainer.train.config import TrainConfig

mbpp, world = test_retrain.mbpp, test_retrain.world  # the same fixtures: real data, fake training


def fenced(code: str) -> str:
    return f"```python\n{code}```\n"


NAME_TASK = Task(
    text="Write a function file_name(p) that returns the last part of a slash-separated path.",
    tests=["assert file_name('a/b.txt') == 'b.txt'", "assert file_name('c') == 'c'"],
)
NAME_VIOLATES = [  # different enough not to be near-duplicate pairs (the build drops those)
    fenced("import os\n\ndef file_name(p):\n    return os.path.basename(p)\n"),
    fenced(
        "import os.path\n\ndef file_name(p):\n    head, tail = os.path.split(p)\n    return tail\n"
    ),
    fenced("from os import path as osp\n\ndef file_name(p):\n    return osp.normpath(p)[-5:]\n"),
]
NAME_COMPLIES = [
    fenced(
        "from pathlib import PurePosixPath\n\ndef file_name(p):\n    return PurePosixPath(p).name\n"
    ),
    fenced("def file_name(p):\n    return p.split('/')[-1]\n"),
    fenced("def file_name(p):\n    i = p.rfind('/')\n    return p[i + 1 :]\n"),
]
STEM_TASK = Task(
    text="Write a function stem(p) that returns a file name without its extension.",
    tests=["assert stem('a.txt') == 'a'", "assert stem('b.tar') == 'b'"],
)
STEM_OK = fenced("def stem(p):\n    return p.rsplit('.', 1)[0]\n")
STEM_WRONG = fenced("import os\n\ndef stem(p):\n    return os.path.splitext(p)[1]\n")  # fails

# K = 6 samples per task, in order. join_path: 2 distinct compliant x 1 violating = 2 pairs
# (the failing WRONG pairs with nothing); file_name: 3 x 3, capped at 2 x 2 = 4 pairs;
# stem: all compliant, or failing: no pair. 6 pairs from 2 prompts.
SAMPLES = {
    TASK.text: [VIOLATES, COMPLIES, ALSO_COMPLIES, WRONG, VIOLATES, COMPLIES],
    NAME_TASK.text: [*NAME_VIOLATES, *NAME_COMPLIES],
    STEM_TASK.text: [STEM_OK, STEM_WRONG, STEM_OK, STEM_OK, STEM_OK, STEM_OK],
}


class SampledModel(OracleBackend):
    """The current model: the round's tasks get their scripted samples in turn; any other
    task (the gate's) goes to test_retrain's oracle."""

    def __init__(self, samples: dict[str, list[str]], other: Any) -> None:
        super().__init__("current", {}, set())  # its identity and token counts
        self.samples = {text: list(replies) for text, replies in samples.items()}
        self.other = other
        self.prompts: list[str] = []

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        first_user = next(m.content for m in messages if m.role == "user")
        text = next((t for t in self.samples if first_user.startswith(t)), None)
        if text is None:
            yield from self.other.stream_chat(messages, params, response_format)
            return
        assert params.temperature == 0.8  # the round samples at T 0.8
        self.prompts.append(first_user)
        reply = self.samples[text].pop(0)
        yield StreamChunk(text=reply)
        yield StreamChunk(text="", finish_reason="stop", prompt_tokens=1, completion_tokens=1)


def _user_tasks(settings: Settings, tasks: list[Task]) -> None:
    """The user's own logged tasks, solved before any preference existed (so no pairs)."""
    for task in tasks:
        reply = {TASK.text: COMPLIES, NAME_TASK.text: NAME_COMPLIES[1]}.get(task.text, STEM_OK)
        session = AgentSession(task, ScriptedBackend([reply]), settings, purpose="solve")
        list(session.start())


@pytest.fixture
def round_world(world: World, tmp_path: Path) -> tuple[World, SampledModel]:
    world.settings = world.settings.model_copy(update={"sessions_dir": tmp_path / "mine"})
    _user_tasks(world.settings, [TASK, NAME_TASK, STEM_TASK])
    PreferenceStore.for_data_dir(world.settings.data_dir).add(PREF.text, PREF.version())
    world.cfg = world.cfg.model_copy(update={"method": "dpo", "preferences": True})
    model = SampledModel(SAMPLES, _backend_for(world.mbpp)("current"))
    oracle = _backend_for(world.mbpp)

    def backend_for(name: str) -> Any:
        return model if name == "current" else oracle(name)

    world.backend_for = backend_for  # type: ignore[attr-defined]
    return world, model


def _run(world: World, min_pairs: int = 8) -> Any:
    """The round on the user's own tasks, 6 samples each."""
    seed = SeedPlan(
        min_rows=1, samples=6, limit=test_retrain.N_SEED, pref_tasks="sessions", min_pairs=min_pairs
    )
    return world.retrain(seed=seed, backend_for=world.backend_for)  # type: ignore[attr-defined]


def test_the_round_samples_pairs_and_trains_dpo_on_them(
    round_world: tuple[World, SampledModel], capsys: pytest.CaptureFixture[str]
) -> None:
    world, model = round_world
    result = _run(world, min_pairs=6)
    err = capsys.readouterr().err
    assert "sampling 3 of your tasks x 6 at T 0.8 with current" in err
    assert len(model.prompts) == 18  # 3 tasks x K = 6, one attempt each
    assert all("Also follow these standing preferences" in p for p in model.prompts)

    # The pairs are exactly the expected ones, at the same prompt, and nothing else.
    rows = [
        json.loads(line)
        for line in (world.cfg.data_dir / "pref_dpo.jsonl").read_text().splitlines()
    ]
    by_task: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        assert row["preference"] == PREF.text and row["split"] == "train"
        prompt = row["prompt"][-1]["content"]
        by_task.setdefault(prompt.split("\n")[0], []).append(
            (row["chosen"][0]["content"], row["rejected"][0]["content"])
        )
    assert sorted(len(v) for v in by_task.values()) == [2, 4]
    assert sorted(by_task[TASK.text]) == sorted(  # as `fixloop data build` fences them
        (c.rstrip("\n"), VIOLATES.rstrip("\n")) for c in (COMPLIES, ALSO_COMPLIES)
    )
    names = by_task[NAME_TASK.text]  # 3 x 3 candidates, at most 2 x 2 pairs
    chosen, rejected = {c for c, _ in names}, {r for _, r in names}
    assert len(chosen) == len(rejected) == 2 and len(set(names)) == 4
    assert chosen <= {s.rstrip("\n") for s in NAME_COMPLIES}
    assert rejected <= {s.rstrip("\n") for s in NAME_VIOLATES}

    # ... and they are what DPO trained on (the training reads pref_dpo.jsonl).
    [trained] = world.trained_rows
    assert len(trained) == 6
    assert sorted((r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in trained) == (
        sorted(pair for pairs in by_task.values() for pair in pairs)
    )
    config = json.loads((result.train.run_dir / "config.json").read_text())["config"]
    assert (config["method"], config["preferences"], config["lora"]) == ("dpo", True, True)

    report = result.report_md.read_text()
    assert "- preference pairs: 6 pairs from 2 prompts" in report
    assert (
        "use-pathlib-not-os-path v1" in report
        and "online round: current sampled 3 tasks x 6 at T 0.8 (18 attempts" in report
    )
    state = json.loads((result.directory / STATE).read_text())
    assert list(state["stages"]) == ["sample", "build", "pairs", "train", "export", "gate"]
    assert state["settings"]["preference_round"]["samples"] == 6
    assert result.gate.promoted
    # the gate measured what the round is for: compliance, beside the pass rates
    follows = [m for m in result.gate.metrics if m.metric == f"follows: {PREF.text}"]
    assert len(follows) == 1 and f"| follows: {PREF.text} |" in report

    again = _run(world, min_pairs=6)  # finished: nothing is sampled or trained again
    assert len(model.prompts) == 18 and len(world.trained_rows) == 1
    assert again.directory == result.directory
    assert "every stage had finished" in capsys.readouterr().err


def test_too_few_pairs_stop_before_training_and_name_the_fix(
    round_world: tuple[World, SampledModel], capsys: pytest.CaptureFixture[str]
) -> None:
    world, model = round_world
    with pytest.raises(RetrainError, match=r"too few preference pairs.*6 in the train split"):
        _run(world)  # --min-pairs 8 by default
    assert world.count("train") == 0
    with pytest.raises(RetrainError, match=r"--seed-samples K.*--pref-tasks sessions.*--min-pairs"):
        _run(world)
    assert len(model.prompts) == 18  # the samples are kept: not drawn again
    capsys.readouterr()
    result = _run(world, min_pairs=6)  # lowering the bar resumes at the pairs stage
    assert "sample already finished" in capsys.readouterr().err
    assert len(model.prompts) == 18 and result.train.metrics["examples"] == 6


def test_no_active_preference_is_refused_before_anything_runs(world: World) -> None:
    cfg = world.cfg.model_copy(update={"method": "dpo", "preferences": True})
    with pytest.raises(
        RetrainError, match=r"no active preferences.*none stored.*fixloop prefs add"
    ):
        world.retrain(cfg=cfg)
    store = PreferenceStore.for_data_dir(world.settings.data_dir)
    store.set_active(store.add(PREF.text, PREF.version()).id, False)
    with pytest.raises(RetrainError, match=r"1 stored, none active.*fixloop prefs enable"):
        world.retrain(cfg=cfg)
    assert not cfg.out_dir.exists() and not world.calls
    off = world.settings.model_copy(update={"preferences": False})
    world.settings = off
    with pytest.raises(RetrainError, match="preferences are switched off"):
        world.retrain(cfg=cfg)
    with pytest.raises(RetrainError, match="drop --teacher"):
        world.retrain(cfg=cfg, seed=SeedPlan(teacher="big"))


def test_a_chosen_program_breaks_no_other_preference(tmp_path: Path) -> None:
    """With two preferences, a program that follows one but breaks the other is never the
    chosen side of a pair (it is still a rejected side for the one it breaks)."""
    from trainer.data.build import BuildOptions, build

    cfg = Settings(data_dir=tmp_path / "data", sessions_dir=tmp_path / "sessions", max_turns=1)
    store = PreferenceStore.for_data_dir(cfg.data_dir)
    docs = reference("docstrings")
    store.add(PREF.text, PREF.version())
    store.add(docs.text, docs.version())
    documented = COMPLIES.replace(
        "def join_path(a, b):\n", 'def join_path(a, b):\n    """Join a and b."""\n'
    )
    for reply in (VIOLATES, COMPLIES, documented):  # breaks both, breaks docstrings, follows both
        list(AgentSession(TASK, ScriptedBackend([reply]), cfg, purpose="solve").start())
    result = build(BuildOptions(sessions=[cfg.sessions_dir], out=tmp_path / "out"))
    rows = [json.loads(line) for line in result.files["pref_dpo"].read_text().splitlines()]
    pairs = sorted(
        (r["preference"], "Join a and b" in r["chosen"][0]["content"], r["rejected"][0]["content"])
        for r in rows
    )
    assert [(p, chosen_documented) for p, chosen_documented, _ in pairs] == [
        (docs.text, True),  # vs COMPLIES (no docstring)
        (docs.text, True),  # vs VIOLATES
        (PREF.text, True),  # vs VIOLATES; COMPLIES is not chosen: it breaks docstrings
    ]


def test_dpo_preferences_reads_the_preference_pairs(tmp_path: Path) -> None:
    from trainer.train.data import DataError, load_examples

    cfg = TrainConfig(method="dpo", preferences=True, data_dir=tmp_path)
    assert cfg.data_file == tmp_path / "pref_dpo.jsonl"
    with pytest.raises(DataError, match=r"no pref_dpo.jsonl in"):
        load_examples(tmp_path, "dpo", preferences=True)
    with pytest.raises(ValueError, match="--preferences trains DPO"):
        TrainConfig(method="sft", preferences=True, data_dir=tmp_path)


@pytest.mark.slow  # a tiny random Llama, two DPO steps on CPU
def test_dpo_trains_on_the_built_preference_pairs(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`fixloop train --method dpo --preferences` (the round's train stage): TRL's DPO on the
    pairs `fixloop data build` made from sessions with a preference active."""
    pytest.importorskip("trl")
    from tests.trainer.tiny import shared_tiny
    from trainer.data.build import BuildOptions, build
    from trainer.train import rundir
    from trainer.train.loop import run_training

    cfg = Settings(data_dir=tmp_path / "data", sessions_dir=tmp_path / "sessions", max_turns=1)
    PreferenceStore.for_data_dir(cfg.data_dir).add(PREF.text, PREF.version())
    for reply in (VIOLATES, COMPLIES, ALSO_COMPLIES):
        list(AgentSession(TASK, ScriptedBackend([reply]), cfg, purpose="solve").start())
    data = tmp_path / "datasets"
    assert build(BuildOptions(sessions=[cfg.sessions_dir], out=data)).rows["pref_dpo"] == 2
    base, _ = shared_tiny(tmp_path_factory.getbasetemp())
    train_cfg = TrainConfig(
        method="dpo",
        preferences=True,
        base=str(base),
        data_dir=data,
        out_dir=tmp_path / "runs",
        max_steps=2,
        batch_size=2,
        lora_r=4,
        max_len=512,
    )
    result = run_training(
        train_cfg, cache_dir=tmp_path / "cache", registry_dir=cfg.data_dir, progress=False
    )
    assert result.metrics["steps"] == 2 and result.metrics["examples"] == 2
    recorded = json.loads((result.run_dir / rundir.DATA).read_text())
    assert recorded["dataset_file"] == str((data / "pref_dpo.jsonl").resolve())
    assert (result.run_dir / rundir.ADAPTER / "adapter_config.json").is_file()
