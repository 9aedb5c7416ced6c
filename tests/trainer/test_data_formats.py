"""Row builders on single fixture sessions: the exact shapes LeTI, ILF, SFT, DPO, KTO, RLEF need."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.events import (
    ChatMessage,
    CodeProposed,
    Correction,
    EpisodeFinished,
    ExecFinished,
    ModelIdentity,
    ModelReplied,
    PromptSent,
    SamplingParams,
    SessionStarted,
    Task,
    TaskKind,
    TurnStarted,
    UserAccepted,
)
from agent.sandbox.result import ExecResult, ExecStatus
from agent.session_log import SessionLogWriter
from tests.trainer.data_support import session_file
from trainer.data.episodes import Episode, judge, read_log, reconstruct
from trainer.data.formats import (
    BAD,
    FEEDBACK_CLOSE,
    FEEDBACK_OPEN,
    GOOD,
    dpo_rows,
    episode_rows,
    ilf_final_rows,
    ilf_triples,
    kto_rows,
    leti_rows,
    sft_rows,
)


def episode(name: str) -> Episode:
    log, problems = read_log(session_file(name))
    assert log is not None and problems == []
    return reconstruct(log)


def test_reconstruct_follows_the_loop() -> None:
    ep = episode("s02-exec-repair")
    assert [a.turn for a in ep.attempts] == [1, 2]
    first, second = ep.attempts
    assert first.executed and not first.passed and first.feedback_reason == "exec"
    assert second.passed and second.feedback is None
    assert first.prompt[0].role == "system" and first.prompt[-1].role == "user"
    assert len(second.prompt) == 4  # system, task, attempt 1, feedback
    assert ep.outcome is not None and ep.outcome.outcome == "passed"


def test_leti_rows_have_reward_token_feedback_span_task_and_program() -> None:
    bad, good = leti_rows(episode("s02-exec-repair"))
    task = episode("s02-exec-repair").task_prompt()
    assert bad["text"].startswith(BAD + FEEDBACK_OPEN)
    span = bad["text"][len(BAD + FEEDBACK_OPEN) : bad["text"].index(FEEDBACK_CLOSE)]
    assert span == bad["feedback"] and "is_even(4)" in span
    assert "Find the mistake" not in span  # the interpreter's words, not the loop's instruction
    assert bad["text"].endswith(f"{FEEDBACK_CLOSE}{task}\n{bad['program']}")
    assert good["text"] == f"{GOOD}{task}\n{good['program']}"
    assert not good["feedback"] and good["passed"] and not bad["passed"]
    # What the trainer needs to prompt as the agent did: its system prompt, fenced code.
    system = episode("s02-exec-repair").prompt_messages()[0]
    assert system.role == "system" and good["system"] == system.content and good["fenced"]


def test_leti_counts_only_executed_attempts_and_user_edit_runs() -> None:
    assert [r["reward"] for r in leti_rows(episode("s06-format-error"))] == ["good"]
    rows = leti_rows(episode("s04-user-edit-accept"))
    assert [(r["source"], r["reward"]) for r in rows] == [("model", "bad"), ("user_edit", "good")]


def test_ilf_triple_from_typed_feedback() -> None:
    ep = episode("s03-user-feedback")
    (row,) = ilf_triples(ep)
    assert row["feedback"] == "The range stops one element early: include n itself."
    assert "range(1, n)" in row["old_code"] and "range(1, n + 1)" in row["refinement"]
    assert row["prompt"] == (
        f"OLD CODE:\n{row['old_code'].rstrip()}\n\nFEEDBACK:\n{row['feedback']}\n\n"
        f"REFINEMENT:\n{ep.task_prompt()}"
    )
    assert row["completion"] == row["refinement"]
    (final,) = ilf_final_rows([row])
    assert final["kind"] == "final" and final["prompt"] == ep.task_prompt()


def test_ilf_triple_from_a_hand_edit_and_user_code_wins_in_sft() -> None:
    ep = episode("s04-user-edit-accept")
    (row,) = ilf_triples(ep)
    assert row["feedback_kind"] == "edit" and "min(x, hi)" in row["refinement"]
    assert "+    return max(lo, min(x, hi))" in row["feedback"]
    (sft,) = sft_rows(ep)
    assert sft["source"] == "user_edit"
    assert sft["messages"][-1] == {
        "role": "assistant",
        "content": "```python\ndef clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n```",
    }


def test_rejected_and_hidden_failures_are_never_good() -> None:
    rejected = episode("s05-rejected")
    assert judge(rejected).final is None and sft_rows(rejected) == []
    assert [r["label"] for r in kto_rows(rejected)] == [False]
    hidden_fail = episode("s08-hidden-tests-fail")
    verdict = judge(hidden_fail)
    assert verdict.final is None and [b.why for b in verdict.bad] == ["failed_hidden"]


def test_sft_uses_the_first_prompt_and_the_models_reply() -> None:
    ep = episode("s01-pass-first-try")
    (row,) = sft_rows(ep)
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][-1]["content"] == ep.attempts[0].reply
    repaired = episode("s02-exec-repair")
    (row,) = sft_rows(repaired)  # a repair reply becomes a plain answer to the first prompt
    assert len(row["messages"]) == 3
    assert row["messages"][-1]["content"].startswith("```python\ndef is_even")


def test_dpo_pairs_at_the_same_prompt() -> None:
    ep = episode("s06-format-error")
    (row,) = dpo_rows([(ep, judge(ep))])
    assert row["prompt"][-1]["content"] == ep.task_prompt()
    assert row["rejected"] == [{"role": "assistant", "content": ep.attempts[0].reply}]
    assert row["rejected_why"] == "format_error" and "```python" in row["chosen"][0]["content"]
    pooled = [(e, judge(e)) for e in (episode("s02-exec-repair"), episode("s09-repeat-of-s02"))]
    assert len(dpo_rows(pooled)) == 1  # the same failure twice is one pair


def test_kto_labels_answer_their_own_context() -> None:
    rows = kto_rows(episode("s07-hidden-tests-pass"))
    assert [(r["label"], r["turn"]) for r in rows] == [(True, 2), (False, 1)]
    good, bad = rows
    assert len(good["prompt"]) == 4 and len(bad["prompt"]) == 2


@pytest.mark.parametrize(
    ("name", "reward", "roles"),
    [
        ("s07-hidden-tests-pass", 1.0, ["system", "user", "assistant", "user", "assistant"]),
        ("s08-hidden-tests-fail", -1.0, ["system", "user", "assistant"]),
        ("s03-user-feedback", None, ["system", "user", "assistant", "user", "assistant"]),
    ],
)
def test_episodes_carry_feedback_turns_and_the_hidden_reward(
    name: str, reward: float | None, roles: list[str]
) -> None:
    (row,) = episode_rows(episode(name))
    assert row["reward"] == reward
    assert [m["role"] for m in row["messages"]] == roles


def _workspace_log(tmp_path: Path, *, edited: bool) -> Path:
    """A workspace session as `fixloop repo accept [--edited]` leaves it, via the real writer."""
    from agent.workspace.edit_format import render_files

    proposed = {"pkg/calc.py": "def area(w, h):\n    return w * h\n"}
    final = {"pkg/calc.py": "def area(w: float, h: float) -> float:\n    return w * h\n"}
    code = render_files(proposed)
    task = Task(
        text="Add an area function to pkg/calc.py.",
        kind=TaskKind.WORKSPACE,
        workdir="/repo",
        test_cmd="pytest -q",
    )
    messages = [ChatMessage(role="system", content="sys"), ChatMessage(role="user", content="t")]
    events = [
        SessionStarted(
            session_id="ws-1",
            fixloop_version="0.1.0",
            model=ModelIdentity(name="m", backend="scripted"),
            task=task,
        ),
        TurnStarted(turn=1),
        PromptSent(turn=1, messages=messages, sampling=SamplingParams()),
        ModelReplied(turn=1, text=code),
        CodeProposed(turn=1, code=code),
        ExecFinished(turn=1, result=ExecResult(status=ExecStatus.PASSED)),
        EpisodeFinished(outcome="passed", turns=1, best_turn=1, final_code=code),
        UserAccepted(turn=1, code=code, edited=edited),
    ]
    if edited:
        events.append(
            Correction(source="accept_edited", proposed=proposed, final=final, diff="-a\n+b\n")
        )
    path = tmp_path / "ws-1.jsonl"
    writer = SessionLogWriter(path)
    for event in events:
        writer.write(event)
    writer.close()
    return path


def test_workspace_accept_edited_correction_is_the_users_solution(tmp_path: Path) -> None:
    from agent.workspace.edit_format import render_files

    log, problems = read_log(_workspace_log(tmp_path, edited=True))
    assert log is not None and problems == []
    ep = reconstruct(log)
    verdict = judge(ep)
    assert verdict.final is not None and verdict.final.source == "user_edit"
    assert "h: float" in verdict.final.code and verdict.final.completion == verdict.final.code
    assert [b.why for b in verdict.bad] == ["criticized"]
    (triple,) = ilf_triples(ep, verdict)
    assert triple["feedback_kind"] == "accept_edited"
    assert triple["refinement"] == render_files(
        {"pkg/calc.py": "def area(w: float, h: float) -> float:\n    return w * h\n"}
    )
    assert "accept_edited" in ep.feedback_kinds()
    (sft,) = sft_rows(ep, verdict)
    assert sft["messages"][-1]["content"] == verdict.final.code  # reply format, not re-fenced


def test_workspace_plain_accept_keeps_the_models_reply(tmp_path: Path) -> None:
    log, _ = read_log(_workspace_log(tmp_path, edited=False))
    assert log is not None
    ep = reconstruct(log)
    verdict = judge(ep)
    assert verdict.final is not None and verdict.final.source == "model"
    assert verdict.bad == [] and ilf_triples(ep, verdict) == []


def test_a_pass_after_the_failure_was_shown_again_is_a_repair_row() -> None:
    """A real seed episode of the 0.5B (recorded): attempt 1 fails, attempt 2 repeats it, so
    the loop starts over from the task with the failure noted under it, and attempt 3 passes.
    That pass used the feedback: it is a repair row whose prompt ends with the noted failure
    (before, only a reply right after the conversation's feedback turn counted, and a whole
    multi-turn seed of 150 tasks, 30 of them passed after a failure, built one repair row)."""
    from trainer.data.formats import repair_rows

    path = Path(__file__).parents[1] / "fixtures" / "recorded"
    log, _ = read_log(path / "seed-repair-after-a-duplicate-0.5b.jsonl")
    assert log is not None
    episode = reconstruct(log)
    (row,) = repair_rows(episode)
    repaired = episode.attempts[2]
    assert (row["turn"], row["feedback"], row["repaired_after"]) == (3, "duplicate", 1)
    assert row["prompt"] == [m.model_dump() for m in repaired.prompt]
    assert row["prompt"][-1]["content"].endswith(episode.attempts[1].feedback)
    assert "returned 0, expected 47" not in row["prompt"][-1]["content"]  # the rendered form:
    assert "expected: 47" in row["prompt"][-1]["content"]
    assert row["completion"] == [{"role": "assistant", "content": repaired.reply}]


def test_repair_rows_train_only_the_repairing_turn() -> None:
    """A failed attempt, its feedback, then a pass: a prompt/completion row whose prompt is
    the conversation exactly as sent and whose completion is the repair alone."""
    from tests.trainer.data_support import golden, session_file
    from trainer.data.formats import repair_rows

    sessions = []
    for name in golden()["repair_sessions"]:
        log, _ = read_log(session_file(name))
        assert log is not None
        episode = reconstruct(log)
        rows = repair_rows(episode)
        assert len(rows) == 1, name
        row = rows[0]
        repaired = next(a for a in episode.attempts if a.turn == row["turn"])
        assert row["prompt"] == [m.model_dump() for m in repaired.prompt]
        assert row["completion"] == [{"role": "assistant", "content": repaired.reply}]
        assert row["prompt"][-2]["role"] == "assistant" and row["prompt"][-1]["role"] == "user"
        sessions.append(name)
    assert sessions
    for name in ("s01-pass-first-try", "s06-format-error", "s08-hidden-tests-fail"):
        log, _ = read_log(session_file(name))
        assert log is not None and repair_rows(reconstruct(log)) == [], name
