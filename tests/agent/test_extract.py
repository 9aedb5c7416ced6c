"""Code extraction from replies and the normal form used to spot repeated attempts."""

from __future__ import annotations

from agent.extract import extract_code, fenced_blocks, normalize_code


def test_single_python_block() -> None:
    reply = "Here you go:\n```python\ndef f(x):\n    return x + 1\n```\nThis adds one."
    assert extract_code(reply) == "def f(x):\n    return x + 1\n"


def test_untagged_and_py_tags_count_as_python() -> None:
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```py\nx = 2\n```") == "x = 2\n"


def test_other_languages_are_ignored() -> None:
    assert extract_code("```bash\npip install foo\n```") is None
    reply = "```bash\nls\n```\n```python\ndef g():\n    pass\n```"
    assert extract_code(reply) == "def g():\n    pass\n"


def test_usage_block_is_left_out() -> None:
    reply = (
        "```python\ndef double(x):\n    return 2 * x\n```\n"
        "Example:\n```python\nprint(double(3))\n```"
    )
    assert extract_code(reply) == "def double(x):\n    return 2 * x\n"


def test_entry_point_block_wins() -> None:
    reply = (
        "```python\nimport math\n```\n```python\ndef helper():\n    return 1\n```\n"
        "```python\ndef area(r):\n    return math.pi * r * r\n```"
    )
    assert extract_code(reply, entry_point="area") == "def area(r):\n    return math.pi * r * r\n"
    joined = extract_code(reply)
    assert joined is not None
    assert "import math" in joined and "def helper" in joined and "def area" in joined


def test_unterminated_block_from_a_cut_off_reply() -> None:
    reply = "```python\ndef f():\n    return 1\n"
    assert extract_code(reply) == "def f():\n    return 1\n"


def test_bare_program_without_fences_is_accepted() -> None:
    assert extract_code("def f():\n    return 3") == "def f():\n    return 3\n"


def test_prose_is_not_code() -> None:
    assert extract_code("I cannot help with that.") is None
    assert extract_code("") is None
    assert extract_code("```python\n\n```") is None


def test_longer_fences_and_tildes() -> None:
    assert fenced_blocks("````python\na = '```'\n````") == [("python", "a = '```'\n")]
    assert extract_code("~~~python\ny = 5\n~~~") == "y = 5\n"


def test_normalize_ignores_comments_formatting_and_docstrings() -> None:
    a = 'def f(x):\n    """Add one."""\n    return x+1  # add\n'
    b = "# a comment\n\ndef f( x ):\n\n    return (x + 1)\n"
    assert normalize_code(a) == normalize_code(b)


def test_normalize_distinguishes_real_changes() -> None:
    assert normalize_code("def f(x):\n    return x + 1\n") != normalize_code(
        "def f(x):\n    return x - 1\n"
    )
    assert normalize_code("def f(y):\n    return y\n") != normalize_code(
        "def f(x):\n    return x\n"
    )


def test_normalize_unparsable_code_strips_comments_and_whitespace() -> None:
    a = "def f(:\n    return 1  # broken\n"
    b = "def f(:\n  return   1\n"
    assert normalize_code(a) == normalize_code(b)
    assert normalize_code(a) != normalize_code("def f(:\n    return 2\n")
