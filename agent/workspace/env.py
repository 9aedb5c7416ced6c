"""WorkspaceEnv: the repair loop's environment for editing files in a (git) directory.

* `prompt(task)` runs the test command once on an untouched scratch copy and
  shows the model the task, the failure and a bounded set of files;
* `parse(reply)` turns whole-file and search/replace edits into the full new
  files, rendered as `Proposal.code` (so the log holds exactly what was tested);
* `execute` writes them into the scratch copy and runs the test command there
  through the sandbox; the user's working tree is never written before accept;
* `accept` commits fixloop's hunks only (see :mod:`agent.workspace.commit`).

Outside a git repository everything happens in a scratch workspace directory,
which is kept after accept; nothing is committed, and `notice` says so.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from agent.environment import Environment, FormatProblem, Proposal
from agent.events import Committed, FileEdit, Task
from agent.sandbox.result import CapturedText, ExecResult, ExecStatus
from agent.workspace.commit import accept_files, commit_message
from agent.workspace.context import (
    failing_test_files,
    named_files,
    render_context,
    select_files,
)
from agent.workspace.edits import (
    apply_edits,
    files_from_rendering,
    format_help,
    keep_line_endings,
    parse_edits,
    render_files,
    to_lf,
)
from agent.workspace.repo import GitRepo, WorkspaceError, inside
from agent.workspace.scratch import ScratchCopy

SYSTEM = (
    "You are fixloop, a careful programmer working in a repository. Make the smallest change "
    "that completes the task and makes the test command pass. Do not edit the tests unless "
    "the task asks for it. Reply with each file you change: a line with its path relative to "
    "the repository root, then a fenced code block with the file's complete new content, or "
    "SEARCH/REPLACE blocks for a small change. No other code blocks."
)


def _is_test_path(path: str) -> bool:
    """pytest's conventions: test_*.py, *_test.py, conftest.py, or under a tests/ directory."""
    p = Path(path)
    return (
        p.name.startswith("test_")
        or p.name.endswith("_test.py")
        or p.name == "conftest.py"
        or any(part in ("tests", "test") for part in p.parts[:-1])
    )


class WorkspaceEnv(Environment):
    """Edit files of the repository (or directory) at `repo`; check them with `test_cmd`."""

    system_prompt = SYSTEM
    reply_instruction = (
        "Reply with each file you change: its path on a line of its own, then the file's "
        "complete new content in a fenced block, or SEARCH/REPLACE blocks for a small change."
    )

    def __init__(
        self,
        repo: Path,
        test_cmd: str,
        files: list[str] | None = None,
        *,
        timeout_s: float = 60.0,
        memory_mb: int = 2048,
        context_chars: int = 6_000,
    ) -> None:
        from agent.sandbox import Sandbox, SandboxLimits

        path = Path(repo).expanduser().resolve()
        if not path.is_dir():
            raise WorkspaceError(f"--repo {repo}: no such directory.")
        if not test_cmd.strip():
            raise WorkspaceError("the test command is empty; pass e.g. --test-cmd 'pytest -x -q'.")
        self.path = path
        self.test_cmd = test_cmd
        self.files = list(files or [])
        self.context_chars = context_chars
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
        self._task: Task | None = None
        self._last_files: dict[str, str] = {}
        self._results: dict[str, ExecResult] = {}

    # ------------------------------------------------------------ helpers
    @property
    def run_dir(self) -> Path:
        """Where the test command runs: `repo`'s place in the scratch copy."""
        return self.scratch.dir / self.path.relative_to(self.root)

    def _run(self) -> ExecResult:
        return self.sandbox.run_command(self.run_dir, self.test_cmd)

    def _read(self, path: str) -> str | None:
        """A file of the snapshot with LF line ends: what the model sees and edits apply to."""
        text = self.scratch.base_text(path)
        return None if text is None else to_lf(text)

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
        listed = self.scratch.files
        output = self.baseline.stdout.text + "\n" + self.baseline.stderr.text
        named = named_files(task.text, [*self.files, *task.files], listed)
        output += "\n" + "\n".join(t.name for t in self.baseline.tests)
        failing = failing_test_files(output, listed) if not self.baseline.passed else []
        if not named and not failing:  # nothing points anywhere: show the tests and their imports
            failing = [p for p in listed if p.endswith(".py") and _is_test_path(p)][:5]
        chosen = select_files(self._read, listed, named, failing, self.context_chars)
        self.shown = [f.path for f in chosen]
        editable = [f.path for f in chosen if not _is_test_path(f.path)]
        self.default_path = editable[0] if len(editable) == 1 else None
        if self.baseline.passed:
            status = f"The test command `{self.test_cmd}` currently passes."
        else:
            status = (
                f"The test command `{self.test_cmd}` currently fails:\n\n"
                + self._feedback_text(self.baseline)
            )
        return "\n\n".join(
            [
                f"Task: {task.text.strip()}",
                status,
                "The relevant files:\n\n" + render_context(chosen, listed),
                format_help(self.default_path),
            ]
        )

    def parse(self, reply: str) -> Proposal:
        edits = parse_edits(reply, default_path=self.default_path)
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
        try:
            return apply_edits(edits, self._read, candidates=self.shown)
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

    def _feedback_text(self, result: ExecResult) -> str:
        from agent.sandbox import render_feedback

        # No source lines: test line numbers refer to test files, not to the rendering.
        text = render_feedback(result, "", max_chars=3000)
        tail = result.stdout.text.strip()[-1200:]
        if not result.passed and tail and tail[-200:] not in text:
            # pytest's own summary names errors (an ImportError at collection, say) that a
            # per-test report can leave out.
            text = text.rstrip() + "\n\nTest output (end):\n" + tail
        return text

    def render_feedback(self, result: ExecResult, proposal: Proposal) -> str:
        """What the model sees after a failed run: the test output, and how to answer."""
        return (
            f"With your change, the test command `{self.test_cmd}` fails:\n\n"
            + self._feedback_text(result).rstrip()
            + "\n\nSend the corrected files again in the same format: the path on its own "
            "line, then the complete file in a fenced block (or SEARCH/REPLACE blocks)."
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
