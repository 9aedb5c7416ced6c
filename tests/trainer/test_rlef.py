"""RLEF on a tiny model: episodes as rollouts, feedback masked, reward that can be learned."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.environment import Environment, FormatProblem, Proposal
from agent.events import Task
from agent.sandbox.result import ExecResult, ExecStatus, TestResult, TestStatus
from tests.trainer.tiny import make_tiny_base

torch = pytest.importorskip("torch")


class ToyEnv(Environment):
    """A task the tiny model can learn: the reply passes when its first character is in
    `wanted`. Everything else is the agent's: prompts, feedback, repair turns."""

    system_prompt = "Answer."

    def __init__(self, wanted: str = "") -> None:
        self.wanted = wanted

    def prompt(self, task: Task) -> str:
        return task.text

    def parse(self, reply: str) -> Proposal:
        if not reply:
            raise FormatProblem("Say something.")
        return Proposal(code=reply)

    def execute(self, proposal: Proposal, task: Task) -> ExecResult:
        ok = bool(self.wanted) and proposal.code[:1] in self.wanted
        status = TestStatus.PASSED if ok else TestStatus.FAILED
        return ExecResult(
            status=ExecStatus.PASSED if ok else ExecStatus.FAILED,
            tests=[TestResult(name="first character", status=status, message="try again")],
        )

    def render_feedback(self, result: ExecResult, proposal: Proposal) -> str:
        return "FEEDBACK: that was wrong"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agent import paths
    from agent.models import builtin_models, ensure_model

    gguf = ensure_model(builtin_models()["smollm2-135m"], paths.default_cache_dir(), progress=False)
    base = make_tiny_base(tmp_path_factory.mktemp("rlef") / "base", gguf)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    return base, model, tok


def test_feedback_turns_are_masked_and_in_the_template(tiny: tuple) -> None:
    from trainer.rlef.rollout import EpisodePlayer

    _base, model, tok = tiny
    torch.manual_seed(0)
    player = EpisodePlayer(ToyEnv(), tok, max_turns=2, max_new_tokens=5, workers=1)
    (rollout,) = player.play(model, [Task(text="Say a word.")])
    assert rollout.turns == 2 and rollout.reward == -1.0 - 0.2 * rollout.format_errors
    assert len(rollout.completion_ids) == len(rollout.logprobs) == len(rollout.env_mask)
    env = [t for t, m in zip(rollout.completion_ids, rollout.env_mask, strict=True) if m == 0]
    assert env and 0 in rollout.env_mask and rollout.env_mask[0] == 1 and rollout.env_mask[-1] == 1
    shown = tok.decode(env)
    assert "FEEDBACK: that was wrong" in shown or "Say something." in shown
    assert "assistant" in shown  # the next assistant header is the environment's, not the model's
    model_part = [t for t, m in zip(rollout.completion_ids, rollout.env_mask, strict=True) if m]
    assert "FEEDBACK" not in tok.decode(model_part)
    assert all(lp == 0.0 for lp, m in zip(rollout.logprobs, rollout.env_mask, strict=True) if not m)
    assert all(lp <= 0.0 for lp in rollout.logprobs)


def test_a_padded_batch_samples_each_episode_as_it_would_alone(tiny: tuple) -> None:
    """Episodes of different lengths share one left-padded generation batch; the log-prob
    recorded for every sampled token is the one the model gives that episode unpadded."""
    from trainer.rlef.rollout import EpisodePlayer

    _base, model, tok = tiny
    torch.manual_seed(1)
    player = EpisodePlayer(ToyEnv(), tok, max_turns=2, max_new_tokens=6, workers=1)
    tasks = [Task(text="Hi."), Task(text="Say one long sentence about the sea and the sky.")]
    rollouts = player.play(model, tasks)
    assert len({len(r.prompt_ids) for r in rollouts}) == 2  # the batch was padded
    for r in rollouts:
        ids = torch.tensor([r.prompt_ids + r.completion_ids])
        with torch.no_grad():
            logps = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
        start = len(r.prompt_ids)
        for k, (token, mask) in enumerate(zip(r.completion_ids, r.env_mask, strict=True)):
            if mask:
                alone = logps[start + k - 1, token].item()
                assert abs(alone - r.logprobs[k]) < 1e-3, (k, alone, r.logprobs[k])


@pytest.mark.slow
def test_grpo_raises_the_mean_reward_on_a_learnable_toy_task(tiny: tuple, tmp_path: Path) -> None:
    """Two-turn episodes (so every failed first reply is followed by masked feedback tokens)
    on a task the tiny model can learn: reply with a token whose first character is one of
    half the characters its own top-16 next tokens start with. Sampling, training and the
    seeds are fixed, so the curve is the same on every run."""
    from transformers import AutoModelForCausalLM

    from agent import prompts
    from trainer.rlef.grpo import RewardLog, RlefSettings, grpo_trainer, train

    base, _model, tok = tiny
    model = AutoModelForCausalLM.from_pretrained(base)
    env = ToyEnv()
    task = Task(text="Say a word.")
    first = [
        {"role": m.role, "content": m.content}
        for m in prompts.first_messages(env.system_prompt, env.prompt(task))
    ]
    text = tok.apply_chat_template(first, tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        top = model(ids).logits[0, -1].topk(16).indices.tolist()
    starts = [tok.decode([t])[:1] for t in top]
    env.wanted = "".join(sorted(set(starts[::2]) - set(starts[1::2])))
    assert env.wanted
    tasks = [Task(text="Say a word.", task_id=f"toy/{i}") for i in range(2)]
    log = RewardLog()
    settings = RlefSettings(
        num_generations=8,
        tasks_per_step=2,
        max_turns=2,
        max_new_tokens=1,
        top_k=16,
        beta=0.0,
        learning_rate=2e-2,
        max_steps=24,
        workers=1,
    )
    torch.manual_seed(0)
    trainer = grpo_trainer(model, tok, env, tasks, str(tmp_path / "out"), settings, log=log)
    train(trainer)
    curve = log.mean_by_step()
    assert len(curve) == 24
    assert sum(curve[-6:]) / 6 > sum(curve[:6]) / 6 + 0.4, curve


@pytest.mark.slow
def test_fixloop_train_method_rlef_end_to_end(tiny: tuple, tmp_path: Path) -> None:
    """`fixloop train --method rlef` on a task file, the real FunctionEnv and sandbox: the run
    directory with its history, reward curve, adapter and metrics."""
    import json

    from typer.testing import CliRunner

    from fixloop.cli import app

    base, _model, _tok = tiny
    suite = tmp_path / "toy.jsonl"
    rows = [
        {"task_id": i, "text": f"Write f{i}(x) returning x + {i}.",
         "test_list": [f"assert f{i}(1) == {1 + i}"]}
        for i in range(1, 7)
    ]  # fmt: skip
    suite.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["train", "--method", "rlef", "--base", str(base), "--data", str(tmp_path),
         "--suite", str(suite), "--group", "2", "--turns", "2", "--max-new-tokens", "8",
         "--max-steps", "2", "--out", str(tmp_path / "runs")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    data = json.loads((run / "data.json").read_text())
    assert data["tasks"] + data["refused_eval_tasks"] == 6 and data["tasks"] >= 1
    assert metrics["method"] == "rlef" and metrics["steps"] == 2
    assert metrics["rewarded_on_public_tests"] == data["tasks"]  # no hidden tests here
    assert metrics["first_reward"] is not None and metrics["first_reward"] <= 1.0
    assert (run / "reward.png").read_bytes()[:4] == b"\x89PNG"
    rollouts = [json.loads(x) for x in (run / "rollouts.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rollouts] == [1, 1, 2, 2]  # a group of 2 per step
    assert all(len(r["replies"]) == r["turns"] >= 1 and r["task"] for r in rollouts)
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert len(data["tasks_sha256"]) == 64
    # what the GGUF LoRA converter reads to find the architecture (it failed without)
    base_config = json.loads((run / "base-config" / "config.json").read_text())
    assert base_config["architectures"] == ["LlamaForCausalLM"]
    # what export registers about the run (it read a built dataset's manifest and failed)
    from trainer.export.pipeline import lineage, run_meta

    info = lineage(run, run_meta(run), quant="Q4_K_M", mode="lora")
    assert info["method"] == "rlef" and info["tasks_sha256"] == data["tasks_sha256"]


@pytest.mark.slow
def test_resume_with_max_steps_moves_an_rlef_runs_end(tiny: tuple, tmp_path: Path) -> None:
    """A run of 1 step, resumed with `--max-steps 2`, trains one more step from its checkpoint
    and records the new end; an offline run refuses the same flag (its schedule is fixed)."""
    import json

    from typer.testing import CliRunner

    from fixloop.cli import app

    base, _model, _tok = tiny
    suite = tmp_path / "toy.jsonl"
    rows = [  # three tasks: the resumes below fall in the middle of an epoch
        {"task_id": i, "text": f"Write f(x) returning x + {i}.",
         "test_list": [f"assert f(1) == {1 + i}"]}
        for i in (1, 2, 3)
    ]  # fmt: skip
    suite.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    common = ["--base", str(base), "--data", str(tmp_path), "--suite", str(suite)]
    first = CliRunner().invoke(
        app,
        ["train", "--method", "rlef", *common, "--group", "2", "--turns", "1",
         "--max-new-tokens", "4", "--max-steps", "1", "--save-every", "1",
         "--out", str(tmp_path / "runs")],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    (run,) = list((tmp_path / "runs").iterdir())
    with open(run / "rollouts.jsonl", "a") as fh:  # played after the checkpoint, then killed
        fh.write(json.dumps({"step": 2, "task": "lost", "reward": 1.0}) + "\n")
    again = CliRunner().invoke(app, ["train", "--resume", str(run), "--max-steps", "2"])
    assert again.exit_code == 0, again.output
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2
    history = (run / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["step"] for h in history] == [1, 2]
    rollouts = [json.loads(r) for r in (run / "rollouts.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rollouts] == [1, 1, 2, 2] and "lost" not in str(rollouts)
    assert json.loads((run / "config.json").read_text())["config"]["max_steps"] == 2
    # ended at its checkpoint: no step is trained, the adapter and metrics are written
    (run / "adapter" / "adapter_config.json").unlink()
    done = CliRunner().invoke(app, ["train", "--resume", str(run), "--max-steps", "2"])
    assert done.exit_code == 0, done.output
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2
    assert len((run / "history.jsonl").read_text().splitlines()) == 2
    assert (run / "adapter" / "adapter_config.json").is_file()

    sft = tmp_path / "sft-run"
    sft.mkdir()
    cfg = json.loads((run / "config.json").read_text())
    cfg["config"]["method"] = "sft"
    (sft / "config.json").write_text(json.dumps(cfg))
    refused = CliRunner().invoke(app, ["train", "--resume", str(sft), "--max-steps", "3"])
    assert refused.exit_code != 0
    assert "RLEF runs only" in refused.output and "start a new run" in refused.output


def test_export_fills_in_the_architecture_a_saved_base_config_lacks(tmp_path: Path) -> None:
    """RLEF runs saved their GGUF base's config without `architectures`, which the GGUF LoRA
    converter needs to find the model ('Failed to detect model architecture')."""
    import json

    from trainer.export.merge import base_config_dir

    run = tmp_path / "run"
    (run / "base-config").mkdir(parents=True)
    (run / "base-config" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (run / "config.json").write_text(json.dumps({"config": {}, "base": {}}))
    (run / "metrics.json").write_text("{}")
    out = base_config_dir(run, tmp_path / "out")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["model_type"] == "qwen2"
