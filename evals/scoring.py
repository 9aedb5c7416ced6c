"""Scoring one finished episode from its events: pass within each turn budget, the record.

For every turn budget t = 1..max_turns: the program a t-turn run would have ended with (the
loop's best attempt among the first t that count against the budget; a repeated program is
resampled without counting, as the loop does) passes the scoring tests. Those are the task's
hidden tests where it has them (HumanEval's `check`), else its public tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.episode import fold
from agent.events import (
    EpisodeFinished,
    ErrorRaised,
    Event,
    ExecFinished,
    ModelReplied,
    Task,
)
from agent.preferences.env import summary as preference_summary
from evals.errors import EvalError
from evals.results import EpisodeRecord

if TYPE_CHECKING:
    from agent.environment import FunctionEnv


def score_episode(
    events: Sequence[Event], task: Task, max_turns: int, env: FunctionEnv | None
) -> list[bool]:
    """Whether a run with a budget of t turns would have passed, for t = 1..max_turns
    (the episode fold's budget and best-attempt rules, `agent.episode`)."""
    episode = fold(list(events))
    if not task.hidden_tests:
        first = episode.first_pass_within()
        return [first is not None and first <= t for t in range(1, max_turns + 1)]
    hidden_by_turn = {
        ev.turn: ev.result.passed for ev in events if isinstance(ev, ExecFinished) and ev.hidden
    }
    cache: dict[str, bool] = {}
    out: list[bool] = []
    for t in range(1, max_turns + 1):
        best = episode.best(within=t)
        if best is None or best.code is None or best.result is None:
            out.append(False)
        elif best.turn in hidden_by_turn:
            out.append(hidden_by_turn[best.turn])
        else:
            if best.code not in cache:
                if env is None:
                    raise EvalError("scoring hidden tests needs an environment")
                result = env.run_hidden(best.code, task)
                cache[best.code] = bool(result is not None and result.passed)
            out.append(cache[best.code])
    return out


def episode_record(
    events: Sequence[Event],
    task: Task,
    *,
    sample: int,
    seed: int,
    label: str,
    model_key: str,
    max_turns: int,
    wall_s: float,
    session_id: str,
    log_path: str,
    env: FunctionEnv | None,
) -> EpisodeRecord:
    """Score one finished episode from its events."""
    within = score_episode(events, task, max_turns, env)
    finished = [e for e in events if isinstance(e, EpisodeFinished)]
    end = finished[-1] if finished else None
    replies = [e for e in events if isinstance(e, ModelReplied)]
    errors = [e.message for e in events if isinstance(e, ErrorRaised)]
    public = {e.turn: e.result for e in events if isinstance(e, ExecFinished) and not e.hidden}
    return EpisodeRecord(
        task_id=task.task_id or "",
        sample=sample,
        seed=seed,
        model=label,
        model_key=model_key,
        outcome=end.outcome if end else "error",
        passed=within[-1],
        pass_turn=next((t for t, ok in enumerate(within, 1) if ok), None),
        within=within,
        turns=end.turns if end else len(replies),
        turn_passed=[r.passed for _, r in sorted(public.items())],
        n_tests=end.n_tests if end else 0,
        best_passed=end.best_passed if end else 0,
        completion_tokens=sum(r.completion_tokens for r in replies),
        prompt_tokens=sum(r.prompt_tokens for r in replies),
        prompt_tokens_evaluated=prompt_tokens_evaluated(replies),
        gen_s=round(sum(r.duration_s for r in replies), 4),
        exec_s=round(sum(e.result.duration_s for e in events if isinstance(e, ExecFinished)), 4),
        wall_s=round(wall_s, 4),
        session_id=session_id,
        log_path=log_path,
        error="; ".join(errors) or None,
        preferences=preference_summary(public[min(public)]) if public else {},
    )


def prompt_tokens_evaluated(replies: Sequence[ModelReplied]) -> int | None:
    """Prompt tokens the model evaluated over an episode's replies (a reply that did not say
    counts as evaluated in full); None when no reply said."""
    if all(r.prompt_tokens_evaluated is None for r in replies):
        return None
    return sum(
        r.prompt_tokens if r.prompt_tokens_evaluated is None else r.prompt_tokens_evaluated
        for r in replies
    )
