"""Where proposals are checked: the Environment Protocol and the function-task environment.

The repair loop (:mod:`agent.loop`) knows nothing about files or tests. It asks
an environment for the first user message (`prompt`), turns each model reply
into a proposal (`parse`, raising :class:`FormatProblem` when the reply has no
usable code or an invalid edit), runs the proposal (`execute`) and, when the
user accepts, lets the environment keep it (`accept`; a git workspace commits).

Optional members the loop uses when present: `system_prompt` (str),
`reply_instruction` (str: how repair and correction turns ask for the answer),
`render_feedback(result, proposal) -> str`, `run_hidden(code, task)`,
`reply_complete(text) -> bool` (stop generating: the reply has what is needed)
and `response_format` (e.g. ``{"type": "json_object", "schema": {...}}``: the
backend constrains every reply to the schema; llama.cpp does it with a grammar).

Two implementations: :class:`FunctionEnv` here (write a function or program,
checked by asserts, a pytest file or expected stdout) and
``agent.workspace.WorkspaceEnv`` (edit files in a repository, checked by a test
command).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agent import prompts
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


@runtime_checkable
class Environment(Protocol):
    """A task environment the repair loop drives."""

    def prompt(self, task: Task) -> str:
        """The first user message: the task, its public tests and the answer format."""
        ...

    def parse(self, reply: str) -> Proposal:
        """The proposal in a model reply; raises FormatProblem(message) when there is none."""
        ...

    def execute(self, proposal: Proposal, task: Task) -> ExecResult:
        """Run the proposal against the task's public checks."""
        ...

    def accept(self, proposal: Proposal, session_id: str) -> Committed | None:
        """Keep an accepted proposal (a workspace commits it); None when nothing is kept."""
        ...


class FunctionEnv:
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

    def accept(self, proposal: Proposal, session_id: str) -> Committed | None:
        return None
