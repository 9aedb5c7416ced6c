"""`fixloop prefs`: add (synthesized, hand-written, reference), list, show, test, rm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agent.backends
from agent.backends.scripted import ScriptedBackend
from agent.preferences import PreferenceStore
from agent.preferences.reference import reference
from fixloop.cli import app
from tests.agent.test_preferences_synth import AST_CHECK, SUBSTRING, TEXT, author_replies

HANGS = "def evaluate(code):\n    while True:\n        pass\n"


def cli(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"traceback for {args}: {result.exception!r}\n{result.output}")
    return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FIXLOOP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[ScriptedBackend]:
    """`make_backend` gives a scripted model replaying the synthesis test's replies."""
    made: list[ScriptedBackend] = []

    def make(_settings: object) -> ScriptedBackend:
        backend = ScriptedBackend([*author_replies(), "Not os.path.", "yes", "Text.", "no"])
        made.append(backend)
        return backend

    monkeypatch.setattr(agent.backends, "make_backend", make)
    return made


def store(data_dir: Path) -> PreferenceStore:
    return PreferenceStore.for_data_dir(data_dir)


def test_add_synthesizes_shows_and_stores_on_approval(
    data_dir: Path, scripted: list[ScriptedBackend]
) -> None:
    code, out = cli("prefs", "add", TEXT, "--samples", "7", "--timeout", "2", input="a\n")
    assert code == 0, out
    assert "6 verifier(s) from 7 sample(s): 1 kept" in out
    assert "hangs" in out and "prints to stdout" in out and "mentions the network" in out
    assert "proposed verifier" in out and "ast.walk(tree)" in out
    assert "[a]pprove, [e]dit, [d]iscard" in out
    assert "stored preference use-pathlib-not-os-path (version 1, active)" in out
    pref = store(data_dir).get("use-pathlib-not-os-path")
    assert pref.current.verifier == AST_CHECK and pref.current.source == "synthesized"
    assert pref.current.report["functions_kept"] == 1 and len(pref.current.cases) == 11

    code, out = cli("prefs", "list")
    assert code == 0 and "use-pathlib-not-os-path" in out and "active" in out and TEXT in out
    code, out = cli("prefs", "show", "use-path")
    assert code == 0 and "version 1: synthesized" in out and "yield 17%" in out
    assert "def evaluate" in out and "cases (11)" in out


def test_add_discard_stores_nothing(data_dir: Path, scripted: list[ScriptedBackend]) -> None:
    code, out = cli("prefs", "add", TEXT, "--samples", "7", "--timeout", "2", input="d\n")
    assert code == 1 and "discarded" in out
    assert store(data_dir).all() == []


def test_add_edit_checks_the_edited_verifier(
    data_dir: Path, scripted: list[ScriptedBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    import click

    monkeypatch.setattr(click, "edit", lambda text, extension=".py": SUBSTRING)
    code, out = cli("prefs", "add", TEXT, "--samples", "7", "--timeout", "2", input="e\na\n")
    assert code == 0, out
    assert "accuracy on 11 case(s): 91%" in out and "✗ verifier said False" in out
    current = store(data_dir).get("use-pathlib").current
    assert current.verifier == SUBSTRING and current.source == "edited"


def test_add_yes_with_no_survivor_fails(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent.backends, "make_backend", lambda _s: ScriptedBackend(["no code"] * 3))
    code, out = cli("prefs", "add", TEXT, "--samples", "3", "--yes")
    assert code == 1 and "too little to cross-validate" in out
    assert store(data_dir).all() == []


def test_hand_written_verifier_with_cases_then_test_and_rm(data_dir: Path, tmp_path: Path) -> None:
    ref = reference("pathlib_not_os_path")
    verifier = tmp_path / "check.py"
    verifier.write_text(ref.verifier)
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([c.model_dump() for c in ref.cases]))
    code, out = cli("prefs", "add", TEXT, "--verifier", str(verifier), "--cases", str(cases), "-y")
    assert code == 0, out
    assert "accuracy on 10 case(s): 100%" in out
    assert store(data_dir).get("use-pathlib").current.source == "hand"

    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("from pathlib import Path\nP = Path('a')\n")
    bad.write_text("import os\nP = os.path.join('a', 'b')\n")
    code, out = cli("prefs", "test", "use-pathlib", str(good))
    assert code == 0 and "follows use-pathlib-not-os-path" in out
    code, out = cli("prefs", "test", "use-pathlib", str(bad))
    assert code == 1 and "does not follow" in out

    code, out = cli("prefs", "disable", "use-pathlib")
    assert code == 0 and store(data_dir).active() == []
    code, out = cli("prefs", "enable", "use-pathlib")
    assert code == 0 and len(store(data_dir).active()) == 1
    code, out = cli("prefs", "rm", "use-pathlib")
    assert code == 0 and "removed use-pathlib-not-os-path" in out
    assert store(data_dir).all() == []
    code, out = cli("prefs", "show", "use-pathlib")
    assert code == 2 and "error: no preference 'use-pathlib'" in out


def test_bad_hand_verifiers_are_refused_with_the_reason(data_dir: Path, tmp_path: Path) -> None:
    hangs = tmp_path / "hangs.py"
    hangs.write_text(HANGS)
    code, out = cli("prefs", "add", TEXT, "--verifier", str(hangs), "--timeout", "1", "-y")
    assert code == 2 and "cannot be used: it hangs" in out
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def evaluate(code):\n    return True\n")
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        '{"code": "import os.path", "follows": false}\n{"code": "x = 1", "follows": true}\n'
    )
    code, out = cli("prefs", "add", TEXT, "--verifier", str(wrong), "--cases", str(cases), "-y")
    assert code == 2 and "gets 50% of the cases right" in out
    assert store(data_dir).all() == []


def test_reference_preferences_can_be_listed_and_added(data_dir: Path) -> None:
    code, out = cli("prefs", "reference")
    assert code == 0 and "no_print" in out and len(out.strip().splitlines()) >= 12
    code, out = cli("prefs", "add", "--reference", "no_print")
    assert code == 0 and "stored preference no-print-in-library-code-use (" in out
    assert store(data_dir).active()[0].current.source == "reference"
    code, out = cli("prefs", "add", "--reference", "nope")
    assert code == 2 and "no reference preference 'nope'" in out
