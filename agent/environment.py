"""Where proposals are checked: the environment contract and the function-task environment.

The repair loop (:mod:`agent.loop`) knows nothing about files or tests. It asks an
:class:`Environment` for the first user message (`prompt`), turns each model reply into a
proposal (`parse`, raising :class:`FormatProblem` when the reply has no usable code or an
invalid edit), runs the proposal (`execute`) and renders what went wrong
(`render_feedback`); when the user accepts, the environment keeps it (`accept`; a git
workspace commits). The optional members have documented defaults on the base class, so
nothing in the loop, the session, the TUI or the CLI probes for them.

Two implementations: :class:`FunctionEnv` here (write a function or program, checked by
asserts, a pytest file or expected stdout) and ``agent.workspace.WorkspaceEnv`` (edit files
in a repository, checked by a test command).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from agent import prompts
from agent.episode import FEEDBACK_CHARS
from agent.events import Committed, FileEdit, Task
from agent.extract import complete_code_block, extract_code
from agent.sandbox.result import ExecResult


class FormatProblem(ValueError):
    """A reply that cannot be turned into a proposal; `message` is fed back to the model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Proposal:
    """What one model reply proposes.

    `code` is the program for function tasks, or a readable rendering of the
    edits for workspace tasks (it is what is logged, compared for duplicates
    and shown back to the model); `edits` are the workspace file edits.
    """

    code: str
    edits: list[FileEdit] = field(default_factory=list)


class Environment(ABC):
    """A task environment the repair loop drives: three required methods, the rest optional
    with the defaults below."""

    #: The system message of every conversation (read after `prompt`, which may set it).
    system_prompt: str = prompts.SYSTEM
    #: How repair and correction turns ask for the answer (a workspace asks for file edits).
    reply_instruction: str = prompts.PROGRAM_REPLY
    #: A JSON schema the backend constrains every reply to (llama.cpp: a grammar), or None.
    response_format: dict[str, Any] | None = None
    #: A message for the user about where accepted work went (shown once by the TUI/CLI).
    notice: str | None = None

    @abstractmethod
    def prompt(self, task: Task) -> str:
        """The first user message: the task, its public tests and the answer format."""

    @abstractmethod
    def parse(self, reply: str) -> Proposal:
        """The proposal in a model reply; raises FormatProblem(message) when there is none."""

    @abstractmethod
    def execute(self, proposal: Proposal, task: Task) -> ExecResult:
        """Run the proposal against the task's public checks."""

    def render_feedback(self, result: ExecResult, proposal: Proposal) -> str:
        """What the model is shown about a failed run (logged with it, `ExecFinished.feedback`):
        failing tests with expected and actual values, the error in the model's own lines."""
        from agent.sandbox import render_feedback

        return render_feedback(result, proposal.code, max_chars=FEEDBACK_CHARS)

    def run_hidden(self, code: str, task: Task) -> ExecResult | None:
        """The held-out tests (RLEF's private tests) on `code`; None when there are none."""
        return None

    def reply_complete(self, text: str) -> bool:
        """True once a streamed reply holds all that is needed: generation stops there."""
        return False

    def accept(self, proposal: Proposal, session_id: str) -> Committed | None:
        """Keep an accepted proposal (a workspace commits it); None when nothing is kept."""
        return None

    def close(self) -> None:  # noqa: B027 - optional, nothing to release by default
        """Release what the environment holds (a scratch copy of a repository)."""


class FunctionEnv(Environment):
    """Function/program tasks: code from a fenced block, checked in the sandbox.

    The check is, in order of preference: the task's assert statements, its
    pytest file, its expected stdout; with none of these the program is run and
    passes when it exits cleanly.
    """

    def __init__(
        self, timeout_s: float = 10.0, memory_mb: int = 1024, *, stop_after_code: bool = True
    ) -> None:
        from agent.sandbox import Sandbox, SandboxLimits

        self.sandbox = Sandbox(SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb))
        self.stop_after_code = stop_after_code

    def prompt(self, task: Task) -> str:
        return prompts.task_prompt(task)

    def parse(self, reply: str) -> Proposal:
        code = extract_code(reply)
        if code is None:
            raise FormatProblem(prompts.NO_CODE_MESSAGE)
        return Proposal(code=code)

    def reply_complete(self, text: str) -> bool:
        """True once the reply holds a closed code block with a definition: stop generating.

        The prose models like to add after the code is never used, and on a CPU
        it costs seconds per turn.
        """
        return self.stop_after_code and complete_code_block(text)

    def execute(self, proposal: Proposal, task: Task) -> ExecResult:
        if task.tests:
            return self.sandbox.run_asserts(proposal.code, task.tests, setup=task.test_setup)
        if task.test_file:
            return self.sandbox.run_pytest_file(proposal.code, task.test_file)
        if task.expected_stdout is not None:
            return self.sandbox.run_program(proposal.code, expected_stdout=task.expected_stdout)
        return self.sandbox.run_program(proposal.code)

    def run_hidden(self, code: str, task: Task) -> ExecResult | None:
        """The held-out tests (RLEF's private tests), or None when the task has none."""
        if not task.hidden_tests:
            return None
        return self.sandbox.run_asserts(code, task.hidden_tests, setup=task.test_setup)
