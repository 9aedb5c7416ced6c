"""Run a preference's verifier, always in the sandbox, never in fixloop's process.

A verifier is Python source defining `evaluate(code: str) -> bool`. It is untrusted (a small
model wrote it), so it is screened first (it must compile, define `evaluate` and not mention
the network or downloads, AutoIF's rule) and then only ever runs as the *program* of one
sandboxed assert job: its module and every `evaluate` call execute in the program's process,
while the loop over the snippets and the comparison with the labels run in the judge (a
helper of fixloop's own, passed as the job's setup). One job checks one verifier on all its
snippets, under one timeout.

A verifier that hangs, crashes at load, takes its process down, prints or tries the network
is *contained* (the sandbox stops it) and *discarded* with the reason (`VerifierRun.problem`).
One that raises on a single snippet, or returns something other than a bool, gets no answer
for that snippet (`None`), which counts as a wrong answer when it is scored.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.preferences.store import Case
from agent.sandbox.limits import SandboxLimits
from agent.sandbox.outcome import LOAD_ERROR_PREFIX
from agent.sandbox.result import ExecResult, ExecStatus, TestResult, TestStatus
from agent.sandbox.sandbox import Sandbox

# AutoIF drops functions that mention downloads or the network; running commands is the
# same thing by another route. Matched as words in the source, comments included.
NETWORK_WORDS = re.compile(
    r"\b(socket|urllib\d?|requests|httpx|aiohttp|http\.client|urlopen|ftplib|smtplib|"
    r"telnetlib|download\w*|wget|curl|subprocess|os\.system|os\.popen|pip)\b",
    re.I,
)
NETWORK_ERRORS = re.compile(
    r"network is unreachable|name or service not known|temporary failure in name resolution|"
    r"nodename nor servname|connection refused|no route to host|gaierror",
    re.I,
)
MAX_CASES = 300  # one character each in the judge's answer, which is capped at 600
MAX_SNIPPET_CHARS = 20_000

_ANSWER = {"T": True, "F": False}

# Runs in the judge (fixloop's code, not the verifier's): calls the program's `evaluate` on
# each snippet and answers one character per snippet, T/F for a bool, O for anything else,
# E when it raised; then the first error's text after a '|'.
JUDGE_HELPER = """
def _fixloop_outcomes(evaluate, cases):
    codes, first_error = [], ""
    for case in cases:
        try:
            value = evaluate(case)
        except Exception as exc:
            codes.append("E")
            if not first_error:
                first_error = (type(exc).__name__ + ": " + str(exc))[:200]
            continue
        codes.append("T" if value is True else "F" if value is False else "O")
    answer = "".join(codes)
    return answer + "|" + first_error if first_error else answer
"""


def screen(source: str) -> str | None:
    """Why a verifier must not run at all (None: it may): no compile, no `evaluate`, network."""
    try:
        tree = ast.parse(source)
        compile(tree, "<verifier>", "exec")
    except (SyntaxError, ValueError) as exc:
        return f"does not compile: {type(exc).__name__}: {exc}"
    defines = any(
        isinstance(node, ast.FunctionDef) and node.name == "evaluate" for node in tree.body
    )
    if not defines:
        return "does not define a top-level function evaluate(code)"
    found = NETWORK_WORDS.search(source)
    if found is not None:
        return f"mentions the network or downloads ({found.group(0)!r})"
    return None


@dataclass
class VerifierRun:
    """One verifier on a list of snippets: its answer for each, or why it is unusable."""

    answers: list[bool | None] = field(default_factory=list)  # None: raised, or not a bool
    problem: str | None = None  # set: the verifier is discarded (hangs, crashes, prints, ...)
    first_error: str = ""  # the first exception `evaluate` raised on a snippet
    duration_s: float = 0.0

    @property
    def usable(self) -> bool:
        return self.problem is None

    def accuracy(self, labels: Sequence[bool]) -> float:
        """Share of snippets answered as labelled (a missing answer is wrong)."""
        if not labels or not self.usable:
            return 0.0
        right = sum(
            a is not None and a == label for a, label in zip(self.answers, labels, strict=False)
        )
        return right / len(labels)


class VerifierRunner:
    """Runs verifiers in a sandbox of their own, with tight limits."""

    def __init__(
        self, timeout_s: float = 10.0, memory_mb: int = 512, sandbox: Sandbox | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self.sandbox = sandbox or Sandbox(
            SandboxLimits(
                timeout_s=timeout_s,  # loading the verifier's module
                test_timeout_s=timeout_s,  # evaluate() on every snippet, together
                memory_mb=memory_mb,
                max_output_bytes=4096,
                max_processes=8,
                max_file_mb=1,
            )
        )

    def run(self, source: str, snippets: Sequence[str]) -> VerifierRun:
        """The verifier's answer on each snippet, from one sandboxed job."""
        reason = screen(source)
        if reason is not None:
            return VerifierRun(problem=reason)
        snippets = [s[:MAX_SNIPPET_CHARS] for s in snippets[:MAX_CASES]]
        setup = f"{JUDGE_HELPER}\n_FIXLOOP_CASES = {snippets!r}\n"
        test = "assert _fixloop_outcomes(evaluate, _FIXLOOP_CASES) == 'all answered'"
        result = self.sandbox.run_asserts(source, [test], setup=setup)
        return interpret(result, len(snippets), self.timeout_s)

    def run_cases(self, source: str, cases: Sequence[Case]) -> VerifierRun:
        return self.run(source, [c.code for c in cases])

    def check(self, source: str, code: str) -> TestStatus:
        """One program against one verifier: PASSED (follows), FAILED (does not), or
        SKIPPED (the verifier could not decide: it raised, hung or is broken)."""
        outcome = self.run(source, [code])
        if not outcome.usable or not outcome.answers or outcome.answers[0] is None:
            return TestStatus.SKIPPED
        return TestStatus.PASSED if outcome.answers[0] else TestStatus.FAILED


def interpret(result: ExecResult, n: int, timeout_s: float) -> VerifierRun:
    """What one sandboxed verifier job says: the answers, or the reason to discard it."""
    run = VerifierRun(duration_s=result.duration_s)
    test = result.tests[0] if result.tests else None
    printed = result.stdout.total_bytes > 0
    if test is None or test.status == TestStatus.TIMEOUT or result.status == ExecStatus.TIMEOUT:
        if test is not None and "while loading" in test.message:
            run.problem = f"hangs: loading it took more than {timeout_s:g} s"
        elif test is not None and test.status == TestStatus.TIMEOUT:
            run.problem = f"hangs: evaluate() did not answer {n} snippet(s) within {timeout_s:g} s"
        elif result.status == ExecStatus.TIMEOUT:
            run.problem = f"hangs: it did not finish within {timeout_s:g} s"
        else:
            run.problem = f"crashes: the sandbox reported {result.status.value} and no answer"
        return run
    if test.status == TestStatus.ERROR:
        message = test.message or ""
        text = f"{message}\n{result.stderr.text}"
        if NETWORK_ERRORS.search(text):
            run.problem = "tries the network (the sandbox has none)"
        elif message.startswith(LOAD_ERROR_PREFIX):
            run.problem = f"crashes while loading: {message.removeprefix(LOAD_ERROR_PREFIX)}"
        elif test.exception_type == "NameError" and "evaluate" in message:
            run.problem = "does not define evaluate(code) when run"
        else:
            run.problem = f"crashes: {message or test.exception_type or 'no message'}"
        return run
    answer = _answer(test)
    if answer is None:
        run.problem = "its answers could not be read back from the sandbox"
        return run
    codes, _, run.first_error = answer.partition("|")
    if len(codes) != n or set(codes) - set("TFOE"):
        run.problem = "its answers could not be read back from the sandbox"
        return run
    run.answers = [_ANSWER.get(c) for c in codes]
    if printed:
        run.problem = "prints to stdout (a verifier must only return True or False)"
    elif run.first_error and NETWORK_ERRORS.search(run.first_error):
        run.problem = "tries the network (the sandbox has none)"
    elif n > 1 and all(c == "E" for c in codes):
        run.problem = f"crashes on every snippet: {run.first_error}"
    elif n > 1 and all(c in "EO" for c in codes):
        run.problem = "never returns a bool (True or False)"
    return run


def _answer(test: TestResult) -> str | None:
    """The helper's string, from the failed `== 'all answered'` comparison's actual value."""
    if test.status != TestStatus.FAILED or test.actual is None:
        return None
    try:
        value = ast.literal_eval(test.actual)
    except (SyntaxError, ValueError):
        return None
    return value if isinstance(value, str) else None
