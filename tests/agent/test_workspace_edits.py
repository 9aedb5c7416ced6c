"""Parsing and applying the model's proposed edits: whole files and SEARCH/REPLACE blocks."""

from __future__ import annotations

import pytest

from agent.environment import FormatProblem
from agent.workspace.edit_format import parse_edits, render_files
from agent.workspace.edits import apply_edits, files_from_rendering

SOURCE = "def inclusive_range(start, stop):\n    return list(range(start, stop))\n"


def read_from(files: dict[str, str]):
    return lambda path: files.get(path)


def test_search_replace_block_applies_to_the_named_file() -> None:
    reply = (
        "The upper end is excluded. Fix:\n\n"
        "ranges.py\n```python\n<<<<<<< SEARCH\n    return list(range(start, stop))\n=======\n"
        "    return list(range(start, stop + 1))\n>>>>>>> REPLACE\n```\n"
    )
    edits = parse_edits(reply)
    assert [(e.path, e.search, e.replace) for e in edits] == [
        (
            "ranges.py",
            "    return list(range(start, stop))\n",
            "    return list(range(start, stop + 1))\n",
        )
    ]
    files = apply_edits(edits, read_from({"ranges.py": SOURCE}))
    assert files == {"ranges.py": SOURCE.replace("stop))", "stop + 1))")}


def test_several_blocks_and_files_apply_in_order() -> None:
    reply = (
        "**pkg/a.py**\n```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nx = 2\n=======\nx = 3\n>>>>>>> REPLACE\n```\n"
        "```python pkg/b.py\nprint('new file')\n```\n"
    )
    files = apply_edits(parse_edits(reply), read_from({"pkg/a.py": "x = 1\ny = 0\n"}))
    assert files == {"pkg/a.py": "x = 3\ny = 0\n", "pkg/b.py": "print('new file')\n"}


def test_whole_file_with_path_line_and_file_prefix() -> None:
    reply = "File: `ranges.py`\n```python\nVALUE = 1\n```\n"
    assert apply_edits(parse_edits(reply), read_from({})) == {"ranges.py": "VALUE = 1\n"}


def test_unlabelled_block_needs_a_default_path() -> None:
    reply = "```python\nVALUE = 1\n```"
    with pytest.raises(FormatProblem, match="no file path"):
        parse_edits(reply)
    [edit] = parse_edits(reply, default_path="ranges.py")
    assert (edit.path, edit.content) == ("ranges.py", "VALUE = 1\n")


def test_trailing_whitespace_differences_are_forgiven() -> None:
    reply = (
        "ranges.py\n```\n<<<<<<< SEARCH\n    return list(range(start, stop))   \n=======\n"
        "    return list(range(start, stop + 1))\n>>>>>>> REPLACE\n```"
    )
    files = apply_edits(parse_edits(reply), read_from({"ranges.py": SOURCE}))
    assert "stop + 1" in files["ranges.py"]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("no code at all", "contains no file edits"),
        ("x.py\n```\n<<<<<<< SEARCH\na\n>>>>>>> REPLACE\n```", "no ======= line"),
        ("x.py\n```\n<<<<<<< SEARCH\na\n=======\nb\n```", "does not end with >>>>>>> REPLACE"),
        ("```\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n```", "has no file path"),
        ("../outside.py\n```python\nx = 1\n```", "outside the repository"),
        ("/etc/passwd\n```\nroot\n```", "is absolute"),
        ("```python pkg/../../up.py\nx = 1\n```", "outside the repository"),
        (".git/config\n```\n[core]\n```", "inside .git"),
    ],
)
def test_invalid_replies_raise_a_clear_format_problem(reply: str, message: str) -> None:
    with pytest.raises(FormatProblem, match=message):
        parse_edits(reply)


def test_search_that_does_not_match_says_so() -> None:
    reply = "ranges.py\n```\n<<<<<<< SEARCH\nreturn range(stop)\n=======\nx\n>>>>>>> REPLACE\n```"
    with pytest.raises(FormatProblem, match="does not match the file") as info:
        apply_edits(parse_edits(reply), read_from({"ranges.py": SOURCE}))
    assert "return range(stop)" in info.value.message


def test_ambiguous_search_is_refused() -> None:
    reply = "a.py\n```\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```"
    with pytest.raises(FormatProblem, match="occurs 2 times"):
        apply_edits(parse_edits(reply), read_from({"a.py": "x = 1\nx = 1\n"}))


def test_empty_search_creates_only_new_files() -> None:
    reply = "new.py\n```\n<<<<<<< SEARCH\n=======\nA = 1\n>>>>>>> REPLACE\n```"
    assert apply_edits(parse_edits(reply), read_from({})) == {"new.py": "A = 1\n"}
    with pytest.raises(FormatProblem, match="empty but the file exists"):
        apply_edits(parse_edits(reply), read_from({"new.py": "B = 2\n"}))


def test_rendering_round_trips_even_with_fences_inside() -> None:
    files = {
        "ranges.py": SOURCE,
        "docs/notes.md": "Example:\n\n```python\nprint(1)\n```\n",
        "data/empty.txt": "",
    }
    code = render_files(files)
    assert files_from_rendering(code, read_from({})) == {**files, "data/empty.txt": ""}


def test_a_path_named_in_the_sentence_before_the_block_is_used() -> None:
    reply = "Here is the corrected `ranges.py` (the end was excluded):\n```python\nA = 1\n```"
    assert [(e.path, e.content) for e in parse_edits(reply)] == [("ranges.py", "A = 1\n")]
    ambiguous = "Since tests/test_ranges.py expects it, change ranges.py:\n```python\nA = 1\n```"
    with pytest.raises(FormatProblem, match="no file path"):
        parse_edits(ambiguous)


ORIGINAL = '''"""Helpers."""

import math

LIMIT = 10


def inclusive_range(start, stop):
    return list(range(start, stop))


@staticmethod
def chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]
'''


def test_a_partial_python_file_is_spliced_into_the_original() -> None:
    partial = (
        "import os\n\nLIMIT = 20\n\n\ndef inclusive_range(start, stop):\n"
        "    return list(range(start, stop + 1))\n\n\ndef helper():\n    return os.sep\n"
    )
    reply = f"ranges.py\n```python\n{partial}```"
    [merged] = apply_edits(parse_edits(reply), read_from({"ranges.py": ORIGINAL})).values()
    assert merged == (
        ORIGINAL.replace("import math\n", "import math\nimport os\n")
        .replace("LIMIT = 10", "LIMIT = 20")
        .replace("range(start, stop))", "range(start, stop + 1))")
        + "\n\ndef helper():\n    return os.sep\n"
    )


def test_a_complete_file_and_a_rendering_are_never_spliced() -> None:
    whole = ORIGINAL.replace("stop))", "stop + 1))")
    reply = f"ranges.py\n```python\n{whole}```"
    assert apply_edits(parse_edits(reply), read_from({"ranges.py": ORIGINAL})) == {
        "ranges.py": whole
    }
    # A rendering is complete: a function removed by the proposal stays removed.
    without_chunks = ORIGINAL.split("\n\n@staticmethod")[0] + "\n"
    rendering = render_files({"ranges.py": without_chunks})
    assert files_from_rendering(rendering, read_from({"ranges.py": ORIGINAL})) == {
        "ranges.py": without_chunks
    }


@pytest.mark.parametrize("placeholder", ["<the whole file>", "...", "# ... rest unchanged"])
def test_a_placeholder_instead_of_code_is_a_format_problem(placeholder: str) -> None:
    reply = f"ranges.py\n```python\n{placeholder}\n```"
    with pytest.raises(FormatProblem, match="holds a placeholder"):
        apply_edits(parse_edits(reply), read_from({"ranges.py": SOURCE}))


def test_the_format_examples_path_counts_as_no_path() -> None:
    reply = (
        "pkg/module.py\n```python\n<<<<<<< SEARCH\n    return list(range(start, stop))\n"
        "=======\n    return list(range(start, stop + 1))\n>>>>>>> REPLACE\n```"
    )
    with pytest.raises(FormatProblem, match="has no file path"):
        parse_edits(reply)
    [edit] = parse_edits(reply, default_path="ranges.py")
    assert edit.path == "ranges.py"


def test_a_search_block_for_a_missing_file_moves_to_the_one_file_that_matches() -> None:
    reply = (
        "src/ranges.py\n```python\n<<<<<<< SEARCH\n    return list(range(start, stop))\n"
        "=======\n    return list(range(start, stop + 1))\n>>>>>>> REPLACE\n```"
    )
    files = {"ranges.py": SOURCE, "other.py": "X = 1\n"}
    assert apply_edits(parse_edits(reply), read_from(files), candidates=list(files)) == {
        "ranges.py": SOURCE.replace("stop))", "stop + 1))")
    }
    with pytest.raises(FormatProblem, match="does not exist"):
        apply_edits(parse_edits(reply), read_from(files))


def test_a_placeholder_search_is_a_format_problem() -> None:
    reply = (
        "ranges.py\n```python\n<<<<<<< SEARCH\n<lines copied exactly from the file>\n=======\n"
        "<the new lines>\n>>>>>>> REPLACE\n```"
    )
    with pytest.raises(FormatProblem, match="holds a placeholder"):
        apply_edits(parse_edits(reply), read_from({"ranges.py": SOURCE}))


def test_a_partial_class_is_spliced_method_by_method() -> None:
    original = (
        "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
        "    def push(self, x):\n        self.items.append(x)\n\n"
        "    def peek(self):\n        return self.items[0]\n"
    )
    reply = (
        "stack.py\n```python\nclass Stack:\n    def peek(self):\n        return self.items[-1]\n\n"
        "    def size(self):\n        return len(self.items)\n```"
    )
    [merged] = apply_edits(parse_edits(reply), read_from({"stack.py": original})).values()
    assert merged == original.replace("items[0]", "items[-1]") + (
        "\n    def size(self):\n        return len(self.items)\n"
    )


def test_a_block_sharing_no_definition_with_the_file_is_not_spliced() -> None:
    other = "def test_something():\n    assert True\n"
    reply = f"ranges.py\n```python\n{other}```"
    assert apply_edits(parse_edits(reply), read_from({"ranges.py": ORIGINAL})) == {
        "ranges.py": other
    }


def test_prose_with_a_slash_is_not_a_path_but_makefile_is() -> None:
    with pytest.raises(FormatProblem, match="no file path"):
        parse_edits("search/replace\n```python\nX = 1\n```")
    [edit] = parse_edits("Makefile\n```\nall:\n\ttrue\n```")
    assert edit.path == "Makefile"


def test_line_endings_of_the_replaced_file_are_kept() -> None:
    from agent.workspace.line_endings import keep_line_endings

    crlf = "a\r\nb\r\nc\r\n"
    assert keep_line_endings(crlf, "a\nB\nc\nd\n") == "a\r\nB\r\nc\r\nd\r\n"
    assert keep_line_endings(crlf, "a\nb") == "a\r\nb"  # no end on the last line stays so
    assert keep_line_endings("a\nb\n", "a\nB\n") == "a\nB\n"  # LF stays LF
    assert keep_line_endings(None, "new\n") == "new\n"  # a new file is left as sent
    # Mixed: untouched lines keep their own ending, new lines get the more common one.
    mixed = "one\r\ntwo\nthree\r\nfour\r\n"
    assert keep_line_endings(mixed, "one\ntwo\nTHREE\nfour\nfive\n") == (
        "one\r\ntwo\nTHREE\r\nfour\r\nfive\r\n"
    )
    assert keep_line_endings("x\n\ny\r\n", "x\n\nY\n") == "x\n\nY\n"


ORDINAL = (
    "import re\n\n\n"
    + "".join(f"def helper_{i}(x):\n    return x + {i}\n\n\n" for i in range(12))
    + "def ordinal(number: int) -> str:\n"
    '    """The suffix: 1st, 2nd, 3rd, 4th."""\n'
    "    number = abs(int(number))\n"
    "    if number % 100 in (11, 12):\n"
    '        return "th"\n'
    '    return {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")\n'
)
ORDINAL_FIX = ORDINAL.replace("(11, 12)", "(11, 12, 13)")


def test_git_conflict_markers_are_read_as_search_replace() -> None:
    """The 1.5B model wrote `<<<<<<< HEAD` (and other models `>>>>>>> main`) on a real repo."""
    reply = (
        "inflection/__init__.py\n```python\n<<<<<<< HEAD\n    if number % 100 in (11, 12):\n"
        "=======\n    if number % 100 in (11, 12, 13):\n>>>>>>> main\n```\n"
    )
    files = apply_edits(
        parse_edits(reply), read_from({"inflection/__init__.py": ORDINAL}), whole_seen=set()
    )
    assert files == {"inflection/__init__.py": ORDINAL_FIX}


def test_a_block_holding_only_the_replacement_half_replaces_that_definition() -> None:
    """The 1.5B model's answer to a refused whole file: `=======`, then the new definition."""
    new_def = ORDINAL_FIX[ORDINAL_FIX.index("def ordinal") :]
    for tail in ("", ">>>>>>> REPLACE\n"):
        reply = f"inflection/__init__.py\n```python\n=======\n{new_def}{tail}```\n"
        [edit] = parse_edits(reply)
        assert edit.content == new_def
        files = apply_edits(
            [edit], read_from({"inflection/__init__.py": ORDINAL}), whole_seen=set()
        )
        assert files == {"inflection/__init__.py": ORDINAL_FIX}  # the rest of the file kept


def test_a_file_that_starts_with_an_rst_rule_is_still_a_whole_file() -> None:
    text = "=======\nTitle\n=======\n\nBody.\n"
    [edit] = parse_edits(f"README.rst\n```rst\n{text}```\n")
    assert edit.content == text


def test_a_search_that_misses_but_replaces_whole_definitions_is_spliced() -> None:
    """The 1.5B model's SEARCH: the shown function plus the outline stubs after it (which are
    not the file's text); its REPLACE: the fixed function plus the same stubs."""
    stubs = "def helper_10(x): ...\ndef helper_11(x): ...\n"
    old_def = ORDINAL[ORDINAL.index("def ordinal") :]
    new_def = ORDINAL_FIX[ORDINAL_FIX.index("def ordinal") :]
    reply = (
        f"inflection/__init__.py\n```python\n<<<<<<< HEAD\n{old_def}\n{stubs}=======\n"
        f"{new_def}\n{stubs}>>>>>>> REPLACE\n```\n"
    )
    read = read_from({"inflection/__init__.py": ORDINAL})
    assert apply_edits(parse_edits(reply), read, whole_seen=set()) == {
        "inflection/__init__.py": ORDINAL_FIX
    }
    # A REPLACE that is only a fragment still fails with the message that says why.
    fragment = reply.replace(f"{new_def}\n{stubs}", "    return 1\n")
    with pytest.raises(FormatProblem, match="does not match the file"):
        apply_edits(parse_edits(fragment), read, whole_seen=set())


def test_a_block_whose_replace_repeats_its_search_says_it_changes_nothing() -> None:
    """The 1.5B model's first answer on inflection: the function copied into both halves."""
    old_def = ORDINAL[ORDINAL.index("def ordinal") :]
    block = f"<<<<<<< SEARCH\n{old_def}=======\n{old_def}>>>>>>> REPLACE\n"
    reply = f"inflection/__init__.py\n```python\n{block}```\n"
    with pytest.raises(FormatProblem, match="changes nothing"):
        apply_edits(
            parse_edits(reply), read_from({"inflection/__init__.py": ORDINAL}), whole_seen=set()
        )
