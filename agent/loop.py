"""The repair loop, in RLEF's episode shape, as a generator of typed events.

One *cycle* (a call to :func:`run_cycle`) is: generate -> extract -> run ->
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
- the feedback shows expected versus actual values (the sandbox's renderer);
- the best attempt so far (most tests passed) is kept and is the cycle's
  `final_code`, not merely the last one;
- held-out tests, when the task has them, score the final code afterwards
  (`ExecFinished(hidden=True)`, the RLEF reward) and are never shown.

Long conversations are fitted into the model's context by dropping the oldest
repair exchanges (then shortening the longest messages), logged as
`ContextTrimmed`; the model never sees an overflow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent import prompts
from agent.backends.base import Backend, BackendError
from agent.environment import Environment, FormatProblem, Proposal
from agent.events import (
    ChatMessage,
    CodeProposed,
    ContextTrimmed,
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
class Attempt:
    """One generation and what came of it."""

    turn: int
    reply: str
    proposal: Proposal | None = None  # None: the reply had no usable code (format error)
    result: ExecResult | None = None
    normalized: str | None = None
    duplicate_of: int | None = None

    @property
    def score(self) -> tuple[int, int]:
        """Ordering for "best so far": tests passed, then a clean run over a crash."""
        if self.result is None:
            return (-1, 0)
        return (self.result.n_passed, int(self.result.status != "error"))


@dataclass
class LoopState:
    """What a session carries from cycle to cycle."""

    turn: int = 0  # the last turn number used (turns count generations, session-wide)
    attempts: list[Attempt] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def find_duplicate(self, normalized: str) -> Attempt | None:
        for attempt in self.attempts:
            if attempt.normalized == normalized and attempt.duplicate_of is None:
                return attempt
        return None


@dataclass
class CycleResult:
    outcome: Outcome
    best: Attempt | None
    attempts: list[Attempt]


@dataclass
class Fitted:
    messages: list[ChatMessage]
    prompt_tokens: int
    max_tokens: int
    trimmed: ContextTrimmed | None = None


def fit_context(
    messages: list[ChatMessage], backend: Backend, max_tokens: int, turn: int
) -> Fitted:
    """The messages to send so that prompt + completion fit in `backend.n_ctx`.

    Keeps the system message, the task and the latest exchange; drops the
    oldest repair exchanges first, then shortens the longest remaining
    message from its middle until the prompt leaves the reply at least
    min(max_tokens, n_ctx / 2) tokens, and lowers max_tokens to what is left.
    """
    n_ctx = backend.n_ctx
    before = backend.count_tokens(messages)
    if before + max_tokens <= n_ctx:
        return Fitted(list(messages), before, max_tokens)
    head, tail = list(messages[:2]), list(messages[2:])
    dropped = 0
    count = before
    while len(tail) > 2 and count + max_tokens > n_ctx:
        tail = tail[2:]
        dropped += 2
        count = backend.count_tokens(head + tail)
    kept = head + tail
    reserve = min(max_tokens, n_ctx // 2)  # the reply keeps at least this much room
    budget = n_ctx - reserve
    for _ in range(20):  # shorten the longest message (never the system one) until it fits
        if count <= budget:
            break
        longest = max(range(1, len(kept)), key=lambda i: len(kept[i].content))
        text = kept[longest].content
        chars_per_token = max(sum(len(m.content) for m in kept) / max(count, 1), 1.0)
        cut = min(int((count - budget + 24) * chars_per_token * 1.3), len(text) - 32)
        if cut <= 0:
            break
        keep_head = (len(text) - cut) // 2
        shortened = (
            text[:keep_head]
            + f"\n[... {cut} characters cut to fit the context ...]\n"
            + text[keep_head + cut :]
        )
        kept[longest] = ChatMessage(role=kept[longest].role, content=shortened)
        count = backend.count_tokens(kept)
    new_max = max(min(max_tokens, n_ctx - count), 1)
    trimmed = ContextTrimmed(
        turn=turn, dropped_messages=dropped, tokens_before=before, tokens_after=count, n_ctx=n_ctx
    )
    return Fitted(kept, count, new_max, trimmed)


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    duration_s: float
    finish_reason: str | None


class LoopContext:
    """Everything a cycle needs; `emit` logs an event and returns it (the caller yields it)."""

    def __init__(
        self,
        task: Task,
        backend: Backend,
        env: Environment,
        settings: Settings,
        state: LoopState,
        emit: Callable[[Event], Event],
        render_feedback: Callable[[ExecResult, Proposal], str],
    ) -> None:
        self.task = task
        self.backend = backend
        self.env = env
        self.settings = settings
        self.state = state
        self.emit = emit
        self.render_feedback = render_feedback
        # How the environment wants answers phrased in repair turns (optional member).
        self.reply_instruction = prompts.reply_instruction(env)

    def sampling(self, turn: int, resample: int) -> SamplingParams:
        s = self.settings
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


def stream_reply(
    ctx: LoopContext,
    turn: int,
    messages: list[ChatMessage],
    params: SamplingParams,
    prompt_tokens: int,
    response_format: dict[str, Any] | None = None,
) -> Generator[Event, None, Reply]:
    """Stream one reply as TokenDelta events, then log ModelReplied; returns the Reply."""
    cancel = ctx.state.cancel
    pieces: list[str] = []
    finish: str | None = None
    completion_tokens: int | None = None
    reported_prompt: int | None = None
    complete = getattr(ctx.env, "reply_complete", None)
    started = time.perf_counter()
    stream = ctx.backend.stream_chat(messages, params, response_format)
    try:
        for chunk in stream:
            if cancel.is_set():
                finish = "cancelled"
                break
            if chunk.text:
                pieces.append(chunk.text)
                yield ctx.emit(TokenDelta(turn=turn, text=chunk.text))
                # A fence just closed and the environment has all it needs: stop generating.
                if complete is not None and "`" in chunk.text and complete("".join(pieces)):
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
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # stops a llama.cpp generation that is still running
    duration = time.perf_counter() - started
    text = "".join(pieces)
    if completion_tokens is None:  # stopped early: the backend sent no final count
        count_text = getattr(ctx.backend, "count_text_tokens", None)
        completion_tokens = count_text(text) if count_text is not None else len(pieces)
    reply = Reply(
        text=text,
        prompt_tokens=reported_prompt if reported_prompt is not None else prompt_tokens,
        completion_tokens=completion_tokens,
        duration_s=duration,
        finish_reason=finish,
    )
    yield ctx.emit(
        ModelReplied(
            turn=turn,
            text=text,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            duration_s=duration,
            finish_reason=finish,
        )
    )
    return reply


def _best(attempts: list[Attempt]) -> Attempt | None:
    best: Attempt | None = None
    for attempt in attempts:
        if attempt.proposal is None or attempt.duplicate_of is not None:
            continue
        if best is None or attempt.score >= best.score:  # ties go to the later attempt
            best = attempt
    return best


def run_cycle(
    ctx: LoopContext,
    messages: list[ChatMessage],
    *,
    resample_first: bool = False,
    correction: str | None = None,
) -> Generator[Event, None, CycleResult]:
    """One episode over `messages` (appended to in place); ends with EpisodeFinished.

    `resample_first` samples the first generation hot (a user's retry);
    `correction` is the user's feedback this cycle answers (ILF), used to tell
    the model when it repeats a program the correction was about.
    """
    state, settings, task = ctx.state, ctx.settings, ctx.task
    cycle: list[Attempt] = []
    used = 0  # attempts that count against the budget (duplicates do not)
    generations = 0
    resample = 1 if resample_first else 0  # consecutive duplicates: how hot to sample
    floor = 0  # once greedy decoding has repeated itself, later turns are sampled too
    completion_tokens = 0
    started = time.perf_counter()
    outcome: Outcome = "failed"
    max_turns = settings.max_turns
    state.cancel.clear()  # a cancel() from before this cycle does not stop it
    task_message = messages[1]  # the task as first asked, for restarts after a duplicate
    try:
        while used < max_turns and generations < 2 * max_turns:
            if state.cancel.is_set():
                outcome = "cancelled"
                break
            state.turn += 1
            turn = state.turn
            generations += 1
            yield ctx.emit(TurnStarted(turn=turn))
            params = ctx.sampling(turn, max(resample, floor))
            fitted = fit_context(messages, ctx.backend, params.max_tokens, turn)
            if fitted.trimmed is not None:
                yield ctx.emit(fitted.trimmed)
                params = params.model_copy(update={"max_tokens": fitted.max_tokens})
            # An environment may ask for schema-constrained replies (structured edits).
            response_format = getattr(ctx.env, "response_format", None)
            yield ctx.emit(
                PromptSent(
                    turn=turn,
                    messages=fitted.messages,
                    sampling=params,
                    prompt_tokens=fitted.prompt_tokens,
                    response_format=response_format,
                )
            )
            reply = yield from stream_reply(
                ctx, turn, fitted.messages, params, fitted.prompt_tokens, response_format
            )
            completion_tokens += reply.completion_tokens
            if reply.finish_reason == "cancelled":
                outcome = "cancelled"
                break
            messages.append(ChatMessage(role="assistant", content=reply.text))
            attempt = Attempt(turn=turn, reply=reply.text)
            cycle.append(attempt)
            state.attempts.append(attempt)
            try:
                attempt.proposal = ctx.env.parse(reply.text)
            except FormatProblem as problem:
                used += 1
                resample = 0
                yield ctx.emit(FormatError(turn=turn, message=problem.message))
                if used < max_turns:
                    feedback = prompts.format_error_prompt(problem.message)
                    yield ctx.emit(RepairRequested(turn=turn, feedback=feedback, reason="format"))
                    messages.append(ChatMessage(role="user", content=feedback))
                continue
            proposal = attempt.proposal
            attempt.normalized = normalize_code(proposal.code)
            earlier = state.find_duplicate(attempt.normalized)
            if earlier is not None and earlier is not attempt:
                attempt.duplicate_of = earlier.turn
                attempt.result = earlier.result
                yield ctx.emit(
                    CodeProposed(
                        turn=turn,
                        code=proposal.code,
                        edits=proposal.edits,
                        duplicate_of=earlier.turn,
                    )
                )
                if earlier.result is not None and earlier.result.passed and correction is None:
                    outcome = "passed"  # a retry that found the same passing program
                    break
                resample += 1
                floor = 1
                messages.pop()  # a repeated program in the context only invites more copying
                if correction is not None:
                    # ILF: keep the code the correction is about; insist on a change.
                    feedback = prompts.unchanged_prompt(correction)
                    if not messages[-1].content.endswith(feedback):
                        messages[-1] = ChatMessage(
                            role="user", content=f"{messages[-1].content}\n\n{feedback}"
                        )
                else:
                    # Start over from the task, told what failed but not shown the program.
                    why = (
                        ctx.render_feedback(earlier.result, earlier.proposal or proposal)
                        if earlier.result is not None
                        else "It did not pass."
                    )
                    feedback = prompts.duplicate_prompt(earlier.turn, why, ctx.reply_instruction)
                    messages[:] = [
                        messages[0],
                        ChatMessage(role="user", content=f"{task_message.content}\n\n{feedback}"),
                    ]
                yield ctx.emit(RepairRequested(turn=turn, feedback=feedback, reason="duplicate"))
                continue
            used += 1
            resample = 0
            yield ctx.emit(CodeProposed(turn=turn, code=proposal.code, edits=proposal.edits))
            if state.cancel.is_set():
                outcome = "cancelled"
                break
            attempt.result = ctx.env.execute(proposal, task)
            yield ctx.emit(ExecFinished(turn=turn, result=attempt.result))
            if attempt.result.passed:
                outcome = "passed"
                break
            if state.cancel.is_set():
                outcome = "cancelled"
                break
            if used < max_turns:
                feedback = prompts.repair_prompt(
                    ctx.render_feedback(attempt.result, proposal), ctx.reply_instruction
                )
                yield ctx.emit(RepairRequested(turn=turn, feedback=feedback, reason="exec"))
                messages.append(ChatMessage(role="user", content=feedback))
    except BackendError as exc:
        outcome = "error"
        yield ctx.emit(ErrorRaised(message=str(exc), where="model"))
    except Exception as exc:  # the UI must always get an EpisodeFinished
        log.exception("repair loop failed")
        outcome = "error"
        yield ctx.emit(ErrorRaised(message=f"{type(exc).__name__}: {exc}", where="loop"))
    finally:
        if outcome == "cancelled":
            state.cancel.clear()
    best = _best(cycle)
    if outcome == "passed" and cycle and cycle[-1].duplicate_of is not None:
        best = next((a for a in state.attempts if a.turn == cycle[-1].duplicate_of), best)
    yield from finish_episode(ctx, outcome, cycle, best, generations, completion_tokens, started)
    return CycleResult(outcome=outcome, best=best, attempts=cycle)


def finish_episode(
    ctx: LoopContext,
    outcome: Outcome,
    cycle: list[Attempt],
    best: Attempt | None,
    generations: int,
    completion_tokens: int,
    started: float,
) -> Iterator[Event]:
    """Score the best attempt on the held-out tests (if any) and emit EpisodeFinished."""
    hidden_passed: bool | None = None
    reward: float | None = None
    run_hidden = getattr(ctx.env, "run_hidden", None)
    if ctx.task.hidden_tests and outcome != "cancelled":
        if best is not None and best.proposal is not None and run_hidden is not None:
            try:
                hidden = run_hidden(best.proposal.code, ctx.task)
            except Exception as exc:
                log.exception("hidden tests failed to run")
                yield ctx.emit(ErrorRaised(message=f"hidden tests: {exc}", where="sandbox"))
                hidden = None
            if hidden is not None:
                yield ctx.emit(ExecFinished(turn=best.turn, result=hidden, hidden=True))
                hidden_passed = hidden.passed
        else:
            hidden_passed = False
        if hidden_passed is not None:
            reward = 1.0 if hidden_passed else -1.0
    best_result = best.result if best is not None else None
    n_tests = best_result.n_tests if best_result is not None else len(ctx.task.tests)
    yield ctx.emit(
        EpisodeFinished(
            outcome=outcome,
            turns=generations,
            best_turn=best.turn if best is not None else None,
            best_passed=best_result.n_passed if best_result is not None else 0,
            n_tests=n_tests,
            final_code=best.proposal.code if best is not None and best.proposal else None,
            hidden_passed=hidden_passed,
            reward=reward,
            completion_tokens=completion_tokens,
            duration_s=time.perf_counter() - started,
        )
    )


def run(task: Task, backend: Backend, settings: Settings, **kwargs: Any) -> Iterator[Event]:
    """One logged episode of `task` (an AgentSession's `start()`), closing the log after."""
    from agent.session import AgentSession

    session = AgentSession(task, backend, settings, **kwargs)
    try:
        yield from session.start()
    finally:
        session.close()
