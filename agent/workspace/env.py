"""WorkspaceEnv: the repair loop's environment for editing files in a (git) directory.

* `prompt(task)` runs the test command once on an untouched scratch copy and
  shows the model the task, the failure and the code that matters to it, chosen by
  relevance within a budget in the model's tokens (:mod:`agent.workspace.context`);
* `parse(reply)` turns whole-file, whole-definition and search/replace edits into the full
  new files, rendered as `Proposal.code` (so the log holds exactly what was tested); a
  whole file for a file the model saw only in part, or one deleting most of a file, is
  refused as a format error;
* `execute` writes them into the scratch copy and runs the test command there
  through the sandbox; the user's working tree is never written before accept;
* `accept` commits fixloop's hunks only (see :mod:`agent.workspace.commit`).

Outside a git repository everything happens in a scratch workspace directory,
which is kept after accept; nothing is committed, and `notice` says so.
"""

from __future__ import annotations

import textwrap
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.environment import Environment, FormatProblem, Proposal
from agent.events import Committed, FileEdit, Task
from agent.sandbox.result import CapturedText, ExecResult, ExecStatus
from agent.workspace.commit import accept_files, commit_message
from agent.workspace.context import Context, build_context, estimate_tokens
from agent.workspace.edit_format import focus_help, format_help, parse_edits, render_files
from agent.workspace.edits import apply_edits, files_from_rendering, strip_notes
from agent.workspace.failure import (
    Failure,
    describe_failure,
    is_test_path,
    named_files,
    parse_failure,
)
from agent.workspace.fileview import Piece
from agent.workspace.line_endings import keep_line_endings, to_lf
from agent.workspace.repo import GitRepo, WorkspaceError, inside
from agent.workspace.scratch import ScratchCopy

if TYPE_CHECKING:
    from agent.backends.base import Backend

SYSTEM = (
    "You are fixloop, a careful programmer working in a repository. Make the smallest change "
    "that completes the task and makes the test command pass. Do not edit the tests unless "
    "the task asks for it. Reply with each file you change: a line with its path relative to "
    "the repository root, then a fenced code block with SEARCH/REPLACE blocks for the lines "
    "you change (or the complete new definition of a function). No other code blocks."
)
REPLY_INSTRUCTION = (
    "Reply with the file's path on a line of its own, then a fenced code block with "
    "SEARCH/REPLACE blocks for the lines to change (or the complete new definition of the "
    "function you change)."
)
# For a failure that points at functions (see `_focused_message`): no answer format in the
# system prompt, so that the model reasons before it writes code.
FOCUS_SYSTEM = (
    "You are fixloop, a careful programmer working in a repository. You fix bugs with the "
    "smallest change. Do not edit the tests unless the task asks for it."
)
FOCUS_REPLY_INSTRUCTION = (
    "Find the bug from the values above, then reply with the file's path on a line of its own "
    "and a ```python code block with the complete corrected definition of the function you fix."
)
MAX_FOCUS = 5  # functions named as where the failure points
# pytest prints every frame whole with its local variables (the feedback shows them per frame:
# what a small model needs to see where a value went wrong). Options in the test command win.
PYTEST_ADDOPTS = "--showlocals --tb=long"
# The first user message's budget without a model to count with: what fits the default
# 4,096-token window with a 1,024-token reply (see `prompt_budget`).
DEFAULT_PROMPT_TOKENS = 2_250
MIN_CONTEXT_TOKENS = 300
_is_test_path = is_test_path


def prompt_budget(n_ctx: int, reply_tokens: int, system_tokens: int) -> int:
    """Tokens the first user message may take: the window less the reply, the system prompt
    and room for one repair exchange (a SEARCH/REPLACE reply and the short failure feedback,
    a sixth of the window), so the first repair turn is not trimmed."""
    return max(512, n_ctx - min(reply_tokens, n_ctx // 2) - system_tokens - n_ctx // 6)


class WorkspaceEnv(Environment):
    """Edit files of the repository (or directory) at `repo`; check them with `test_cmd`."""

    system_prompt = SYSTEM
    reply_instruction = REPLY_INSTRUCTION

    def __init__(
        self,
        repo: Path,
        test_cmd: str,
        files: list[str] | None = None,
        *,
        timeout_s: float = 60.0,
        memory_mb: int = 2048,
        count_tokens: Callable[[str], int] | None = None,
        prompt_tokens: int | None = None,
    ) -> None:
        """`count_tokens` counts tokens of the model in use (default: an estimate) and
        `prompt_tokens` bounds the first user message in them (default: what fits the
        default 4,096-token window; :meth:`for_backend` sets both from a backend)."""
        from agent.sandbox import Sandbox, SandboxLimits

        path = Path(repo).expanduser().resolve()
        if not path.is_dir():
            raise WorkspaceError(f"--repo {repo}: no such directory.")
        if not test_cmd.strip():
            raise WorkspaceError("the test command is empty; pass e.g. --test-cmd 'pytest -x -q'.")
        self.path = path
        self.test_cmd = test_cmd
        self.files = list(files or [])
        self.count_tokens = count_tokens or estimate_tokens
        self.prompt_tokens = prompt_tokens or DEFAULT_PROMPT_TOKENS
        git_repo = GitRepo.find(path)
        self.in_git = git_repo is not None
        try:
            if git_repo is not None:  # before any copy or model call: a merge, a rebase...
                git_repo.require_no_operation_in_progress()
            self.root = git_repo.root if git_repo else path
            self.scratch = ScratchCopy(self.root, git_repo, keep=git_repo is None)
        finally:
            if git_repo is not None:
                git_repo.close()
        if not self.in_git:
            self.notice = (
                f"{path} is not a git repository: fixloop works in the scratch workspace "
                f"{self.scratch.dir}, commits nothing and never writes to {path}; accepted "
                "files stay in the scratch workspace."
            )
        else:
            self.notice = (
                f"Working on a scratch copy of {self.root} (your uncommitted changes included); "
                "your working tree is not touched until you accept."
            )
        weakref.finalize(self, self.scratch.close)
        self.sandbox = Sandbox(SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb))
        self.baseline: ExecResult | None = None
        self.default_path: str | None = None
        self.shown: list[str] = []  # the files the first prompt showed the model
        self.whole_seen: set[str] = set()  # ... of which these whole
        self.context: Context | None = None  # what the first prompt showed
        self.focus: list[Piece] = []  # the functions the failure points at, shown alone
        self._task: Task | None = None
        self._last_files: dict[str, str] = {}
        self._results: dict[str, ExecResult] = {}

    @classmethod
    def for_backend(
        cls,
        repo: Path,
        test_cmd: str,
        files: list[str] | None = None,
        *,
        backend: Backend,
        reply_tokens: int,
        **kwargs: float,
    ) -> WorkspaceEnv:
        """A workspace whose context is counted in `backend`'s tokens and fits its window
        with `reply_tokens` left for the reply."""
        from agent.events import ChatMessage

        system = backend.count_tokens([ChatMessage(role="system", content=SYSTEM)])
        return cls(
            repo,
            test_cmd,
            files,
            count_tokens=backend.count_text_tokens,
            prompt_tokens=prompt_budget(backend.n_ctx, reply_tokens, system),
            **kwargs,  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------ helpers
    @property
    def run_dir(self) -> Path:
        """Where the test command runs: `repo`'s place in the scratch copy."""
        return self.scratch.dir / self.path.relative_to(self.root)

    def _run(self) -> ExecResult:
        return self.sandbox.run_command(
            self.run_dir, self.test_cmd, extra_env={"PYTEST_ADDOPTS": PYTEST_ADDOPTS}
        )

    def _read(self, path: str) -> str | None:
        """A file of the snapshot with LF line ends: what the model sees and edits apply to."""
        text = self.scratch.base_text(path)
        return None if text is None else to_lf(text)

    def base_text(self, path: str) -> str | None:
        """A file of the user's tree as this task found it (LF line ends; None: absent)."""
        try:
            return self._read(path)
        except WorkspaceError:  # binary
            return None

    def _changed(self, files: dict[str, str]) -> dict[str, str]:
        """The files that differ from the snapshot, each with its own line endings back."""
        out = {}
        for path, text in files.items():
            base = self.scratch.base_text(path)
            text = keep_line_endings(base, text)
            if text != base:
                out[path] = text
        return out

    def files_of(self, proposal: Proposal) -> dict[str, str]:
        """The full new files a proposal sets: from its rendering, else from its edits."""
        try:
            return self._changed(files_from_rendering(proposal.code, self._read))
        except FormatProblem:
            if not proposal.edits:
                raise
            return self._changed(apply_edits(proposal.edits, self._read))

    # ------------------------------------------------------------ Environment
    def prompt(self, task: Task) -> str:
        self._task = task
        if self.baseline is None:
            self.scratch.apply({})
            self.baseline = self._run()
        context = self.build_context(task)
        editable = [p for p in context.shown if not is_test_path(p)]
        self.default_path = editable[0] if len(editable) == 1 else None
        self.focus = context.focus[:MAX_FOCUS] if not self.baseline.passed else []
        self.reply_instruction = FOCUS_REPLY_INSTRUCTION if self.focus else REPLY_INSTRUCTION
        self.system_prompt = FOCUS_SYSTEM if self.focus else SYSTEM
        return self._first_message(task, context, self._status(3000))

    def _status(self, max_chars: int) -> str:
        assert self.baseline is not None
        if self.baseline.passed:
            return f"The test command `{self.test_cmd}` currently passes."
        return f"The test command `{self.test_cmd}` currently fails:\n\n" + self._failure_text(
            self.baseline, self._read, max_chars
        )

    def _failure_text(
        self, result: ExecResult, read: Callable[[str], str | None], max_chars: int = 3000
    ) -> str:
        """A failed run for the model: per failing test its E lines and a one-line-per-frame
        traceback (the code is in the context); pytest's full output where there is none."""
        rel = self.path.relative_to(self.root).as_posix()
        try:
            short = describe_failure(
                result, read, self.scratch.files, prefix="" if rel == "." else rel + "/"
            )
        except (OSError, ValueError):
            short = None
        if short is None or len(short) > max_chars:
            return self._feedback_text(result, max_chars)
        return short

    def _first_message(self, task: Task, context: Context | None, status: str) -> str:
        if context is not None and self.focus:
            return self._focused_message(task, status)
        partial = context is None or any(not is_test_path(p) for p in context.partial)
        code = (
            "The relevant code (chosen from the failure; `# fixloop:` lines are fixloop's "
            "notes, not code):\n\n" + context.render().rstrip()
            if context is not None
            else ""
        )
        # (Without a context this reserves room: the edit format is longer than `focus_help`.)
        answer = format_help(self.default_path, partial)
        parts = [f"Task: {task.text.strip()}", status, code, answer]
        return "\n\n".join(p for p in parts if p)

    def _focused_message(self, task: Task, status: str) -> str:
        """The first message for a failure that points at functions: the failure, those
        functions alone (each whole, with its path and first line), and the answer format."""
        blocks = []
        for piece in self.focus:
            lines = (self._read(piece.path) or "").splitlines()[piece.start - 1 : piece.end]
            code = textwrap.dedent("\n".join(lines))
            blocks.append(
                f"`{piece.name}` ({piece.path}, line {piece.start}):\n```python\n{code}\n```"
            )
        one = len(self.focus) == 1
        intro = (
            "The function the failure points at:"
            if one
            else "The functions the failure passes through (the bug is in one of them):"
        )
        paths = {p.path for p in self.focus}
        answer = focus_help(
            paths.pop() if len(paths) == 1 else None, [p.name or "" for p in self.focus]
        )
        parts = [f"Task: {task.text.strip()}", status, intro + "\n\n" + "\n\n".join(blocks), answer]
        return "\n\n".join(parts)

    def build_context(self, task: Task) -> Context:
        """What the model is shown of the repository for `task`, from the baseline run, within
        the budget: the first message less the task, the failure and the answer format."""
        assert self.baseline is not None
        listed = self.scratch.files
        status = self._status(3000)
        fixed = self.count_tokens(self._first_message(task, None, status))
        if self.prompt_tokens - fixed < MIN_CONTEXT_TOKENS:  # a long failure: show less of it
            status = self._status(1000)
            fixed = self.count_tokens(self._first_message(task, None, status))
        failure = Failure()
        if not self.baseline.passed:
            failing = [t for t in self.baseline.tests if t.status.value in ("failed", "error")]
            rel = self.path.relative_to(self.root).as_posix()
            failure = parse_failure(
                [t.name for t in failing],
                [
                    *(t.traceback or t.message for t in failing),
                    self.baseline.stdout.text,
                    self.baseline.stderr.text,
                ],
                listed,
                prefix="" if rel == "." else rel + "/",
            )
        context = build_context(
            self._read,
            listed,
            failure=failure,
            named=named_files(task.text + "\n" + self.test_cmd, [*self.files, *task.files], listed),
            task_text=task.text,
            budget_tokens=max(self.prompt_tokens - fixed - 16, MIN_CONTEXT_TOKENS),
            count=self.count_tokens,
        )
        self.context = context
        self.shown = context.shown
        self.whole_seen = set(context.whole)
        return context

    def reply_complete(self, text: str) -> bool:
        """True once the reply holds a closed code block of edits to the one source file the
        context shows: the prose small models add after it costs seconds a turn on a CPU.
        (With several editable files shown, the model may still be writing another one.)"""
        if self.default_path is None:
            return False
        fences = [ln for ln in text.splitlines() if ln.lstrip().startswith(("```", "~~~"))]
        if len(fences) < 2 or len(fences) % 2:
            return False  # a block is still open
        try:
            edits = parse_edits(text, default_path=self.default_path)
        except FormatProblem:
            return False
        return bool(edits) and all(e.path == self.default_path for e in edits)

    def parse(self, reply: str) -> Proposal:
        edits = strip_notes(parse_edits(reply, default_path=self.default_path), self._read)
        self._check_tests_untouched(edits)
        try:
            for edit in edits:
                inside(self.scratch.dir, edit.path)
            edited = {p: to_lf(t) for p, t in self._apply(edits).items()}
            changed = self._changed(edited)
        except WorkspaceError as exc:  # a symlink out of the tree, a binary file
            raise FormatProblem(str(exc)) from exc
        if not changed:
            raise FormatProblem(
                "Your edits leave every file exactly as it is. Change the code so that the "
                "test command passes."
            )
        # The rendering is LF text; `files_of` gives each file its own line endings back.
        self._last_files = {p: edited[p] for p in changed}
        return Proposal(code=render_files(self._last_files), edits=edits)

    def _apply(self, edits: list[FileEdit]) -> dict[str, str]:
        # What the model was shown decides which whole files it may send (no prompt yet: all).
        whole_seen = self.whole_seen if self.context is not None else None
        try:
            return apply_edits(edits, self._read, candidates=self.shown, whole_seen=whole_seen)
        except FormatProblem:
            if not self._last_files:
                raise
            # SEARCH text copied from the previous attempt: build on that attempt instead.
            previous = self._last_files
            return {
                **previous,
                **apply_edits(
                    edits,
                    lambda p: previous[p] if p in previous else self._read(p),
                    candidates=self.shown,
                    whole_seen=whole_seen,
                ),
            }

    def _check_tests_untouched(self, edits: list[FileEdit]) -> None:
        """Existing tests are the spec: editing one needs the user to name it (`--file`)."""
        allowed = set(self.files) | set(self._task.files if self._task else [])
        for edit in edits:
            if (
                _is_test_path(edit.path)
                and edit.path not in allowed
                and self.scratch.base_text(edit.path) is not None
            ):
                raise FormatProblem(
                    f"Do not change the existing test {edit.path}: the tests say what the code "
                    "must do. Fix the code under test instead."
                )

    def execute(self, proposal: Proposal, task: Task) -> ExecResult:
        self._task = task
        try:
            files = self.files_of(proposal)
        except (FormatProblem, WorkspaceError) as problem:
            text = getattr(problem, "message", str(problem))
            return ExecResult(
                status=ExecStatus.ERROR,
                stderr=CapturedText(text=text, total_bytes=len(text.encode())),
            )
        self.scratch.apply(files)
        result = self._run()
        self._results[proposal.code] = result
        return result

    def _feedback_text(self, result: ExecResult, max_chars: int = 3000) -> str:
        from agent.sandbox import render_feedback

        # No source lines: test line numbers refer to test files, not to the rendering.
        text = render_feedback(result, "", max_chars=max_chars)
        tail = "\n".join(
            line
            for line in result.stdout.text.strip().splitlines()
            if not line.startswith("--- generated xml file:")  # fixloop's own report
        )[-(max_chars * 2 // 5) :]
        if not result.passed and tail and tail[-200:] not in text:
            # pytest's own summary names errors (an ImportError at collection, say) that a
            # per-test report can leave out.
            text = text.rstrip() + "\n\nTest output (end):\n" + tail
        return text

    def render_feedback(self, result: ExecResult, proposal: Proposal) -> str:
        """What the model sees after a failed run: the test output, and how to answer."""
        try:
            changed = self.files_of(proposal)
        except (FormatProblem, WorkspaceError):
            changed = {}

        def read(path: str) -> str | None:
            return to_lf(changed[path]) if path in changed else self._read(path)

        return (
            f"With your change, the test command `{self.test_cmd}` fails:\n\n"
            + self._failure_text(result, read).rstrip()
        )

    def accept(self, proposal: Proposal, session_id: str) -> Committed | None:
        files = self.files_of(proposal)
        if not self.in_git:
            self.scratch.apply(files)
            self.notice = (
                f"{self.path} is not a git repository: the accepted files are in the scratch "
                f"workspace {self.scratch.dir}; copy them over yourself ({', '.join(files)})."
            )
            return None
        base = {p: self.scratch.base_text(p) for p in files}
        result = self._results.get(proposal.code)
        detail = f"Test command: {self.test_cmd}"
        if result is not None:
            detail += f" ({result.status.value}, {result.n_passed}/{result.n_tests} tests passed)"
        summary = self._task.text.strip().splitlines()[0] if self._task and self._task.text else ""
        message = commit_message(summary, files, session_id, detail)
        with GitRepo(self.root) as git_repo:
            sha, committed = accept_files(git_repo, files, base, message)
        return Committed(sha=sha, files=committed, message=message, repo=str(self.root))

    def close(self) -> None:
        self.scratch.close()
