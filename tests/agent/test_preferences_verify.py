"""Verifiers run only in the sandbox; a bad one is contained and discarded with a reason."""

from __future__ import annotations

import os
import time

import pytest

from agent.preferences.verify import VerifierRunner, screen
from agent.sandbox.result import TestStatus

GOOD = """
import ast

def evaluate(code: str) -> bool:
    return "os.path" not in code
"""
SNIPPETS = ["from pathlib import Path\nPath('a') / 'b'\n", "import os.path\nos.path.join('a')\n"]


@pytest.fixture(scope="module")
def runner() -> VerifierRunner:
    return VerifierRunner(timeout_s=2)


def test_answers_come_from_one_sandboxed_job(runner: VerifierRunner) -> None:
    run = runner.run(GOOD, SNIPPETS)
    assert run.usable and run.answers == [True, False]
    assert run.accuracy([True, False]) == 1.0 and run.accuracy([False, False]) == 0.5
    assert runner.check(GOOD, SNIPPETS[0]) == TestStatus.PASSED
    assert runner.check(GOOD, SNIPPETS[1]) == TestStatus.FAILED


def test_the_verifier_never_runs_in_fixloops_process(runner: VerifierRunner) -> None:
    source = f"import os\ndef evaluate(code):\n    return os.getpid() != {os.getpid()}\n"
    assert runner.run(source, ["x = 1"]).answers == [True]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("def evaluate(code):\n    while True:\n        pass\n", "hangs: evaluate()"),
        ("while True:\n    pass\ndef evaluate(code):\n    return True\n", "hangs: loading"),
        ("import os\ndef evaluate(code):\n    os._exit(3)\n", "crashes: SystemExit"),
        ("raise RuntimeError('no')\ndef evaluate(code):\n    return True\n", "crashes while"),
        ("def evaluate(code):\n    raise ValueError('bad')\n", "crashes on every snippet"),
        ("def evaluate(code):\n    print('looking')\n    return True\n", "prints to stdout"),
        ("print('hello')\ndef evaluate(code):\n    return True\n", "prints to stdout"),
        ("def evaluate(code):\n    return 1\n", "never returns a bool"),
        ("import socket\ndef evaluate(code):\n    return True\n", "mentions the network"),
        ("def evaluate(code):\n    # download a linter first\n    return True\n", "mentions"),
        (
            "def evaluate(code):\n    s = __import__('so' + 'cket')\n"
            "    s.create_connection(('192.0.2.1', 80), timeout=1)\n    return True\n",
            "tries the network",
        ),
        ("def evaluate(code)\n    return True\n", "does not compile"),
        ("def check(code):\n    return True\n", "does not define"),
        ("evaluate = 3\n", "does not define"),
    ],
)
def test_bad_verifiers_are_contained_and_discarded(
    runner: VerifierRunner, source: str, reason: str
) -> None:
    started = time.perf_counter()
    run = runner.run(source, SNIPPETS)
    assert not run.usable and run.problem is not None and reason in run.problem, run.problem
    assert run.accuracy([True, False]) == 0.0
    assert time.perf_counter() - started < 2 * runner.timeout_s + 5  # one job, one timeout
    assert runner.check(source, SNIPPETS[0]) == TestStatus.SKIPPED  # undecided, never a pass


def test_one_failing_snippet_is_a_wrong_answer_not_a_discard(runner: VerifierRunner) -> None:
    source = (
        "import ast\ndef evaluate(code):\n    ast.parse(code)\n    return 'print' not in code\n"
    )
    run = runner.run(source, ["x = 1", "def (", "print(1)"])
    assert run.usable and run.answers == [True, None, False]
    assert run.first_error.startswith("SyntaxError")
    assert run.accuracy([True, False, False]) == pytest.approx(2 / 3)


def test_screen_accepts_a_plain_verifier() -> None:
    assert screen(GOOD) is None
