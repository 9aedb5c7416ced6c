"""Verifier synthesis with AutoIF's rules, the model scripted, the verifiers really sandboxed."""

from __future__ import annotations

import pytest

from agent.backends.scripted import ScriptedBackend
from agent.preferences import Case
from agent.preferences.reference import reference, reference_set
from agent.preferences.synth import (
    SynthesisConfig,
    check_verifier,
    distinct_cases,
    parse_reply,
    synthesize,
    with_stdlib_imports,
)
from agent.preferences.verify import VerifierRunner

TEXT = "Use pathlib, not os.path."

AST_CHECK = """\
import ast

def evaluate(code: str) -> bool:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path":
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                return False
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("os.path"):
            return False
    return True
"""
SUBSTRING = 'def evaluate(code: str) -> bool:\n    return "os.path" not in code\n'
HANGS = "def evaluate(code: str) -> bool:\n    while True:\n        pass\n"
ALWAYS = "def evaluate(code: str) -> bool:\n    return True\n"
PRINTS = "def evaluate(code: str) -> bool:\n    print(code)\n    return 'os' not in code\n"
NETWORK = "import urllib.request\n\ndef evaluate(code: str) -> bool:\n    return True\n"

FOLLOWS = [
    "from pathlib import Path\nP = Path('a') / 'b'\n",
    "from pathlib import Path\n\ndef home() -> Path:\n    return Path.home()\n",
    "import pathlib\nNAME = pathlib.Path('x.txt').stem\n",
    "# os.path is not used here\nimport os\nN = os.cpu_count()\n",  # the substring trap
    "from pathlib import Path\nSIZE = Path('f').stat().st_size\n",
    "X = 1\n",
]
BREAKS = [
    "import os\nP = os.path.join('a', 'b')\n",
    "import os\nE = os.path.exists('f')\n",
    "from os.path import basename\nB = basename('a/b')\n",
    "import os\nD = os.path.dirname('a/b')\n",
    "import os\nS = os.path.getsize('f')\n",
    "import os\nA = os.path.abspath('.')\n",
]


def fence(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def example(code: str, follows: bool) -> str:
    return fence(f"# follows: {'yes' if follows else 'no'}\n{code}")


def reply(function: str, cases: list[tuple[str, bool]]) -> str:
    parts = ["Here is the checker:", fence(function), "Examples:"]
    parts += [example(code, follows) for code, follows in cases]
    return "\n\n".join(parts) + "\n"


def author_replies() -> list[str]:
    good = [(c, True) for c in FOLLOWS]
    bad = [(c, False) for c in BREAKS]
    return [
        reply(AST_CHECK, good[:3] + bad[:3]),
        reply(SUBSTRING, good[3:] + bad[3:]),
        reply(HANGS, good[:2] + bad[:2]),
        reply(ALWAYS, [(FOLLOWS[0], True), (BREAKS[0], True)]),  # mislabelled: a conflict
        reply(PRINTS, good[:1]),
        reply(NETWORK, bad[:1]),
        reply(AST_CHECK.replace("\n\n", "\n\n\n"), good[:1]),  # the same function again
    ]


@pytest.fixture(scope="module")
def runner() -> VerifierRunner:
    return VerifierRunner(timeout_s=2)


ONE_BLOCK_REPLY = """Here's the code for the `evaluate` function and the examples:

```python
def evaluate(code: str) -> bool:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and not node.returns:
            return False
    return True

# Examples
# follows: yes
def add(a: int, b: int) -> int:
    return a + b

# follows: no
def multiply(a, b):
    return a * b
```

In this code: ...
"""


def test_examples_in_the_functions_block_are_read_and_its_missing_import_added(
    runner: VerifierRunner,
) -> None:
    """The 1.5B model's usual reply (recorded): one block, the function then the examples,
    `ast` used and never imported. Before, the whole block was one function that raised
    NameError, and no example was read."""
    functions, cases = parse_reply(ONE_BLOCK_REPLY)
    assert len(functions) == 1 and functions[0].startswith("import ast\ndef evaluate(")
    assert "def add" not in functions[0]
    assert [(c.code.splitlines()[0], c.follows) for c in cases] == [
        ("def add(a: int, b: int) -> int:", True),
        ("def multiply(a, b):", False),
    ]
    assert runner.run_cases(functions[0], cases).answers == [True, False]
    assert (
        with_stdlib_imports("import re as r\ndef evaluate(code):\n    return r.M\n")[:6] == "import"
    )
    assert with_stdlib_imports("import re\nx = re.M\n") == "import re\nx = re.M\n"


def test_parse_reply_reads_the_function_and_labelled_examples() -> None:
    functions, cases = parse_reply(reply(SUBSTRING, [("x = 1", True), ("import os.path", False)]))
    assert functions == [SUBSTRING]
    assert cases == [
        Case(code="x = 1\n", follows=True),
        Case(code="import os.path\n", follows=False),
    ]
    # looser markers a small model writes
    text = "```python\n# GOOD\nx = 1\n```\n```python\n# Follows = No\ny = 2\n```\n"
    assert [c.follows for c in parse_reply(text)[1]] == [True, False]
    unique, conflicting = distinct_cases(
        [
            Case(code="a", follows=True),
            Case(code="a\n", follows=False),
            Case(code="b", follows=True),
        ]
    )
    assert unique == [Case(code="b", follows=True)] and conflicting == 1


def test_synthesis_keeps_the_accurate_verifier_and_says_why_others_went(
    runner: VerifierRunner,
) -> None:
    back_and_judge = [
        "The code must not use os.path.",
        "yes",
        "The code must not contain the text 'os.path'.",
        "No, it is not.",
    ]
    backend = ScriptedBackend([*author_replies(), *back_and_judge])
    seen: list[tuple[str, int, int]] = []
    config = SynthesisConfig(samples=7, min_functions=3, min_cases=10, min_accuracy=0.8)
    result = synthesize(TEXT, backend, config, runner=runner, progress=lambda *a: seen.append(a))
    assert result.failure is None
    best = result.best
    assert best is not None and best.source == AST_CHECK and best.accuracy == 1.0
    by_source = {c.source: c for c in result.candidates}
    assert len(result.candidates) == 6  # the repeated function counted once
    assert by_source[NETWORK].stage == "screen" and "network" in (by_source[NETWORK].problem or "")
    assert by_source[HANGS].stage == "run" and "hangs" in (by_source[HANGS].problem or "")
    assert by_source[PRINTS].stage == "run" and "prints" in (by_source[PRINTS].problem or "")
    assert by_source[ALWAYS].stage == "accuracy"
    substring = by_source[SUBSTRING]
    assert substring.accuracy is not None and substring.accuracy >= 0.8  # 11 of 12
    assert substring.stage == "back-translation" and "contradicts" in (substring.problem or "")
    # 12 distinct examples, one conflicting pair dropped; every one some function got right
    assert len(result.cases) == 11 and result.conflicting_cases == 1
    assert len(result.kept_cases) == 11
    report = result.report()
    assert report["functions_generated"] == 6 and report["functions_kept"] == 1
    assert report["functions_dropped"] == {
        "screen": 1,
        "run": 2,
        "accuracy": 1,
        "back-translation": 1,
    }
    version = result.version()
    assert version.verifier == AST_CHECK and version.source == "synthesized"
    assert version.model == "scripted" and len(version.cases) == 11
    # K samples at T 0.8 with distinct seeds, then the back-translation greedy
    calls = backend.calls
    assert [c.params.temperature for c in calls[:7]] == [0.8] * 7
    assert len({c.params.seed for c in calls[:7]}) == 7
    assert TEXT in calls[0].messages[-1].content
    assert calls[7].params.temperature == 0.0 and AST_CHECK.strip() in calls[7].messages[-1].content
    assert ("writing verifiers", 7, 7) in seen and ("running verifiers", 5, 5) in seen
    assert seen[-1] == ("back-translating", 2, 2)


def test_too_few_functions_or_examples_stops_before_running_anything(
    runner: VerifierRunner,
) -> None:
    backend = ScriptedBackend(author_replies()[:2])
    result = synthesize(TEXT, backend, SynthesisConfig(samples=2), runner=runner)
    assert result.best is None and result.failure is not None
    assert "2 usable function(s) (need 3)" in result.failure
    assert all(c.answers == [] for c in result.candidates)  # nothing ran
    with pytest.raises(ValueError, match="too little"):
        result.version()
    # the thresholds are configurable: with 2 functions allowed, the same replies yield one
    backend = ScriptedBackend([*author_replies()[:2], "Not os.path.", "yes", "Text.", "Yes."])
    relaxed = SynthesisConfig(samples=2, min_functions=2, min_cases=10)
    result = synthesize(TEXT, backend, relaxed, runner=runner)
    assert result.best is not None and result.best.source == AST_CHECK
    assert len(result.kept) == 2  # the substring check is 11/12 accurate and not contradicted
    no_back = SynthesisConfig(samples=2, min_functions=2, back_translate=False)
    result = synthesize(TEXT, ScriptedBackend(author_replies()[:2]), no_back, runner=runner)
    assert len(result.kept) == 2 and all(c.back_translation is None for c in result.kept)


def test_a_hand_written_verifier_is_checked_before_it_is_stored(runner: VerifierRunner) -> None:
    ref = reference("pathlib_not_os_path")
    run, accuracy = check_verifier(ref.verifier, ref.cases, runner)
    assert run.usable and accuracy == 1.0
    run, accuracy = check_verifier(SUBSTRING, ref.cases, runner)
    assert run.usable and accuracy is not None and accuracy < 1.0
    run, accuracy = check_verifier(ALWAYS, [], runner)  # no cases: a smoke run
    assert run.usable and accuracy is None
    run, _ = check_verifier(HANGS, [], runner)
    assert not run.usable and "hangs" in (run.problem or "")
    run, _ = check_verifier("def evaluate(code):\n    return None\n", [], runner)
    assert not run.usable


def test_the_reference_set_hand_verifiers_agree_with_their_corpora(runner: VerifierRunner) -> None:
    prefs = reference_set()
    assert len(prefs) >= 12 and len({p.id for p in prefs}) == len(prefs)
    for pref in prefs:
        labels = [c.follows for c in pref.cases]
        assert len(labels) >= 10 and 0.3 <= sum(labels) / len(labels) <= 0.7, pref.id
        run = runner.run_cases(pref.verifier, pref.cases)
        assert run.usable, (pref.id, run.problem)
        wrong = [pref.cases[i].code for i, a in enumerate(run.answers) if a != labels[i]]
        assert not wrong, (pref.id, wrong)


def test_measure_reports_yield_and_agreement_with_the_hand_written_verifier(
    runner: VerifierRunner,
) -> None:
    from agent.preferences.measure import measure, totals

    replies = [*author_replies(), "Not os.path.", "yes", "Text 'os.path'.", "no", *["none"] * 3]
    prefs = [reference("pathlib_not_os_path"), reference("no_print")]
    config = SynthesisConfig(samples=7)
    rows = measure(ScriptedBackend(replies[:11]), config, prefs[:1], runner=runner)
    assert rows[0].functions == 6 and rows[0].kept == 1 and rows[0].verifier
    # AST_CHECK misses `from os import path` (1 snippet of 10): the corpus catches the gap
    assert rows[0].agreement == 0.9 and rows[0].kept_agreement == 0.9
    config = SynthesisConfig(samples=3)
    rows += measure(ScriptedBackend(["no code here"] * 3), config, prefs[1:], runner=runner)
    assert not rows[1].verifier and rows[1].agreement is None and rows[1].failure
    total = totals(rows)
    assert total["with_verifier"] == 1 and total["function_yield"] == round(1 / 6, 3)
    assert total["mean_agreement"] == 0.9 and total["agreement_all"] == 0.45
