"""The bounded context builder: named files, failing tests, their local imports, a budget."""

from __future__ import annotations

from agent.workspace.context import (
    failing_test_files,
    local_imports,
    named_files,
    render_context,
    select_files,
)
from agent.workspace.edits import parse_edits

FILES = {
    "src/shop/__init__.py": "",
    "src/shop/cart.py": "from .prices import price_of\n\ndef total(items):\n    return 0\n",
    "src/shop/prices.py": "PRICES = {'apple': 3}\n\ndef price_of(name):\n    return PRICES[name]\n",
    "src/shop/unused.py": "X = 1\n",
    "tests/test_cart.py": (
        "from shop.cart import total\n\ndef test_total():\n    assert total([]) == 0\n"
    ),
    "README.md": "# shop\n",
}
LISTED = sorted(FILES)


def test_named_files_come_from_the_task_text_and_flags() -> None:
    text = "Fix total() in src/shop/cart.py; see README.md and shop.prices for context."
    assert named_files(text, ["tests/test_cart.py"], LISTED) == [
        "tests/test_cart.py",
        "README.md",
        "src/shop/cart.py",
    ]


def test_failing_test_files_are_found_in_pytest_output() -> None:
    output = (
        "FAILED tests/test_cart.py::test_total - assert 1 == 0\n"
        '  File "/tmp/x/src/shop/cart.py", line 4, in total\n'
        "tests/test_cart.py:4: AssertionError\n"
    )
    assert failing_test_files(output, LISTED) == ["tests/test_cart.py", "src/shop/cart.py"]


def test_local_imports_resolve_src_layout_and_relative_imports() -> None:
    assert local_imports("tests/test_cart.py", FILES["tests/test_cart.py"], LISTED) == [
        "src/shop/cart.py"
    ]
    assert local_imports("src/shop/cart.py", FILES["src/shop/cart.py"], LISTED) == [
        "src/shop/prices.py"
    ]


def test_selection_follows_imports_and_respects_the_budget() -> None:
    chosen = select_files(FILES.get, LISTED, [], ["tests/test_cart.py"], budget_chars=10_000)
    assert [c.path for c in chosen] == [
        "tests/test_cart.py",
        "src/shop/cart.py",
        "src/shop/prices.py",
    ]
    assert chosen[1].reason == "imported by tests/test_cart.py"
    small = select_files(FILES.get, LISTED, [], ["tests/test_cart.py"], budget_chars=300)
    assert sum(len(c.text) for c in small) <= 300
    rendered = render_context(chosen, LISTED)
    others = "Other files in the repository: README.md, src/shop/__init__.py, src/shop/unused.py"
    assert others in rendered
    # The context is written in the reply format, so it parses back to the same files.
    shown = {e.path: e.content for e in parse_edits(rendered)}
    assert shown["src/shop/cart.py"] == FILES["src/shop/cart.py"]


def test_a_file_too_big_for_the_budget_is_cut_with_a_marker() -> None:
    big = {"mod.py": "".join(f"line_{i} = {i}\n" for i in range(500))}
    [cut] = select_files(big.get, ["mod.py"], ["mod.py"], [], budget_chars=1000)
    assert cut.truncated and len(cut.text) <= 1000
    assert "more lines not shown; edit this file with SEARCH/REPLACE blocks only" in cut.text
