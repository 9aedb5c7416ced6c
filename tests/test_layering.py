"""The layering rule: `agent/` is the core and imports none of its consumers.

Every module under agent/ is parsed with `ast`; every Import/ImportFrom node, including
ones inside functions (lazy imports) and `if TYPE_CHECKING:` blocks, is checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agent"
FORBIDDEN = ("evals", "tui", "trainer", "fixloop", "textual")


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for lineno, module in _imported_modules(tree):
        top = module.split(".")[0]
        if top in FORBIDDEN:
            out.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
    return out


def test_agent_modules_exist() -> None:
    assert len(list(AGENT.rglob("*.py"))) > 10


def test_agent_never_imports_its_consumers() -> None:
    violations = [v for path in sorted(AGENT.rglob("*.py")) for v in _violations(path)]
    assert not violations, "agent/ must not import its consumers:\n" + "\n".join(violations)


def test_eval_package_no_longer_lives_in_agent() -> None:
    assert not (AGENT / "eval").exists()
    assert (ROOT / "evals" / "__init__.py").is_file()


@pytest.mark.parametrize(
    "source",
    [
        "import evals",
        "from evals.runner import run_suite",
        "def f():\n    import textual.app\n",
        "def f():\n    from trainer import gate\n",
        "if True:\n    from fixloop.cli import app\n",
        "import tui.app as t",
    ],
)
def test_checker_catches_forbidden_imports(source: str) -> None:
    tops = {m.split(".")[0] for _, m in _imported_modules(ast.parse(source))}
    assert tops & set(FORBIDDEN), source
