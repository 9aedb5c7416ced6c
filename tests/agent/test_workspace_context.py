"""The bounded context builder: named files, failing tests, their local imports, a budget."""

from __future__ import annotations

from agent.workspace.context import CUT_MARKER, build_context
from agent.workspace.edit_format import parse_edits
from agent.workspace.failure import Failure, failing_test_files, local_imports, named_files

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


def test_small_files_are_shown_whole_and_parse_back_to_the_same_files() -> None:
    failure = Failure(tests=[("tests/test_cart.py", "test_total")])
    ctx = build_context(
        FILES.get, LISTED, failure=failure, named=[], task_text="", budget_tokens=2000
    )
    assert ctx.shown == ["tests/test_cart.py", "src/shop/cart.py"]
    assert ctx.whole == ctx.shown and ctx.tokens <= 2000
    rendered = ctx.render()
    assert "# the failing test, the whole file:" in rendered
    assert "# called by test_total, the whole file:" in rendered
    others = "Other files in the repository: README.md, src/shop/__init__.py"
    assert others in rendered
    # A file shown whole is written in the reply format, so it parses back to itself.
    shown = {e.path: e.content for e in parse_edits(rendered)}
    assert shown["src/shop/cart.py"] == FILES["src/shop/cart.py"]


def test_the_budget_is_kept_in_the_counters_tokens() -> None:
    failure = Failure(tests=[("tests/test_cart.py", "test_total")])
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer
    for budget in (15, 40, 80, 400):
        ctx = build_context(
            FILES.get,
            LISTED,
            failure=failure,
            named=[],
            task_text="",
            budget_tokens=budget,
            count=words,
        )
        assert ctx.tokens <= budget
        assert words(ctx.render()) <= budget + len(ctx.views)  # the joins between views


def test_a_big_non_python_file_named_by_the_task_is_cut_with_a_marker() -> None:
    big = {"notes.txt": "".join(f"line {i}\n" for i in range(500))}
    ctx = build_context(
        big.get,
        ["notes.txt"],
        failure=Failure(),
        named=["notes.txt"],
        task_text="",
        budget_tokens=300,
    )
    [view] = ctx.views
    kept = view.text.count("\n") - 1
    assert view.text.endswith(CUT_MARKER.format(500 - kept) + "\n")
    assert 0 < kept < 500 and ctx.tokens <= 300
