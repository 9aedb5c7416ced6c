"""Context by relevance on a many-function module, and edits that cannot destroy what was not shown.

The module is shaped like the one issue 20 was found on: a long data table first, many
unrelated functions, then the one function the failing test calls. The model must see that
function whole (and what it calls), the rest only as signatures; a whole-file reply that
would delete the module (the truncation marker copied back as the file) is refused, and a
reply that changes one function never drops the rest of the file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.environment import FormatProblem
from agent.events import CodeProposed, EpisodeFinished, ExecFinished, FormatError, Task, TaskKind
from agent.session import AgentSession
from agent.workspace.context import build_context
from agent.workspace.edit_format import parse_edits
from agent.workspace.edits import apply_edits
from agent.workspace.failure import Failure, parse_failure
from agent.workspace.partial import splice_partial


def units_module() -> str:
    lines = ['"""Units and conversions: tables, then helpers."""', "", "import math", ""]
    lines.append("UNITS = {")
    lines += [f"    'unit{i}': ({i}, {i * 1.5}, 'symbol{i}')," for i in range(150)]
    lines += ["}", ""]
    for i in range(12):
        lines += [
            "",
            "",
            f"def helper_{i}(value, scale=1):",
            f'    """Helper number {i}."""',
            f"    result = value * scale + {i}",
            "    if result > 100:",
            "        result = math.floor(result)",
            "    return result",
        ]
    lines += ["", "", "def _clamp(value, low, high):", "    return max(low, min(value, high))"]
    lines += [
        "",
        "",
        "def percent(part, whole):",
        '    """The percentage part/whole, clamped to 0..100."""',
        "    if whole == 0:",
        "        return 0.0",
        "    return _clamp(100.0 * part / (whole + 1), 0.0, 100.0)",
    ]
    lines += [
        "",
        "",
        "class Meter:",
        '    """A running total."""',
        "",
        "    def __init__(self, start=0):",
        "        self.total = start",
        "",
        "    def add(self, amount):",
        "        if amount < 0:",
        "            raise ValueError(amount)",
        "        self.total += amount",
        "        return self",
        "",
        "    def reset(self):",
        "        self.total = 0",
    ]
    for i in range(12):
        lines += ["", f"    def extra_{i}(self, x):", f"        return self.total * x + {i}"]
    return "\n".join(lines) + "\n"


UNITS = units_module()
TESTS = (
    "from units import Meter, helper_3, percent\n\n\n"
    "def test_helper():\n    assert helper_3(2) == 5\n\n\n"
    "def test_percent_half():\n    assert percent(1, 2) == 50.0\n\n\n"
    "def test_meter_takes_back():\n    assert Meter(5).add(-2).total == 3\n"
)
FILES = {"units.py": UNITS, "test_units.py": TESTS, "README.md": "# units\n"}
LISTED = sorted(FILES)
PERCENT_OUTPUT = """\
    def test_percent_half():
>       assert percent(1, 2) == 50.0
E       assert 33.333333333333336 == 50.0
E        +  where 33.333333333333336 = percent(1, 2)

test_units.py:9: AssertionError
FAILED test_units.py::test_percent_half - assert 33.333333333333336 == 50.0
"""
FIXED_LINE = "    return _clamp(100.0 * part / whole, 0.0, 100.0)\n"
BUGGY_LINE = "    return _clamp(100.0 * part / (whole + 1), 0.0, 100.0)\n"


def words(text: str) -> int:
    return len(text.split())


def percent_context(budget: int = 1500):
    failure = parse_failure([], [PERCENT_OUTPUT], LISTED)
    assert failure.tests == [("test_units.py", "test_percent_half")]
    return build_context(
        FILES.get,
        LISTED,
        failure=failure,
        named=[],
        task_text="Make the failing test pass.",
        budget_tokens=budget,
        count=words,
    )


def view_of(ctx, path: str):
    [view] = [v for v in ctx.views if v.path == path]
    return view


def test_the_called_function_is_shown_whole_and_unrelated_ones_as_signatures() -> None:
    ctx = percent_context()
    assert ctx.shown == ["test_units.py", "units.py"]
    assert ctx.whole == ["test_units.py"] and ctx.partial == ["units.py"]
    units = view_of(ctx, "units.py")
    percent_start = UNITS.splitlines().index("def percent(part, whole):") + 1
    # The function the test calls, whole, with its line numbers; what it calls, one level down.
    percent_src = "".join(UNITS.splitlines(keepends=True)[percent_start - 1 : percent_start + 4])
    assert f"# fixloop: lines {percent_start}-{percent_start + 4}\n{percent_src}" in units.text
    assert "def _clamp(value, low, high):\n    return max(low, min(value, high))\n" in units.text
    # Everything else only as signatures: no bodies, no data table.
    assert "def helper_7(value, scale=1): ...\n" in units.text
    assert "Helper number" not in units.text and "result = value * scale" not in units.text
    assert "UNITS = ...\n" in units.text and "symbol42" not in units.text
    assert "class Meter:\n    def __init__(self, start=0): ...\n" in units.text
    assert "self.total = start" not in units.text
    assert "import math" not in units.text  # not needed by the code shown
    # The test is shown too, and the budget (in the counter's tokens) is kept.
    assert "def test_percent_half():" in view_of(ctx, "test_units.py").text
    assert ctx.tokens <= 1500 and words(units.text) < words(UNITS) // 3
    assert "edit it only with SEARCH/REPLACE blocks or whole definitions" in ctx.render()


def test_a_tight_budget_keeps_the_called_function_and_shortens_the_outline() -> None:
    ctx = percent_context(budget=150)
    text = view_of(ctx, "units.py").text
    assert "return _clamp(100.0 * part / (whole + 1), 0.0, 100.0)" in text
    assert ctx.tokens <= 150
    assert "more definitions not listed" in text


def test_a_traceback_into_a_method_shows_it_with_its_class_and_constructor() -> None:
    raise_line = UNITS.splitlines().index("            raise ValueError(amount)") + 1
    output = f"""\
    def test_meter_takes_back():
>       assert Meter(5).add(-2).total == 3

test_units.py:13:
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _

    def add(self, amount):
        if amount < 0:
>           raise ValueError(amount)
E           ValueError: -2

units.py:{raise_line}: ValueError
FAILED test_units.py::test_meter_takes_back - ValueError: -2
"""
    failure = parse_failure([], [output], LISTED)
    assert ("units.py", raise_line) in failure.frames
    ctx = build_context(
        FILES.get, LISTED, failure=failure, named=[], task_text="", budget_tokens=1500, count=words
    )
    text = view_of(ctx, "units.py").text
    assert "class Meter:\n" in text and '"""A running total."""' in text
    assert "    def add(self, amount):\n        if amount < 0:\n" in text
    assert "    def __init__(self, start=0):\n        self.total = start\n" in text
    assert "    def reset(self): ...\n" in text and "def percent(part, whole): ...\n" in text
    assert "    def extra_3(self, x): ...\n" in text and "self.total * x" not in text


def test_names_resolve_through_packages_relative_imports_and_re_exports() -> None:
    files = {
        "src/calc/__init__.py": "from .core import parse\n",
        "src/calc/core.py": (
            "from . import util\nfrom .util import strip\n\n\ndef parse(text):\n"
            "    return util.to_int(strip(text))\n\n\ndef unrelated():\n    return 1\n"
            + "".join(
                f"\n\ndef filler_{i}(x):\n    y = x * {i}\n    if y > 10:\n        y -= 1\n"
                f"    return y + {i}\n"
                for i in range(40)
            )
        ),
        "src/calc/util.py": (
            "def strip(text):\n    return text.strip()\n\n\ndef to_int(text):\n"
            "    return int(text)\n"
        ),
        "tests/test_calc.py": "from calc import parse\n\n\ndef test_parse():\n"
        "    assert parse(' 4 ') == 4\n",
    }
    listed = sorted(files)
    ctx = build_context(
        files.get,
        listed,
        failure=Failure(tests=[("tests/test_calc.py", "test_parse")]),
        named=[],
        task_text="",
        budget_tokens=1000,
        count=words,
    )
    assert ctx.shown[:3] == ["tests/test_calc.py", "src/calc/core.py", "src/calc/util.py"]
    core = view_of(ctx, "src/calc/core.py").text
    assert "def parse(text):\n    return util.to_int(strip(text))\n" in core
    assert "from . import util\nfrom .util import strip\n" in core  # the imports it needs
    assert "def unrelated(): ...\n" in core and "return 1\n" not in core
    assert view_of(ctx, "src/calc/util.py").whole  # small: shown whole


# ---------------------------------------------------------------- edits
def read(files: dict[str, str]):
    return files.get


MARKER_REPLY = (
    "units.py\n```python\n"
    "# ... [fixloop: 226 more lines not shown; edit this file with SEARCH/REPLACE blocks only]\n"
    "```"
)


def test_the_truncation_marker_sent_as_the_file_is_refused() -> None:
    edits = parse_edits(MARKER_REPLY)
    with pytest.raises(FormatProblem) as info:
        apply_edits(edits, read(FILES), whole_seen={"test_units.py"})
    message = info.value.message
    assert "units.py" in message and "Send SEARCH/REPLACE blocks" in message


def test_a_whole_file_for_a_file_seen_in_part_is_refused_with_what_to_send() -> None:
    reply = "units.py\n```python\nimport math\n\nVALUE = 1\n```"
    with pytest.raises(FormatProblem) as info:
        apply_edits(parse_edits(reply), read(FILES), whole_seen={"test_units.py"})
    assert info.value.message.startswith("You were not shown all of units.py (")
    assert "complete new definition of each function you change" in info.value.message
    # Seen whole, a file that would lose most of its lines is refused as well.
    with pytest.raises(FormatProblem, match="would delete most of it"):
        apply_edits(parse_edits(reply), read(FILES), whole_seen={"units.py"})
    # Without the guard (a logged rendering, a user's edit) it is taken as it is.
    assert apply_edits(parse_edits(reply), read(FILES)) == {
        "units.py": "import math\n\nVALUE = 1\n"
    }


def test_one_function_sent_alone_replaces_only_that_function() -> None:
    reply = (
        "units.py\n```python\ndef percent(part, whole):\n    if whole == 0:\n"
        "        return 0.0\n" + FIXED_LINE + "```"
    )
    [new] = apply_edits(parse_edits(reply), read(FILES), whole_seen=set()).values()
    assert new == UNITS.replace(BUGGY_LINE, FIXED_LINE)  # the docstring left out is kept


def test_the_view_copied_back_with_a_fix_changes_only_that_function() -> None:
    """The outline's `...` stubs and the `# fixloop:` notes are not code: nothing is lost."""
    view = view_of(percent_context(), "units.py").text
    env_reply = "units.py\n```python\n" + view.replace(BUGGY_LINE, FIXED_LINE) + "```"
    from agent.workspace.edits import strip_notes

    edits = strip_notes(parse_edits(env_reply))
    [new] = apply_edits(edits, read(FILES), whole_seen=set()).values()
    assert new == UNITS.replace(BUGGY_LINE, FIXED_LINE)


@pytest.mark.parametrize("indent", ["", "    "])
def test_a_lone_method_replaces_its_namesake_in_the_class(indent: str) -> None:
    method = "def reset(self):\n    self.total = 0\n    return self\n"
    reply = "".join(indent + line if line.strip() else line for line in method.splitlines(True))
    new = splice_partial(UNITS, reply)
    assert new == UNITS.replace(
        "    def reset(self):\n        self.total = 0\n",
        "    def reset(self):\n        self.total = 0\n        return self\n",
    )


def test_a_lone_method_is_not_taken_for_a_module_function_of_the_same_name() -> None:
    """semver has both `match(version, match_expr)` and `VersionInfo.match(self, ...)`: the
    1.5B model's corrected method, sent alone, replaced the module function."""
    original = (
        "class Version:\n"
        "    def match(self, expr):\n"
        "        return expr[2:]\n"
        "\n"
        "\n"
        "def match(version, expr):\n"
        "    return Version().match(expr)\n"
    )
    new = splice_partial(original, "def match(self, expr):\n    return expr[1:]\n")
    assert new == original.replace("return expr[2:]", "return expr[1:]")


# ---------------------------------------------------------------- end to end (sandbox)
TEST_CMD = f"{sys.executable} -m pytest -x -q -p no:cacheprovider " + " ".join(
    f"-p no:{name}" for name in ("textual-snapshot", "syrupy", "asyncio", "anyio")
)


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@e", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def units_repo(tmp_path: Path) -> Path:
    root = tmp_path / "units"
    root.mkdir()
    for path, text in FILES.items():
        (root / path).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return root


def test_fixloop_context_prints_what_the_model_would_see(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from fixloop.cli import app

    root = units_repo(tmp_path)
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    args = ["context", "--repo", str(root), "--test-cmd", TEST_CMD + " test_units.py -k percent"]
    shown = CliRunner().invoke(app, [*args, "--estimate"])
    assert shown.exit_code == 0, shown.output
    assert "===== system =====" in shown.stdout and "===== user =====" in shown.stdout
    assert "def percent(part, whole):\n" in shown.stdout and "symbol42" not in shown.stdout
    assert "test command: failed, 1 of 1 tests failing" in shown.stderr
    assert "in part: units.py (lines " in shown.stderr
    as_json = CliRunner().invoke(app, [*args, "--estimate", "--json", "--n-ctx", "8192"])
    data = json.loads(as_json.stdout)
    assert data["counted_by"] == "estimate" and data["first_message_budget"] > 4000
    assert data["prompt_tokens"] <= data["first_message_budget"] + data["prompt_tokens"] // 10
    assert [(f["path"], f["whole"]) for f in data["files"]] == [
        ("test_units.py", True),
        ("units.py", False),
    ]
    # Nothing in the repository changed.
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before
    missing = CliRunner().invoke(app, ["context", "--repo", str(root), "--estimate"])
    assert missing.exit_code == 2 and "--test-cmd is needed" in missing.output


def test_a_repair_on_a_big_module_refuses_the_marker_reply_and_keeps_the_file(
    tmp_path: Path,
) -> None:
    root = units_repo(tmp_path)
    test_cmd = TEST_CMD + " test_units.py -k test_percent_half"
    sr_fix = (
        "units.py\n```python\n<<<<<<< SEARCH\n"
        + BUGGY_LINE
        + "=======\n"
        + FIXED_LINE
        + ">>>>>>> REPLACE\n```"
    )
    backend = ScriptedBackend([MARKER_REPLY, sr_fix])
    task = Task(
        text="Make the failing test pass.",
        kind=TaskKind.WORKSPACE,
        workdir=str(root),
        test_cmd=test_cmd,
    )
    settings = Settings(sessions_dir=tmp_path / "sessions", max_turns=3)
    session = AgentSession(task, backend, settings, purpose="solve")
    try:
        events = list(session.start())
        first = backend.calls[0].messages[1].content
        assert "def percent(part, whole):\n" in first and BUGGY_LINE in first
        # The failure points at `percent`: it is shown alone, without the file's outline.
        assert "def helper_5" not in first and "symbol42" not in first
        assert backend.count_tokens(backend.calls[0].messages) < 4096 - 1024
        [refused] = [e for e in events if isinstance(e, FormatError)]
        assert "units.py" in refused.message and "SEARCH/REPLACE" in refused.message
        [run] = [e for e in events if isinstance(e, ExecFinished)]
        assert run.result.passed
        [proposed] = [e for e in events if isinstance(e, CodeProposed)]
        assert proposed.code.count("def helper_") == 12  # the rest of the file is all there
        assert isinstance(events[-1], EpisodeFinished) and events[-1].outcome == "passed"
        # One source file in the context: generation may stop once its edit block closes.
        env = session.env
        assert not env.reply_complete(sr_fix[: sr_fix.index("=======")])  # still open
        assert env.reply_complete(sr_fix) and env.reply_complete(sr_fix + "\n\nThis fixes it.")
        test_edit = sr_fix.replace("units.py\n", "test_units.py\n")
        assert not env.reply_complete(test_edit)
    finally:
        session.close()
    shutil.rmtree(root)


DOCUMENTED = (
    "import re\n\n\n"
    + "".join(
        f"def pad_{i}(x):\n    y = x + {i}\n    y *= 2\n    return y\n\n\n" for i in range(30)
    )
    + 'def slug(text):\n    """Make a slug.\n\n'
    + "".join(f"    Detail line {i}.\n" for i in range(60))
    + '    """\n    return re.sub(r"\\W+", "-", text).strip("-")\n'
)


SLUG_FILES = {
    "slugs.py": DOCUMENTED,
    "test_slugs.py": "from slugs import slug\n\n\ndef test_slug():\n"
    "    assert slug('a b') == 'a_b'\n",
}


def one_test_context(files: dict[str, str], test: tuple[str, str], budget: int):
    """The context for one failing test, counted in words."""
    return build_context(
        files.get,
        sorted(files),
        failure=Failure(tests=[test]),
        named=[],
        task_text="",
        budget_tokens=budget,
        count=words,
    )


def test_a_long_docstring_is_cut_in_the_view_and_kept_by_a_whole_definition() -> None:
    files = SLUG_FILES
    ctx = one_test_context(files, ("test_slugs.py", "test_slug"), 600)
    text = view_of(ctx, "slugs.py").text
    assert 'def slug(text):\n    """Make a slug.\n    # fixloop: lines' in text
    assert "the rest of the docstring, not shown" in text and "Detail line 3" not in text
    assert 'return re.sub(r"\\W+", "-", text).strip("-")' in text
    # The model copies the function as it saw it, with its fix: the docstring stays whole.
    start = text.index("def slug(text):")
    fixed = text[start:].split("```")[0].replace('"-", text).strip("-")', '"_", text).strip("_")')
    from agent.workspace.edits import strip_notes

    edits = strip_notes(parse_edits(f"slugs.py\n```python\n{fixed}```"))
    [new] = apply_edits(edits, files.get, whole_seen=set()).values()
    assert new == DOCUMENTED.replace('"-", text).strip("-")', '"_", text).strip("_")')


def test_a_failure_is_described_in_a_few_lines_per_test() -> None:
    from agent.sandbox.result import ExecResult, ExecStatus, TestResult, TestStatus
    from agent.workspace.failure import describe_failure

    raise_line = UNITS.splitlines().index("            raise ValueError(amount)") + 1
    details = (
        "def test_meter_takes_back():\n>       assert Meter(5).add(-2).total == 3\n\n"
        "test_units.py:13: \n_ _ _\n\n    def add(self, amount):\n"
        "E           ValueError: -2\n\n"
        f"units.py:{raise_line}: ValueError"
    )
    result = ExecResult(
        status=ExecStatus.FAILED,
        tests=[
            TestResult(name="test_units.py::test_helper", status=TestStatus.PASSED),
            TestResult(
                name="test_units.py::test_meter_takes_back",
                status=TestStatus.ERROR,
                traceback=details,
            ),
        ],
    )
    text = describe_failure(result, FILES.get, LISTED)
    assert text == (
        "1 of 2 tests failed.\n\nTest: test_units.py::test_meter_takes_back\n"
        "  traceback, innermost last:\n"
        "    test_units.py:13 in test_meter_takes_back: assert Meter(5).add(-2).total == 3\n"
        f"    units.py:{raise_line} in Meter.add: raise ValueError(amount)\n"
        "  E   ValueError: -2"
    )


def test_a_docstring_is_shown_whole_while_room_is_left() -> None:
    """With room left, a docstring is shown whole: inflection's `ordinal` (20 lines of
    doctests) cut after 3 lines made the 1.5B model invent 1,024 tokens of doctests."""
    doc = "".join(f"        >>> ordinal({i})\n        'th'\n" for i in range(15))
    source = (
        DOCUMENTED.split("def slug")[0]
        + 'def ordinal(number):\n    """\n    The suffix.\n\n    Examples::\n\n'
        + doc
        + '    """\n    return "th"\n'
    )
    files = {
        "ords.py": source,
        "test_ords.py": "from ords import ordinal\n\n\ndef test_ordinal():\n"
        "    assert ordinal(1) == 'st'\n",
    }
    ctx = one_test_context(files, ("test_ords.py", "test_ordinal"), 600)
    text = view_of(ctx, "ords.py").text
    assert doc in text and "the rest of the docstring" not in text
    # Short of room, the docstring is cut before the code is left out.
    views = []
    for budget in range(ctx.tokens, 60, -1):
        tight = one_test_context(files, ("test_ords.py", "test_ordinal"), budget)
        views.append(view_of(tight, "ords.py").text if "ords.py" in tight.shown else "")
    assert any("the rest of the docstring, not shown" in v and 'return "th"' in v for v in views)


def test_a_search_copied_from_a_cut_docstring_matches_the_file() -> None:
    """The 1.5B model copies the view into SEARCH, the cut docstring's note and all."""
    files = SLUG_FILES
    ctx = one_test_context(files, ("test_slugs.py", "test_slug"), 600)
    text = view_of(ctx, "slugs.py").text
    assert "the rest of the docstring, not shown" in text
    shown = text[text.index('    """Make a slug.') :].split("```")[0]  # not the def line
    fixed = shown.replace('"-", text).strip("-")', '"_", text).strip("_")')
    reply = f"slugs.py\n```python\n<<<<<<< SEARCH\n{shown}=======\n{fixed}>>>>>>> REPLACE\n```"
    from agent.workspace.edits import strip_notes

    edits = strip_notes(parse_edits(reply), files.get)
    [new] = apply_edits(edits, files.get, whole_seen=set()).values()
    assert new == DOCUMENTED.replace('"-", text).strip("-")', '"_", text).strip("_")')
    # Without the file to restore it from, the note is only stripped: no match.
    with pytest.raises(FormatProblem, match="does not match"):
        apply_edits(strip_notes(parse_edits(reply)), files.get, whole_seen=set())
