"""Every attempt is also checked against the user's active preferences.

`PreferenceEnv` wraps a function-task environment: `execute` runs the task's checks as
before, then each active preference's verifier on the proposed code (in the sandbox, with a
timeout), and appends one `TestResult` per preference, named "preference: TEXT". A
violation is a failing test: the result is not passed, the feedback the model sees names the
preference and tells it to rewrite the program to follow it, the repair loop fixes it like
any failing test, and the session log, the TUI's result panel and replays
carry it, with no new loop code. A verifier that cannot decide (it
raised or hung on this code) gives a skipped result, never a failure. The first prompt lists
the preferences, so the model knows them before it is corrected.

Preferences apply to the user's own sessions and to seeding (`chat`, `solve`, `seed`), not
to evaluations, whose numbers must stay comparable; `Settings.preferences = false` turns
them off everywhere. Workspace tasks (file edits in a repository) are not checked yet.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.environment import Environment, FunctionEnv, Proposal
from agent.events import Committed, Task
from agent.preferences.store import Preference, PreferenceError, PreferenceStore
from agent.preferences.verify import VerifierRunner
from agent.sandbox.result import ExecResult, ExecStatus, TestResult, TestStatus

if TYPE_CHECKING:
    from agent.config import Settings

log = logging.getLogger(__name__)

PREFERENCE_PREFIX = "preference: "
CHECKED_PURPOSES = frozenset({"chat", "solve", "seed"})
VIOLATION = (
    "the code does not follow this standing preference of the user; change it so that it "
    "does, and keep the tests passing"
)


MAX_CULPRITS = 3  # definitions named in a violation's message


@dataclass(frozen=True)
class Definition:
    """A top-level function or class of a program, and its source alone."""

    name: str
    line: int
    source: str


def definitions(code: str) -> list[Definition] | None:
    """The program's top-level functions and classes (None: it does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [
        Definition(node.name, node.lineno, ast.get_source_segment(code, node) or "")
        for node in tree.body
        if isinstance(node, kinds)
    ]


def violation_message(pref: Preference, tag: str, culprits: Sequence[Definition] = ()) -> str:
    """What the model is told when its program breaks `pref`: where (the top-level
    definitions the verifier rejects on their own), the rule again as an instruction, and
    what to keep. Without the where, the 0.5B model rewrote the function that already
    followed the rule and left the helper that did not. (An example snippet of code that
    follows the preference was tried too: the 0.5B and the 1.5B models replied with the
    example itself in place of their program, 2026-12-01, `fixloop solve`.)"""
    where = ""
    if culprits:
        named = ", ".join(f"`{d.name}` (line {d.line})" for d in culprits[:MAX_CULPRITS])
        more = len(culprits) - MAX_CULPRITS
        where = f" It is broken in {named}{f' and {more} more' if more > 0 else ''}."
    return (
        f"{VIOLATION}.{where} Rewrite your program so that it follows it: {pref.text} Keep "
        f"its function names and what it returns. [{tag}]"
    )


def preference_name(text: str) -> str:
    """The name of a preference's check in results, feedback and logs."""
    return f"{PREFERENCE_PREFIX}{text}"


def is_preference_check(test: TestResult) -> bool:
    return test.name.startswith(PREFERENCE_PREFIX)


def preferences_prompt(prefs: Sequence[Preference]) -> str:
    lines = "\n".join(f"- {p.text}" for p in prefs)
    return f"Also follow these standing preferences of the user:\n{lines}"


class PreferenceEnv(Environment):
    """An environment whose checks also include the active preferences (see the module)."""

    def __init__(
        self,
        inner: Environment,
        preferences: Sequence[Preference],
        runner: VerifierRunner | None = None,
        *,
        mention_in_prompt: bool = True,
        problem: str | None = None,
        enforce: bool = True,
    ) -> None:
        self.inner = inner
        self.preferences = [p for p in preferences if p.versions]
        self.runner = runner or VerifierRunner()
        self.mention_in_prompt = mention_in_prompt
        # False: the checks are reported but a violation does not fail the attempt (an
        # evaluation measures compliance beside pass rates it keeps comparable)
        self.enforce = enforce
        self.problem = problem  # why the preferences could not be loaded, for the notice
        self.system_prompt = inner.system_prompt
        self.reply_instruction = inner.reply_instruction
        self.response_format = inner.response_format
        notes = [n for n in (inner.notice, problem) if n]
        self.notice = "\n".join(notes) if notes else None

    # ------------------------------------------------------------ the checks
    def check(self, pref: Preference, code: str) -> TestResult:
        """One preference on one program, in the sandbox. The verifier also runs on each
        top-level definition alone (the same job), so a violation names where it is."""
        version = pref.current
        tag = f"{pref.id} v{version.version}"
        name = preference_name(pref.text)
        defs = definitions(code)
        if defs is None:
            return TestResult(
                name=name,
                status=TestStatus.SKIPPED,
                message=f"not checked: the program does not parse [{tag}]",
            )
        run = self.runner.run(version.verifier, [code, *(d.source for d in defs)])
        answer = run.answers[0] if run.usable and run.answers else None
        if answer is True:
            return TestResult(
                name=name,
                status=TestStatus.PASSED,
                message=f"follows [{tag}]",
                duration_s=run.duration_s,
            )
        if answer is False:
            culprits = [d for d, a in zip(defs, run.answers[1:], strict=False) if a is False]
            return TestResult(
                name=name,
                status=TestStatus.FAILED,
                message=violation_message(pref, tag, culprits),
                duration_s=run.duration_s,
            )
        why = run.problem or run.first_error or "it did not return True or False"
        return TestResult(
            name=name,
            status=TestStatus.SKIPPED,
            message=f"not checked: the verifier could not decide ({why}) [{tag}]",
            duration_s=run.duration_s,
        )

    def with_checks(self, result: ExecResult, code: str) -> ExecResult:
        """`result` with one test per preference appended; a violation makes it fail."""
        if not self.preferences:
            return result
        checks = [self.check(pref, code) for pref in self.preferences]
        status = result.status
        violated = any(c.status == TestStatus.FAILED for c in checks)
        if self.enforce and status == ExecStatus.PASSED and violated:
            status = ExecStatus.FAILED
        return result.model_copy(
            update={
                "tests": [*result.tests, *checks],
                "status": status,
                "duration_s": result.duration_s + sum(c.duration_s for c in checks),
            }
        )

    # ------------------------------------------------------------ the contract
    def prompt(self, task: Task) -> str:
        text = self.inner.prompt(task)
        if self.mention_in_prompt and self.preferences:
            text = f"{text}\n\n{preferences_prompt(self.preferences)}"
        return text

    def parse(self, reply: str) -> Proposal:
        return self.inner.parse(reply)

    def execute(self, proposal: Proposal, task: Task) -> ExecResult:
        return self.with_checks(self.inner.execute(proposal, task), proposal.code)

    def render_feedback(self, result: ExecResult, proposal: Proposal) -> str:
        return self.inner.render_feedback(result, proposal)

    def run_hidden(self, code: str, task: Task) -> ExecResult | None:
        return self.inner.run_hidden(code, task)  # the task's own reward, preferences aside

    def reply_complete(self, text: str) -> bool:
        return self.inner.reply_complete(text)

    def accept(self, proposal: Proposal, session_id: str) -> Committed | None:
        return self.inner.accept(proposal, session_id)

    def close(self) -> None:
        self.inner.close()


def with_preferences(env: Environment, settings: Settings, purpose: str = "chat") -> Environment:
    """`env` checked against the active preferences, where they apply; else `env` itself."""
    if not settings.preferences or purpose not in CHECKED_PURPOSES:
        return env
    if not isinstance(env, FunctionEnv):  # workspace edits: not checked yet
        return env
    store = PreferenceStore.for_data_dir(settings.data_dir)
    try:
        active = store.active()
    except PreferenceError as exc:  # one broken file must not stop the user's work
        log.warning("preferences not checked: %s", exc)
        return PreferenceEnv(env, [], problem=f"preferences not checked: {exc}")
    if not active:
        return env
    runner = VerifierRunner(timeout_s=settings.preference_timeout)
    return PreferenceEnv(env, active, runner)


def summary(result: ExecResult) -> dict[str, Any]:
    """The preference checks in one result: {text: status}."""
    return {
        t.name.removeprefix(PREFERENCE_PREFIX): t.status.value
        for t in result.tests
        if is_preference_check(t)
    }
