"""Repair policies: what the loop does after a failed attempt, and how it samples the next one.

An *attempt* is one generation whose program is executed (or that had no usable code); the
budget is `Settings.max_turns` attempts whatever the policy, so policies compare at equal
budget. Duplicates stay free and are resampled hotter under every policy (`agent.loop`).

- `greedy`: repair (the feedback becomes the next user turn); sampled as set (T 0: greedy).
- `sampled`: repair; repair turns sampled at T 0.8 with a seed per turn.
- `restart`: restart when the attempt is no better than the best so far (as many or fewer
  tests passed), else repair; restarts sampled at T 0.8 with a seed per turn.
- `mixed`: repair when the attempt passed some tests or raised an exception at a line of its
  program; restart when it passed none; restarts sampled at T 0.8 with a seed per turn.
- `adaptive`: `mixed`, and a repair that did not improve on the best earlier attempt is
  abandoned: the next attempt starts over.
- `fresh`: `adaptive`, but a restart is the task alone, with no note on what failed.
- `resample`: never repair: every failed attempt is followed by a new sample of the task
  alone (T 0.8, a seed per turn), as independent samples drawn until one passes, but with a
  greedy first attempt and repeated programs resampled for free.
- `targeted`: `resample`, but repair an attempt whose feedback points at a line of its
  program (an exception other than a failed assertion), unless it was a repair that did not
  improve on the best earlier attempt.

A reply that could not be used (a format error: refused edits, no code) is repaired in the
conversation under `greedy` and `sampled`, and restarted from under the other policies.

A *restart* starts the conversation over as system + task + `prompts.restart_prompt`: a
short note of what failed (`failure_note`), not the failed program, so the next attempt is
a fresh sample rather than an edit (logged as `RepairRequested(reason="restart")`). Under
`fresh` the note is left out: the prompt is the first attempt's, byte for byte (its prefix
is already in the KV cache), and the event's feedback is empty; a repeated program is
sampled again from the same prompt, hotter, with no note either. The
first attempt of a cycle is always the settings' sampling; a user's correction cycle
always repairs (the correction is the point of it).

`make_cycle` is what a session calls: `greedy` is `agent.loop.Cycle` itself, unchanged;
the others are a `PolicyCycle`, which overrides two of the Cycle's steps (`sampling` and
`after_failure`) and consults its `RepairPolicy`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

from agent import prompts
from agent.config import POLICY_NAMES
from agent.environment import Proposal
from agent.episode import Attempt
from agent.events import ChatMessage, Event, RepairRequested, SamplingParams
from agent.loop import Cycle, CycleEnd, LoopContext
from agent.sandbox.result import ExecResult, ExecStatus, TestResult, TestStatus

SAMPLED_TEMPERATURE = 0.8  # repair and restart samples (the pass@k baseline's temperature)
NOTE_CHARS = 300  # a restart's note on what failed, at most

Step = Literal["repair", "restart"]


# ---------------------------------------------------------------- what failed, briefly


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _failing(result: ExecResult) -> list[TestResult]:
    return [t for t in result.tests if t.status not in (TestStatus.PASSED, TestStatus.SKIPPED)]


def raised_at_a_line(result: ExecResult) -> bool:
    """Some test (or loading the program) raised an exception other than AssertionError at a
    known line of the model's program: feedback that points at the mistake."""
    return any(
        t.exception_type not in (None, "AssertionError") and t.lineno is not None
        for t in _failing(result)
    )


def repair_did_not_improve(attempt: Attempt, best_before: Attempt | None) -> bool:
    """`attempt` answered a repair in the conversation and passed no more than the best
    earlier attempt (an attempt from a fresh prompt, the first or a restart's, never did)."""
    repaired = any(m.role == "assistant" for m in attempt.prompt)
    return repaired and best_before is not None and attempt.score <= best_before.score


def failure_note(result: ExecResult | None) -> str:
    """One or two lines on what failed: how many tests, and the first failure's
    expected/actual values or exception (a restart's note; no program text)."""
    if result is None:
        return "it produced no program that could run."
    failing = _failing(result)
    if result.status == ExecStatus.TIMEOUT and not failing:
        return "the program did not finish in time (an infinite loop, or too slow?)."
    if result.status == ExecStatus.MEMORY and not failing:
        return "the program ran out of memory."
    if not failing:
        tail = result.stderr.text.strip().splitlines()
        return _clip(f"the program crashed: {tail[-1]}" if tail else "the program crashed.", 200)
    head = f"{len(failing)} of {result.n_tests} tests failed" if result.n_tests else "it failed"
    first = failing[0]
    name = _clip(first.name, 120)
    if first.status == TestStatus.TIMEOUT:
        what = f"`{name}` did not finish in time"
    elif first.expected is not None or first.actual is not None:
        actual, expected = _clip(str(first.actual), 60), _clip(str(first.expected), 60)
        what = f"`{name}` gave {actual}, expected {expected}"
    elif first.exception_type not in (None, "AssertionError"):
        where = f" at line {first.lineno}" if first.lineno else ""
        message = first.message or first.exception_type or ""
        what = f"`{name}` raised {_clip(message, 100)}{where}"
    else:
        what = f"`{name}` failed"
    return _clip(f"{head}; {what}.", NOTE_CHARS)


# ---------------------------------------------------------------- the policies


class RepairPolicy:
    """What follows a failed attempt: `step` decides repair or restart; `hot_repairs`
    samples repair turns at SAMPLED_TEMPERATURE. The base class is greedy repair."""

    name = "greedy"
    hot_repairs = False
    restart_note = True  # a restart tells the model what failed (`failure_note`)

    def step(self, attempt: Attempt, best_before: Attempt | None) -> Step:
        """`attempt` just failed; `best_before` is the cycle's best earlier attempt (or None)."""
        return "repair"

    def step_after_format_error(self) -> Step:
        """A reply that could not be used (refused edits, no code): shown the refusal in the
        same conversation, the 1.5B model repeated itself or copied the prompt back."""
        return "repair"


class GreedyPolicy(RepairPolicy):
    name = "greedy"


class SampledPolicy(RepairPolicy):
    name = "sampled"
    hot_repairs = True


class RestartPolicy(RepairPolicy):
    """Restart when the attempt did not improve on the best earlier one (episode ranking:
    tests passed, then a clean run over a crash; a tie is no improvement)."""

    name = "restart"

    def step(self, attempt: Attempt, best_before: Attempt | None) -> Step:
        if best_before is None:
            return "repair"  # the first attempt is the best so far
        return "repair" if attempt.score > best_before.score else "restart"

    def step_after_format_error(self) -> Step:
        return "restart"  # an unusable reply improves on nothing


class MixedPolicy(RepairPolicy):
    """Repair when the feedback has something to work with (some tests passed, or an
    exception at a line of the program); restart from the task when nothing passed."""

    name = "mixed"

    def step(self, attempt: Attempt, best_before: Attempt | None) -> Step:
        result = attempt.result
        if result is not None and (result.n_passed > 0 or raised_at_a_line(result)):
            return "repair"
        return "restart"

    def step_after_format_error(self) -> Step:
        return "restart"  # nothing passed


class AdaptivePolicy(MixedPolicy):
    """`mixed`, but a repair gets one chance: an attempt that answered a repair in the
    conversation and passed no more than the best earlier attempt starts over. An attempt
    from a fresh prompt (the first, a restart's, or a duplicate's retry, which the loop also
    starts from the task) is judged as `mixed` judges it. On MBPP validation the 1.5B
    model, repairing a program that passed 2 of 3 tests, rewrote the same approach for every
    remaining attempt (515, 537, 585) where 3 or 4 of 4 fresh samples passed."""

    name = "adaptive"

    def step(self, attempt: Attempt, best_before: Attempt | None) -> Step:
        if repair_did_not_improve(attempt, best_before):
            return "restart"
        return super().step(attempt, best_before)


class FreshPolicy(AdaptivePolicy):
    """`adaptive`, restarting from the task alone. On MBPP validation the 1.5B model's
    restarts with a note failed where plain samples of the task passed (515: 0 of 3
    restarts, 4 of 4 samples); a restart without the note is a plain sample."""

    name = "fresh"
    restart_note = False


class ResamplePolicy(RepairPolicy):
    """Start over from the task alone after every failure. On HumanEval the 1.5B model's
    greedy repairs added 8 tasks to its 117 first-attempt passes, where independent samples
    passed 23 of the 47 tasks its first attempt failed (docs/BENCHMARKS.md)."""

    name = "resample"
    restart_note = False

    def step(self, attempt: Attempt, best_before: Attempt | None) -> Step:
        return "restart"

    def step_after_format_error(self) -> Step:
        return "restart"


class TargetedPolicy(ResamplePolicy):
    """Repair only what the feedback locates; sample the task again otherwise. On MBPP
    validation the 1.5B model's repairs of wrong answers anchored on the first program (515,
    537, 585; `resample` passed 67/90 where `mixed` passed 64), while on HumanEval two of the
    four tasks `mixed` passed and `resample` did not were crashes repaired at their line (32,
    139)."""

    name = "targeted"

    def step(self, attempt: Attempt, best_before: Attempt | None) -> Step:
        result = attempt.result
        if result is None or not raised_at_a_line(result):
            return "restart"
        return "restart" if repair_did_not_improve(attempt, best_before) else "repair"


POLICIES: dict[str, RepairPolicy] = {
    p.name: p
    for p in (
        GreedyPolicy(),
        SampledPolicy(),
        RestartPolicy(),
        MixedPolicy(),
        AdaptivePolicy(),
        FreshPolicy(),
        ResamplePolicy(),
        TargetedPolicy(),
    )
}
assert tuple(POLICIES) == POLICY_NAMES, "agent.config.PolicyName and POLICIES must agree"


def get_policy(name: str) -> RepairPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}") from None


# ---------------------------------------------------------------- the cycle


class PolicyCycle(Cycle):
    """A `Cycle` that asks a `RepairPolicy` how to sample and what follows a failure."""

    def __init__(
        self,
        ctx: LoopContext,
        messages: list[ChatMessage],
        *,
        policy: RepairPolicy,
        resample_first: bool = False,
        correction: str | None = None,
    ) -> None:
        super().__init__(ctx, messages, resample_first=resample_first, correction=correction)
        self.policy = policy
        self.restart_turn: int | None = None  # the generation that answers a restart

    def sampling(self, turn: int) -> SamplingParams:
        params = super().sampling(turn)
        repair = self.generations > 1 and self.policy.hot_repairs
        if turn == self.restart_turn or repair:
            params = params.model_copy(
                update={
                    "temperature": max(params.temperature, SAMPLED_TEMPERATURE),
                    "seed": self.ctx.settings.seed + turn,
                }
            )
        return params

    def best_before(self, turn: int) -> Attempt | None:
        """The cycle's best executed attempt before `turn` (ties to the later one)."""
        best: Attempt | None = None
        for attempt in self.ctx.state.episode.attempts:
            if attempt.cycle != self.cycle or attempt.turn >= turn:
                continue
            if not attempt.executed or attempt.duplicate_of is not None:
                continue
            if best is None or attempt.score >= best.score:
                best = attempt
        return best

    def after_failure(self, turn: int, feedback: str | None) -> Generator[Event, None, None]:
        attempt = self.ctx.state.episode.attempt_at(turn)
        if (
            self.used >= self.budget
            or self.correction is not None
            or attempt is None
            or self.policy.step(attempt, self.best_before(turn)) == "repair"
        ):
            yield from super().after_failure(turn, feedback)
            return
        yield from self.restart(turn, failure_note(attempt.result))

    def after_format_error(self, turn: int, message: str) -> Generator[Event, None, None]:
        if (
            self.used >= self.budget
            or self.correction is not None
            or self.policy.step_after_format_error() == "repair"
        ):
            yield from super().after_format_error(turn, message)
            return
        yield from self.restart(turn, "its answer could not be used: " + _clip(message, NOTE_CHARS))

    def after_duplicate(
        self, turn: int, earlier: Attempt, proposal: Proposal
    ) -> Generator[Event, None, None]:
        """Under a policy that starts over from the task alone, a repeated program does too:
        the first attempt's prompt again (its prefix is cached), sampled hotter with a new
        seed, with no note. The note (`Cycle.after_duplicate`) cost MBPP's `resample` run a
        fifth more prompt evaluation than the samples it is measured against."""
        if self.policy.restart_note or self.correction is not None:
            yield from super().after_duplicate(turn, earlier, proposal)
            return
        if earlier.passed:
            raise CycleEnd("passed")  # a retry that found the same passing program
        self.resample += 1
        self.floor = 1
        yield RepairRequested(turn=turn, feedback="", reason="duplicate")
        self.messages[:] = [self.messages[0], self.task_message]

    def restart(self, turn: int, note: str) -> Generator[Event, None, None]:
        """Start the conversation over from the task, with `note` on what failed (unless
        the policy restarts from the task alone)."""
        text = ""
        task = self.task_message
        if self.policy.restart_note:
            text = prompts.restart_prompt(note, self.ctx.env.reply_instruction)
            task = ChatMessage(role="user", content=f"{task.content}\n\n{text}")
        yield RepairRequested(turn=turn, feedback=text, reason="restart")
        self.messages[:] = [self.messages[0], task]
        self.restart_turn = self.ctx.state.turn + 1


def make_cycle(
    ctx: LoopContext,
    messages: list[ChatMessage],
    *,
    resample_first: bool = False,
    correction: str | None = None,
) -> Cycle:
    """The cycle for `ctx.settings.policy`: `greedy` is the plain `Cycle`."""
    policy = get_policy(ctx.settings.policy)
    if isinstance(policy, GreedyPolicy):
        return Cycle(ctx, messages, resample_first=resample_first, correction=correction)
    return PolicyCycle(
        ctx, messages, policy=policy, resample_first=resample_first, correction=correction
    )
