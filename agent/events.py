"""The one event stream: every consumer (TUI, CLI, eval, trainer) reads these types.

Each event is a pydantic model with a literal `type`; `Event` is their
discriminated union. The session log is these events as JSON lines, headed by
`SessionStarted`, which carries the schema version. `TokenDelta` is the only
ephemeral event: it is streamed to the UI and never written to the log (the
full reply is logged once as `ModelReplied`).
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from agent.sandbox.result import ExecResult

SCHEMA_VERSION = 3


# ---------------------------------------------------------------- shared pieces
class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class SamplingParams(BaseModel):
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = 0
    stop: list[str] = Field(default_factory=list)


class ModelIdentity(BaseModel):
    """Enough to know exactly which weights produced an output."""

    name: str
    backend: Literal["llama.cpp", "transformers", "openai", "scripted"]
    gguf_sha256: str | None = None
    adapter_sha256: str | None = None
    location: str | None = None  # file path, checkpoint dir or base URL
    # the CPU and llama.cpp build that computed the logits (in-process llama.cpp only):
    # greedy replies repeat token for token only where this is the same
    kernels: str | None = None

    @property
    def key(self) -> str:
        parts = [self.name, (self.gguf_sha256 or "")[:12]]
        if self.adapter_sha256:
            parts.append("lora-" + self.adapter_sha256[:12])
        return ":".join(p for p in parts if p)


class TaskKind(StrEnum):
    FUNCTION = "function"  # write a function/program; checked by asserts, a test file or stdout
    WORKSPACE = "workspace"  # edit files in a directory; checked by a test command


class Task(BaseModel):
    text: str
    kind: TaskKind = TaskKind.FUNCTION
    tests: list[str] = Field(default_factory=list)  # public assert statements, shown to the model
    hidden_tests: list[str] = Field(default_factory=list)  # held out: scored, never shown
    test_setup: str = ""  # code run before the tests (MBPP's test_setup_code)
    test_file: str | None = None  # pytest file content for function tasks
    expected_stdout: str | None = None
    entry_point: str | None = None
    workdir: str | None = None  # workspace tasks: the directory (or repo) worked on
    test_cmd: str | None = None  # workspace tasks: e.g. "pytest -x tests/test_foo.py"
    files: list[str] = Field(default_factory=list)  # workspace files named by the task
    task_id: str | None = None  # e.g. "mbpp/601"
    suite: str | None = None  # "mbpp", "humaneval", "sessions", a file path
    split: str | None = None  # "train", "validation", "test", "prompt"


class FileEdit(BaseModel):
    """A proposed change to one workspace file: a whole file or one search/replace block."""

    path: str
    content: str | None = None  # whole-file replacement
    search: str | None = None
    replace: str | None = None


# ---------------------------------------------------------------- events
class _Event(BaseModel):
    seq: int = 0  # set by the session log: 0 for the header, then 1, 2, ...
    ts: float = Field(default_factory=time.time)


class SessionStarted(_Event):
    type: Literal["session_started"] = "session_started"
    session_id: str
    schema_version: int = SCHEMA_VERSION
    fixloop_version: str
    model: ModelIdentity
    config: dict[str, Any] = Field(default_factory=dict)  # effective settings, secrets removed
    task: Task
    purpose: Literal["chat", "solve", "eval", "seed", "replay"] = "chat"
    cwd: str | None = None


class TurnStarted(_Event):
    type: Literal["turn_started"] = "turn_started"
    turn: int  # 1-based attempt number


class PromptSent(_Event):
    """The exact messages and sampling settings sent to the model."""

    type: Literal["prompt_sent"] = "prompt_sent"
    turn: int
    messages: list[ChatMessage]
    sampling: SamplingParams
    prompt_tokens: int | None = None
    response_format: dict[str, Any] | None = None


class ContextTrimmed(_Event):
    type: Literal["context_trimmed"] = "context_trimmed"
    turn: int
    dropped_messages: int
    tokens_before: int
    tokens_after: int
    n_ctx: int


class TokenDelta(_Event):
    """One streamed piece of the reply. Ephemeral: never written to the log."""

    type: Literal["token_delta"] = "token_delta"
    turn: int
    text: str


class ModelReplied(_Event):
    type: Literal["model_replied"] = "model_replied"
    turn: int
    text: str
    prompt_tokens: int = 0  # the prompt sent
    # of those, the tokens the model evaluated (the rest were its cached prefix of an earlier
    # prompt: KV reuse across turns and samples); None where the backend cannot tell
    prompt_tokens_evaluated: int | None = None
    completion_tokens: int = 0
    duration_s: float = 0.0
    finish_reason: str | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.duration_s if self.duration_s > 0 else 0.0


class CodeProposed(_Event):
    type: Literal["code_proposed"] = "code_proposed"
    turn: int
    code: str  # the program (function tasks) or a rendering of the edits (workspace tasks)
    edits: list[FileEdit] = Field(default_factory=list)
    duplicate_of: int | None = None  # turn whose code this repeats, after normalization


class FormatError(_Event):
    """The reply had no usable code or an invalid edit; the message is fed back."""

    type: Literal["format_error"] = "format_error"
    turn: int
    message: str


class ExecFinished(_Event):
    type: Literal["exec_finished"] = "exec_finished"
    turn: int
    result: ExecResult
    hidden: bool = False  # True for the held-out scoring run (never shown to the model)
    # The execution feedback on a failed run exactly as the model is shown it (the repair
    # turn wraps it in instructions); None when it passed, for hidden runs, and in logs
    # written before schema version 2.
    feedback: str | None = None


class RepairRequested(_Event):
    """The next user turn the model will see, and why it exists."""

    type: Literal["repair_requested"] = "repair_requested"
    turn: int  # the turn being repaired
    feedback: str
    # restart: the conversation starts over from the task with a note on what failed
    # (the restart and mixed policies, agent/policies.py); since schema version 3
    reason: Literal["exec", "format", "duplicate", "user", "restart"]


class UserFeedback(_Event):
    """A natural-language correction typed by the user (ILF)."""

    type: Literal["user_feedback"] = "user_feedback"
    turn: int
    text: str
    code: str  # the attempt the correction is about


class UserEdited(_Event):
    """The user's own edit of an attempt: the strongest refinement there is."""

    type: Literal["user_edited"] = "user_edited"
    turn: int
    original: str
    edited: str
    result: ExecResult | None = None


class UserAccepted(_Event):
    type: Literal["user_accepted"] = "user_accepted"
    turn: int
    code: str
    edited: bool = False


class UserRejected(_Event):
    type: Literal["user_rejected"] = "user_rejected"
    turn: int
    reason: str = ""


class Committed(_Event):
    type: Literal["committed"] = "committed"
    sha: str
    files: list[str]
    message: str
    repo: str


class Correction(_Event):
    """A diff between what fixloop proposed and what the user kept (accept --edited, harvest)."""

    type: Literal["correction"] = "correction"
    source: Literal["edit", "accept_edited", "harvest"]
    proposed: dict[str, str]  # path -> content fixloop proposed
    final: dict[str, str]  # path -> content the user kept
    diff: str
    commit: str | None = None


Outcome = Literal["passed", "failed", "cancelled", "error"]


class EpisodeFinished(_Event):
    type: Literal["episode_finished"] = "episode_finished"
    outcome: Outcome
    turns: int
    best_turn: int | None = None  # attempt with the most tests passed
    best_passed: int = 0
    n_tests: int = 0
    final_code: str | None = None
    hidden_passed: bool | None = None  # held-out tests, where the task has them
    reward: float | None = None  # RLEF: +1 pass, -1 fail (None without hidden tests)
    completion_tokens: int = 0
    duration_s: float = 0.0


class ErrorRaised(_Event):
    type: Literal["error"] = "error"
    message: str
    where: str = ""


Event = Annotated[
    SessionStarted
    | TurnStarted
    | PromptSent
    | ContextTrimmed
    | TokenDelta
    | ModelReplied
    | CodeProposed
    | FormatError
    | ExecFinished
    | RepairRequested
    | UserFeedback
    | UserEdited
    | UserAccepted
    | UserRejected
    | Committed
    | Correction
    | EpisodeFinished
    | ErrorRaised,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EPHEMERAL = frozenset({"token_delta"})


def parse_event(line: str | bytes) -> Event:
    return EVENT_ADAPTER.validate_json(line)
