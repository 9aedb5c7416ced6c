"""Row builders, one per output format (see PAPERS.md for the methods).

- LeTI: each executed attempt as `<|good|>` or `<|bad|><|lang_feedback|>fb<|/lang_feedback|>`,
  then the task and the program.
- ILF: (task, old code, feedback, refinement) triples whose refinement passed, and the
  final SFT rows (task -> passing refinement), one per task; `prompt`/`completion` text.
- SFT: TRL's conversational `messages`: the first prompt and the session's good solution.
- DPO: TRL's conversational `prompt`/`chosen`/`rejected`, pairs at the same task.
- preference DPO (`pref_dpo`): the same shape, both programs passing the task's tests at the
  same prompt, one following a standing preference of the user and one not (AutoIF).
- KTO: TRL's conversational `prompt`/`completion`/`label`.
- episodes: RLEF's multi-turn conversation with its feedback turns and the final reward.

Every row also carries `task_key`, `task_id`, `session_id`, `model` (and `split`, set by
the build), so rows can be traced back to the logs they came from.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from agent.episode import FEEDBACK_CHARS
from agent.events import ChatMessage, Correction, TaskKind, UserAccepted, UserEdited, UserFeedback
from agent.extract import normalize_code
from agent.sandbox import render_feedback
from agent.sandbox.result import ExecResult
from trainer.data.episodes import (
    Attempt,
    Episode,
    Judgement,
    Solution,
    corrected_code,
    fence,
    judge,
)

Row = dict[str, Any]

FORMATS = ("leti", "ilf", "sft", "repair", "dpo", "pref_dpo", "kto", "episodes")

GOOD = "<|good|>"
BAD = "<|bad|>"
FEEDBACK_OPEN = "<|lang_feedback|>"
FEEDBACK_CLOSE = "<|/lang_feedback|>"
LETI_SPECIAL_TOKENS = (GOOD, BAD, FEEDBACK_OPEN, FEEDBACK_CLOSE)


def _messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _meta(episode: Episode) -> Row:
    return {
        "task_key": episode.task_key,
        "task_id": episode.task.task_id,
        "session_id": episode.session_id,
        "model": episode.model_key,
    }


# ---------------------------------------------------------------- LeTI


def render_exec_feedback(result: ExecResult, code: str) -> str:
    """The interpreter's feedback on a run the model was not shown (a user's edit), rendered
    as the loop renders it for the model."""
    return render_feedback(result, code, max_chars=FEEDBACK_CHARS)


def leti_head(passed: bool, feedback: str) -> str:
    """LeTI's conditioning: the reward token, and the feedback span when it failed."""
    return GOOD if passed else f"{BAD}{FEEDBACK_OPEN}{feedback}{FEEDBACK_CLOSE}"


def leti_text(passed: bool, feedback: str, task: str, program: str) -> str:
    """LeTI's training text: reward token, feedback span when it failed, task, program."""
    return f"{leti_head(passed, feedback)}{task.rstrip()}\n{program.rstrip()}\n"


def _attempt_feedback(attempt: Attempt) -> str:
    """The execution feedback exactly as the model was shown it (logged with the result)."""
    assert attempt.result is not None and attempt.code is not None
    return attempt.shown_feedback


def leti_rows(episode: Episode) -> list[Row]:
    """One row per executed attempt (the model's and the user's edits that were run).

    `system` (the episode's system prompt) and `fenced` (the agent parses the program from
    a python block) let the trainer build the conversation the model is prompted with."""
    task = episode.task_prompt()
    system = next((m.content for m in episode.prompt_messages() if m.role == "system"), None)
    rows: list[Row] = []
    executed: list[tuple[str, str, ExecResult, str, int]] = []
    for attempt in episode.attempts:
        if attempt.executed and attempt.code is not None and attempt.result is not None:
            executed.append(
                ("model", attempt.code, attempt.result, _attempt_feedback(attempt), attempt.turn)
            )
    for action in episode.actions:
        edit = action.event
        if isinstance(edit, UserEdited) and edit.result is not None:
            feedback = "" if edit.result.passed else render_exec_feedback(edit.result, edit.edited)
            executed.append(("user_edit", edit.edited, edit.result, feedback, edit.turn))
    for source, code, result, feedback, turn in executed:
        rows.append(
            {
                "text": leti_text(result.passed, feedback, task, code),
                "reward": "good" if result.passed else "bad",
                "passed": result.passed,
                "status": result.status.value,
                "feedback": feedback,
                "task": task,
                "program": code,
                "system": system,
                "fenced": episode.task.kind == TaskKind.FUNCTION,
                "source": source,
                "turn": turn,
                **_meta(episode),
            }
        )
    return rows


# ---------------------------------------------------------------- ILF


def ilf_prompt(old_code: str, feedback: str, task: str) -> str:
    """The refinement prompt of ILF's released code, followed by the task prompt."""
    return (
        f"OLD CODE:\n{old_code.rstrip()}\n\nFEEDBACK:\n{feedback.rstrip()}\n\nREFINEMENT:\n{task}"
    )


def _edit_feedback(original: str, edited: str) -> str:
    diff = difflib.unified_diff(
        original.splitlines(), edited.splitlines(), "proposed", "edited", lineterm=""
    )
    return "The user edited the code:\n" + "\n".join(diff)


def ilf_triples(episode: Episode, judgement: Judgement | None = None) -> list[Row]:
    """(task, old code, feedback, refinement) where the refinement passed its tests.

    Typed feedback: the refinement is the first passing attempt after the correction
    (and before the next one). Hand edit: the edited code, when it passed (or was
    accepted where the task has no tests). Refinements the user later rejected or
    corrected again are left out.
    """
    judgement = judgement or judge(episode)
    disowned = {
        normalize_code(s.code) for s in judgement.bad if s.why in ("rejected", "criticized")
    }
    task = episode.task_prompt()
    feedback_positions = [a.after for a in episode.actions if a.kind == "feedback"]
    accepted = {
        normalize_code(a.event.code) for a in episode.actions if isinstance(a.event, UserAccepted)
    }
    rows: list[Row] = []
    for action in episode.actions:
        event = action.event
        if isinstance(event, UserFeedback):
            if not event.code.strip():
                continue  # a correction with no attempt to correct
            later = [p for p in feedback_positions if p > action.after]
            stop = later[0] if later else len(episode.attempts)
            refinement = next(
                (a for a in episode.attempts[action.after : stop] if a.passed and a.code),
                None,
            )
            if refinement is None or normalize_code(refinement.code or "") in disowned:
                continue
            old, feedback, new, kind = event.code, event.text, refinement.code or "", "user"
        elif isinstance(event, UserEdited):
            old, new = event.original, event.edited
            if normalize_code(old) == normalize_code(new) or normalize_code(new) in disowned:
                continue
            if event.result is not None:
                ok = event.result.passed
            else:  # not run (no tests): the user's accepting it is the check
                ok = normalize_code(new) in accepted
            if not ok:
                continue
            feedback, kind = _edit_feedback(old, new), "edit"
        elif isinstance(event, Correction):
            old, new = corrected_code(event)
            if normalize_code(old) == normalize_code(new) or normalize_code(new) in disowned:
                continue
            feedback, kind = f"The user edited the code:\n{event.diff}", event.source
        else:
            continue
        rows.append(
            {
                "kind": "refinement",
                "prompt": ilf_prompt(old, feedback, task),
                "completion": new.rstrip() + "\n",
                "task": task,
                "old_code": old,
                "feedback": feedback,
                "feedback_kind": kind,
                "refinement": new,
                **_meta(episode),
            }
        )
    return rows


def ilf_final_rows(triples: Sequence[Row]) -> list[Row]:
    """ILF's final SFT rows: task prompt -> passing refinement, one per task (the latest)."""
    latest: dict[str, Row] = {}
    for row in triples:
        latest[row["task_key"]] = row
    return [
        {
            **row,
            "kind": "final",
            "prompt": row["task"],
            "completion": row["refinement"].rstrip() + "\n",
        }
        for row in latest.values()
    ]


# ---------------------------------------------------------------- SFT


def sft_completion(final: Solution, episode: Episode) -> str:
    """The assistant message for the first prompt.

    The model's own reply when it answered the first prompt; a repaired or
    user-written function is given as a fenced block (a repair reply talks about
    feedback the first prompt never showed). Workspace replies are edit
    renderings and are kept whole.
    """
    if episode.task.kind != TaskKind.FUNCTION:
        return final.completion
    if final.source == "model" and final.prompt == episode.prompt_messages():
        return final.completion
    return fence(final.code, episode.task)


def sft_rows(episode: Episode, judgement: Judgement | None = None) -> list[Row]:
    judgement = judgement or judge(episode)
    final = judgement.final
    if final is None:
        return []
    messages = [*_messages(episode.prompt_messages()), *_assistant(sft_completion(final, episode))]
    return [{"messages": messages, "source": final.source, "why": final.why, **_meta(episode)}]


# ---------------------------------------------------------------- repair trajectories


# Feedback on a failed program: the sandbox's, a user's correction, or the failure shown again
# when the model repeated a program (`duplicate`) or the loop started over (`restart`).
FEEDBACK_ON_A_FAILURE = ("exec", "user", "duplicate", "restart")


def repair_rows(episode: Episode) -> list[Row]:
    """RLEF's episode as supervision: each attempt that passed right after failing and
    being shown what failed becomes a prompt/completion row. The prompt is the conversation
    exactly as the model was sent it: the task, its failed attempt and the feedback, or (after
    a repeated program or a restart) the task with the failure noted under it; the loss falls
    on the repairing reply alone. It teaches using feedback, not resampling.
    """
    rows: list[Row] = []
    why = {a.feedback: a.feedback_reason for a in episode.attempts if a.feedback}
    for attempt in episode.attempts:
        if not attempt.passed or attempt.reply is None or len(attempt.prompt) < 2:
            continue
        reason = _feedback_ending(attempt.prompt, why)
        if reason not in FEEDBACK_ON_A_FAILURE:
            continue  # a format reminder is not feedback on a failed program
        if attempt.hidden_result is not None and not attempt.hidden_result.passed:
            continue  # passed the public tests only: not a repair worth learning
        rows.append(
            {
                "prompt": _messages(attempt.prompt),
                "completion": _assistant(attempt.reply),
                "turn": attempt.turn,
                "repaired_after": sum(a.counts for a in episode.attempts[: attempt.index]),
                "feedback": reason,
                **_meta(episode),
            }
        )
    return rows


def _feedback_ending(prompt: Sequence[ChatMessage], why: dict[str, str | None]) -> str | None:
    """Why the prompt's last user turn exists: the reason of the feedback it is, or ends with."""
    last = prompt[-1]
    if last.role != "user":
        return None
    if last.content in why:
        return why[last.content]
    for feedback, reason in why.items():
        if last.content.endswith("\n\n" + feedback):  # the task, then the failure noted
            return reason
    return None


# ---------------------------------------------------------------- DPO


def dpo_rows(group: Sequence[tuple[Episode, Judgement]]) -> list[Row]:
    """Pairs for one task: every distinct bad attempt against a good solution.

    Good solutions (accepted, passing, user-corrected) and bad attempts (failing,
    rejected, corrected) are pooled over the task's sessions; each bad attempt is
    paired with the good ones in turn. The prompt is the good solution's first prompt.
    """
    chosen: list[tuple[Episode, Solution]] = []
    seen_good: set[str] = set()
    for episode, judgement in group:
        if judgement.final is not None:
            key = normalize_code(judgement.final.code)
            if key not in seen_good:
                seen_good.add(key)
                chosen.append((episode, judgement.final))
    if not chosen:
        return []
    rows: list[Row] = []
    seen_bad: set[str] = set()
    for episode, judgement in group:
        for bad in judgement.bad:
            key = normalize_code(bad.code) if bad.code else "reply:" + bad.completion
            if key in seen_bad or key in seen_good:
                continue
            good_episode, good = chosen[len(seen_bad) % len(chosen)]
            seen_bad.add(key)
            rows.append(
                {
                    "prompt": _messages(good_episode.prompt_messages()),
                    "chosen": _assistant(sft_completion(good, good_episode)),
                    "rejected": _assistant(bad.completion),
                    "rejected_why": bad.why,
                    "chosen_why": good.why,
                    "rejected_session_id": episode.session_id,
                    **_meta(good_episode),
                }
            )
    return rows


# ---------------------------------------------------------------- preference DPO

PREF_PAIRS_PER_SIDE = 2  # AutoIF: at most 2 x 2 pairs per query


def _passes_task(attempt: Attempt) -> bool:
    """The task's own checks passed (preference checks aside), and any held-out tests."""
    from agent.preferences.env import is_preference_check
    from agent.sandbox.result import ExecStatus, TestStatus

    result = attempt.result
    if result is None or attempt.code is None:
        return False
    if result.status not in (ExecStatus.PASSED, ExecStatus.FAILED):
        return False  # crashed, timed out: not a passing program
    task_tests = [t for t in result.tests if not is_preference_check(t)]
    if any(t.status != "passed" for t in task_tests):
        return False
    if result.status == ExecStatus.FAILED and not any(
        is_preference_check(t) and t.status == TestStatus.FAILED for t in result.tests
    ):
        return False  # failed for a reason other than a preference (expected stdout)
    return attempt.hidden_result is None or attempt.hidden_result.passed


def _verbatim(code: str) -> str:
    """Code up to trailing whitespace: what tells preference sides apart. Not
    `normalize_code`, which drops docstrings and comments, the very thing a preference
    ("every public function has a docstring") may be about."""
    return "\n".join(line.rstrip() for line in code.strip().splitlines())


def pref_dpo_rows(episodes: Sequence[Episode]) -> list[Row]:
    """Preference pairs for one task: at the same prompt, two programs that both pass the
    task's tests, the chosen one following a preference of the user and the rejected one not
    (their logged preference checks say which), and the chosen one breaking no other
    preference; at most 2 x 2 pairs per prompt and preference (AutoIF's per query). Both
    completions are the programs fenced, so the pair differs in the code alone (a repair reply
    talks about feedback the first prompt never showed). `fixloop data build` and the online
    round of `fixloop retrain --method dpo --preferences` both make their pairs here.
    """
    from agent.preferences.env import PREFERENCE_PREFIX, is_preference_check

    # (prompt, preference) -> follows? -> normalized code -> (episode, attempt)
    Key = tuple[tuple[tuple[str, str], ...], str]
    groups: dict[Key, dict[bool, dict[str, tuple[Episode, Attempt]]]] = {}
    for episode in episodes:
        prompt_key = tuple((m.role, m.content) for m in episode.prompt_messages())
        for attempt in episode.attempts:
            if not _passes_task(attempt):
                continue
            assert attempt.result is not None and attempt.code is not None
            checks = [t for t in attempt.result.tests if is_preference_check(t)]
            broken = sum(t.status == "failed" for t in checks)
            for check in checks:
                if check.status not in ("passed", "failed"):
                    continue
                follows = check.status == "passed"
                if follows and broken:
                    continue  # chosen for one preference while breaking another: no
                text = check.name.removeprefix(PREFERENCE_PREFIX)
                sides = groups.setdefault((prompt_key, text), {True: {}, False: {}})
                sides[follows].setdefault(_verbatim(attempt.code), (episode, attempt))
    rows: list[Row] = []
    for (prompt_key, text), sides in groups.items():
        chosen = list(sides[True].values())[:PREF_PAIRS_PER_SIDE]
        rejected = [v for k, v in sides[False].items() if k not in sides[True]][
            :PREF_PAIRS_PER_SIDE
        ]
        for good_episode, good in chosen:
            for bad_episode, bad in rejected:
                rows.append(
                    {
                        "prompt": [{"role": r, "content": c} for r, c in prompt_key],
                        "chosen": _assistant(fence(good.code or "", good_episode.task)),
                        "rejected": _assistant(fence(bad.code or "", bad_episode.task)),
                        "preference": text,
                        "rejected_session_id": bad_episode.session_id,
                        **_meta(good_episode),
                    }
                )
    return rows


# ---------------------------------------------------------------- KTO


def kto_rows(episode: Episode, judgement: Judgement | None = None) -> list[Row]:
    """Every judged completion, labelled, in the exact context it answered."""
    judgement = judgement or judge(episode)
    labelled = [(s, True) for s in ([judgement.final] if judgement.final else [])]
    labelled += [(s, False) for s in judgement.bad]
    return [
        {
            "prompt": _messages(solution.prompt),
            "completion": _assistant(solution.completion),
            "label": label,
            "why": solution.why,
            "turn": solution.turn,
            **_meta(episode),
        }
        for solution, label in labelled
    ]


# ---------------------------------------------------------------- RLEF episodes


def episode_messages(episode: Episode) -> list[dict[str, str]]:
    """The conversation: first prompt, then each reply and the feedback turn that followed.

    A cycle that starts over (after typed feedback or a retry) continues the same
    conversation: the user's correction is a user turn like execution feedback.
    """
    messages = _messages(episode.prompt_messages())
    feedback_after: dict[int, list[str]] = {}
    for action in episode.actions:
        if isinstance(action.event, UserFeedback):
            feedback_after.setdefault(action.after, []).append(action.event.text)
    for attempt in episode.attempts:
        pending = feedback_after.pop(attempt.index, [])
        if pending and messages[-1]["role"] != "user":
            messages.append({"role": "user", "content": "\n\n".join(pending)})
        if attempt.reply is None:
            continue
        messages.append({"role": "assistant", "content": attempt.reply})
        if attempt.feedback is not None:
            messages.append({"role": "user", "content": attempt.feedback})
    return messages


def episode_rows(episode: Episode) -> list[Row]:
    """RLEF: one multi-turn episode per session, with the final reward where it exists.

    `reward` is the loop's +1/-1 from the held-out tests (None where the task has
    none); `passed` is whether the final program passed the public tests.
    """
    if not any(a.reply is not None for a in episode.attempts):
        return []
    outcome = episode.outcome
    messages = episode_messages(episode)
    while messages and messages[-1]["role"] == "user" and len(messages) > 2:
        messages.pop()  # a feedback turn nobody answered
    return [
        {
            "messages": messages,
            "reward": outcome.reward if outcome else None,
            "hidden_passed": outcome.hidden_passed if outcome else None,
            "passed": bool(outcome and outcome.outcome == "passed"),
            "outcome": outcome.outcome if outcome else "unfinished",
            "turns": sum(a.reply is not None for a in episode.attempts),
            # RLEF penalizes replies without code; the trainer can apply it from this count.
            "format_errors": sum(a.format_error is not None for a in episode.attempts),
            "feedback_kinds": episode.feedback_kinds(),
            **_meta(episode),
        }
    ]
