"""The repair loop, in RLEF's episode shape, as a generator of typed events.

One *cycle* (a :class:`Cycle`, run by the session) is: generate -> extract -> run ->
on failure the rendered feedback becomes the next user turn -> ... until the
public checks pass or the attempt budget is spent; it ends with one
`EpisodeFinished`. What makes it better than plain re-prompting:

- an attempt equal (after :func:`agent.extract.normalize_code`) to an earlier
  one is not run again and does not use up the budget: it is logged with
  `duplicate_of` and dropped from the conversation, which restarts from the
  task plus what the earlier attempt got wrong (not its code: small models
  copy a program they can see) and a request for a different approach; the
  next generation is sampled at a higher temperature with a new seed (and,
  since greedy decoding has shown it repeats itself, so are the cycle's later
  turns). In a correction cycle the code stays and the model is told to change it;
- a malformed reply equal to an earlier malformed one is free too: dropped, and the same
  request sampled hotter;
- the feedback shows expected versus actual values (the sandbox's renderer);
- the best attempt so far (most tests passed) is kept and is the cycle's
  `final_code`, not merely the last one;
- held-out tests, when the task has them, score the final code afterwards
  (`ExecFinished(hidden=True)`, the RLEF reward) and are never shown.

Long conversations are fitted into the model's context by dropping the oldest
repair exchanges (then shortening the longest messages), logged as
`ContextTrimmed`; the model never sees an overflow.

The cycle is a :class:`Cycle` of small steps a subclass can override one at a time:
`query` (prompt the model, stream the reply), `extract` (the proposal, or a `FormatTurn`),
`check_duplicate` (a `DuplicateTurn`), `execute`, and the three ways to go on:
`after_format_error`, `after_duplicate`, `after_failure`. The end of a cycle (passed,
cancelled) is a `CycleEnd`. The loop only yields events; the session logs each one and
folds it into the episode (`agent.episode`) before the loop resumes, so the loop asks the
fold, not a private copy, which attempt is best.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent import prompts
from agent.backends.base import Backend, BackendError
from agent.context_fit import fit_context
from agent.environment import Environment, FormatProblem, Proposal
from agent.episode import Attempt, Episode
from agent.events import (
    ChatMessage,
    CodeProposed,
    EpisodeFinished,
    ErrorRaised,
    Event,
    ExecFinished,
    FormatError,
    ModelReplied,
    Outcome,
    PromptSent,
    RepairRequested,
    SamplingParams,
    Task,
    TokenDelta,
    TurnStarted,
)
from agent.extract import normalize_code
from agent.sandbox.result import ExecResult

if TYPE_CHECKING:
    from agent.config import Settings

log = logging.getLogger(__name__)

RESAMPLE_TEMPERATURES = (0.8, 1.0, 1.2)  # after the 1st, 2nd, 3rd+ consecutive duplicate


@dataclass
class LoopState:
    """What a session carries from cycle to cycle: the turn counter, the episode so far (the
    fold of every logged event) and the cancel flag."""

    turn: int = 0  # the last turn number used (turns count generations, session-wide)
    episode: Episode = field(default_factory=Episode)
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class CycleResult:
    outcome: Outcome
    best: Attempt | None

    @property
    def proposal(self) -> Proposal | None:
        """The best attempt as a proposal (what accept would keep)."""
        if self.best is None or self.best.code is None:
            return None
        return Proposal(code=self.best.code, edits=list(self.best.edits))


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    duration_s: float
    finish_reason: str | None


@dataclass
class LoopContext:
    """What every cycle of a session works with."""

    task: Task
    backend: Backend
    env: Environment
    settings: Settings
    state: LoopState


# ---------------------------------------------------------------- control flow


class FormatTurn(Exception):
    """The reply had no usable code; `message` goes back to the model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DuplicateTurn(Exception):
    """The reply repeats an earlier attempt's program (after normalization)."""

    def __init__(self, earlier: Attempt) -> None:
        super().__init__(f"repeats turn {earlier.turn}")
        self.earlier = earlier


class CycleEnd(Exception):
    """The cycle is over before its budget: passed, or cancelled."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


# ---------------------------------------------------------------- the cycle


class Cycle:
    """One episode over `messages` (appended to in place); `run()` ends with EpisodeFinished.

    `resample_first` samples the first generation hot (a user's retry); `correction` is the
    user's feedback this cycle answers (ILF), used to tell the model when it repeats a
    program the correction was about.
    """

    def __init__(
        self,
        ctx: LoopContext,
        messages: list[ChatMessage],
        *,
        resample_first: bool = False,
        correction: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.messages = messages
        self.correction = correction
        self.task_message = messages[1]  # the task as first asked, for restarts
        self.cycle = ctx.state.episode.cycle
        self.used = 0  # attempts that count against the budget (duplicates do not)
        self.generations = 0
        self.resample = 1 if resample_first else 0  # consecutive duplicates: how hot
        self.floor = 0  # once greedy decoding has repeated itself, later turns are sampled
        self.completion_tokens = 0
        self.started = time.perf_counter()

    @property
    def budget(self) -> int:
        return self.ctx.settings.max_turns

    # ------------------------------------------------------------ the driver

    def run(self) -> Generator[Event, None, CycleResult]:
        state = self.ctx.state
        state.cancel.clear()  # a cancel() from before this cycle does not stop it
        outcome: Outcome = "failed"
        try:
            while self.used < self.budget and self.generations < 2 * self.budget:
                self.stop_if_cancelled()
                yield from self.turn()
        except CycleEnd as end:
            outcome = end.outcome
        except BackendError as exc:
            outcome = "error"
            yield ErrorRaised(message=str(exc), where="model")
        except Exception as exc:  # the UI must always get an EpisodeFinished
            log.exception("repair loop failed")
            outcome = "error"
            yield ErrorRaised(message=f"{type(exc).__name__}: {exc}", where="loop")
        finally:
            if outcome == "cancelled":
                state.cancel.clear()
        best = state.episode.cycle_best(self.cycle)
        yield from self.finish(outcome, best)
        return CycleResult(outcome=outcome, best=best)

    def turn(self) -> Generator[Event, None, None]:
        """One generation and what follows from it."""
        state = self.ctx.state
        state.turn += 1
        turn = state.turn
        self.generations += 1
        reply = yield from self.query(turn)
        self.messages.append(ChatMessage(role="assistant", content=reply.text))
        try:
            proposal = self.extract(reply)
        except FormatTurn as problem:
            yield FormatError(turn=turn, message=problem.message)
            attempt = self.ctx.state.episode.attempt_at(turn)
            if attempt is not None and attempt.duplicate_of is not None:  # the fold's verdict
                yield from self.after_repeated_format_error()
                return
            self.used += 1
            self.resample = 0
            yield from self.after_format_error(turn, problem.message)
            return
        try:
            self.check_duplicate(proposal)
        except DuplicateTurn as repeat:
            earlier = repeat.earlier
            yield CodeProposed(
                turn=turn, code=proposal.code, edits=proposal.edits, duplicate_of=earlier.turn
            )
            yield from self.after_duplicate(turn, earlier, proposal)
            return
        self.used += 1
        self.resample = 0
        yield CodeProposed(turn=turn, code=proposal.code, edits=proposal.edits)
        self.stop_if_cancelled()
        result, feedback = self.execute(proposal)
        yield ExecFinished(turn=turn, result=result, feedback=feedback)
        if result.passed:
            raise CycleEnd("passed")
        self.stop_if_cancelled()
        yield from self.after_failure(turn, feedback)

    def stop_if_cancelled(self) -> None:
        if self.ctx.state.cancel.is_set():
            raise CycleEnd("cancelled")

    # ------------------------------------------------------------ the steps

    def sampling(self, turn: int) -> SamplingParams:
        s, resample = self.ctx.settings, max(self.resample, self.floor)
        if resample:
            hot = RESAMPLE_TEMPERATURES[min(resample, len(RESAMPLE_TEMPERATURES)) - 1]
            return SamplingParams(
                temperature=max(s.temperature, hot),
                top_p=s.top_p if s.top_p < 1.0 else 0.95,
                max_tokens=s.max_tokens,
                seed=s.seed + turn,
            )
        return SamplingParams(
            temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed
        )

    def query(self, turn: int) -> Generator[Event, None, Reply]:
        """Fit the conversation, send it, stream the reply (ends the cycle on a cancel)."""
        ctx = self.ctx
        yield TurnStarted(turn=turn)
        params = self.sampling(turn)
        fitted = fit_context(self.messages, ctx.backend, params.max_tokens, turn)
        if fitted.trimmed is not None:
            yield fitted.trimmed
            params = params.model_copy(update={"max_tokens": fitted.max_tokens})
        response_format = ctx.env.response_format
        yield PromptSent(
            turn=turn,
            messages=fitted.messages,
            sampling=params,
            prompt_tokens=fitted.prompt_tokens,
            response_format=response_format,
        )
        reply = yield from stream_reply(
            ctx, turn, fitted.messages, params, fitted.prompt_tokens, response_format
        )
        self.completion_tokens += reply.completion_tokens
        if reply.finish_reason == "cancelled":
            raise CycleEnd("cancelled")
        return reply

    def extract(self, reply: Reply) -> Proposal:
        try:
            return self.ctx.env.parse(reply.text)
        except FormatProblem as problem:
            raise FormatTurn(problem.message) from None

    def check_duplicate(self, proposal: Proposal) -> None:
        """Raise DuplicateTurn when an earlier attempt of the session ran the same program."""
        wanted = normalize_code(proposal.code)
        for attempt in self.ctx.state.episode.attempts:
            if (
                attempt.code is not None
                and attempt.duplicate_of is None
                and normalize_code(attempt.code) == wanted
            ):
                raise DuplicateTurn(attempt)

    def execute(self, proposal: Proposal) -> tuple[ExecResult, str | None]:
        """Run the proposal; the feedback the model will be shown when it failed."""
        result = self.ctx.env.execute(proposal, self.ctx.task)
        feedback = None if result.passed else self.ctx.env.render_feedback(result, proposal)
        return result, feedback

    def after_format_error(self, turn: int, message: str) -> Generator[Event, None, None]:
        if self.used < self.budget:
            feedback = prompts.format_error_prompt(message)
            yield RepairRequested(turn=turn, feedback=feedback, reason="format")
            self.messages.append(ChatMessage(role="user", content=feedback))

    def after_repeated_format_error(self) -> Generator[Event, None, None]:
        """A reply that repeats an earlier malformed one word for word (the 1.5B model, greedy,
        on a real repository: the same refused reply three turns running) is treated as a
        duplicate: free, dropped from the conversation, and the same request sampled hotter."""
        self.resample += 1
        self.floor = 1
        self.messages.pop()
        yield from ()

    def after_duplicate(
        self, turn: int, earlier: Attempt, proposal: Proposal
    ) -> Generator[Event, None, None]:
        """Sample hotter and start over from the task, told what failed but not shown the
        program (small models copy a program they can see); in a correction cycle, keep
        the code and insist on a change."""
        if earlier.passed and self.correction is None:
            raise CycleEnd("passed")  # a retry that found the same passing program
        self.resample += 1
        self.floor = 1
        self.messages.pop()  # a repeated program in the context only invites more copying
        if self.correction is not None:
            feedback = prompts.unchanged_prompt(self.correction)
            if not self.messages[-1].content.endswith(feedback):
                self.messages[-1] = ChatMessage(
                    role="user", content=f"{self.messages[-1].content}\n\n{feedback}"
                )
        else:
            # The feedback logged with the earlier run (a failed run always has one here:
            # a passing one ended the cycle above).
            why = earlier.result_feedback or "It did not pass."
            feedback = prompts.duplicate_prompt(earlier.turn, why, self.ctx.env.reply_instruction)
            self.messages[:] = [
                self.messages[0],
                ChatMessage(role="user", content=f"{self.task_message.content}\n\n{feedback}"),
            ]
        yield RepairRequested(turn=turn, feedback=feedback, reason="duplicate")

    def after_failure(self, turn: int, feedback: str | None) -> Generator[Event, None, None]:
        if self.used < self.budget:
            text = prompts.repair_prompt(feedback or "", self.ctx.env.reply_instruction)
            yield RepairRequested(turn=turn, feedback=text, reason="exec")
            self.messages.append(ChatMessage(role="user", content=text))

    def finish(self, outcome: Outcome, best: Attempt | None) -> Iterator[Event]:
        """Score the best attempt on the held-out tests (if any) and end with EpisodeFinished."""
        ctx = self.ctx
        hidden_passed: bool | None = None
        reward: float | None = None
        if ctx.task.hidden_tests and outcome != "cancelled":
            if best is not None and best.code is not None:
                try:
                    hidden = ctx.env.run_hidden(best.code, ctx.task)
                except Exception as exc:
                    log.exception("hidden tests failed to run")
                    yield ErrorRaised(message=f"hidden tests: {exc}", where="sandbox")
                    hidden = None
                if hidden is not None:
                    yield ExecFinished(turn=best.turn, result=hidden, hidden=True)
                    hidden_passed = hidden.passed
            else:
                hidden_passed = False
            if hidden_passed is not None:
                reward = 1.0 if hidden_passed else -1.0
        best_result = best.result if best is not None else None
        n_tests = best_result.n_tests if best_result is not None else len(ctx.task.tests)
        yield EpisodeFinished(
            outcome=outcome,
            turns=self.generations,
            best_turn=best.turn if best is not None else None,
            best_passed=best_result.n_passed if best_result is not None else 0,
            n_tests=n_tests,
            final_code=best.code if best is not None else None,
            hidden_passed=hidden_passed,
            reward=reward,
            completion_tokens=self.completion_tokens,
            duration_s=time.perf_counter() - self.started,
        )


def stream_reply(
    ctx: LoopContext,
    turn: int,
    messages: list[ChatMessage],
    params: SamplingParams,
    prompt_tokens: int,
    response_format: dict | None = None,
) -> Generator[Event, None, Reply]:
    """Stream one reply as TokenDelta events, then ModelReplied; returns the Reply."""
    cancel = ctx.state.cancel
    pieces: list[str] = []
    finish: str | None = None
    completion_tokens: int | None = None
    reported_prompt: int | None = None
    evaluated: int | None = None  # prompt tokens the model evaluated (not cached)
    started = time.perf_counter()
    stream = ctx.backend.stream_chat(messages, params, response_format)
    try:
        for chunk in stream:
            if cancel.is_set():
                finish = "cancelled"
                break
            if chunk.prompt_tokens_evaluated is not None:  # with the first text (or the last)
                evaluated = chunk.prompt_tokens_evaluated
            if chunk.text:
                pieces.append(chunk.text)
                yield TokenDelta(turn=turn, text=chunk.text)
                # A fence just closed and the environment has all it needs: stop generating.
                if "`" in chunk.text and ctx.env.reply_complete("".join(pieces)):
                    finish = "code_complete"
                    break
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if chunk.completion_tokens is not None:
                completion_tokens = chunk.completion_tokens
            if chunk.prompt_tokens is not None:
                reported_prompt = chunk.prompt_tokens
        if cancel.is_set():
            finish = "cancelled"
    finally:
        close = getattr(stream, "close", None)  # a generator, or a plain iterator
        if close is not None:
            close()  # stops a llama.cpp generation that is still running
    duration = time.perf_counter() - started
    text = "".join(pieces)
    if completion_tokens is None:  # stopped early: the backend sent no final count
        completion_tokens = ctx.backend.count_text_tokens(text)
    reply = Reply(
        text=text,
        prompt_tokens=reported_prompt if reported_prompt is not None else prompt_tokens,
        completion_tokens=completion_tokens,
        duration_s=duration,
        finish_reason=finish,
    )
    yield ModelReplied(
        turn=turn,
        text=text,
        prompt_tokens=reply.prompt_tokens,
        prompt_tokens_evaluated=evaluated,
        completion_tokens=reply.completion_tokens,
        duration_s=duration,
        finish_reason=finish,
    )
    return reply
