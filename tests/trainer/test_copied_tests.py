"""Copied test asserts out of trained replies (`fixloop data build --strip-copied-tests`)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.trainer.data_support import SESSIONS
from trainer.data.build import BuildOptions, build
from trainer.data.copied_tests import strip_copied_tests, strip_row

TESTS = [
    "assert radix_sort([15, 79, 25, 68, 37]) == [15, 25, 37, 68, 79]",
    "assert radix_sort([9, 11, 8, 7, 3, 2]) == [2, 3, 7, 8, 9, 11]",
]
# A reply of the DPO + NLL model on MBPP 516 (docs/BENCHMARKS.md), shortened.
REPLY = """```python
def radix_sort(arr):
    # Sort the numbers
    return sorted(arr)

# Test cases
assert radix_sort([15, 79, 25, 68, 37]) == [15, 25, 37, 68, 79]
assert radix_sort([9,11,8,7,3,2])==[2, 3, 7, 8, 9, 11]
```"""


def test_the_shown_asserts_and_their_heading_go_the_function_stays() -> None:
    assert strip_copied_tests(REPLY, TESTS) == (
        "```python\ndef radix_sort(arr):\n    # Sort the numbers\n    return sorted(arr)\n```"
    )


def test_a_reply_without_copies_and_the_model_s_own_asserts_are_kept() -> None:
    own = REPLY.replace("assert radix_sort([9,11", "assert radix_sort([1, 9,11")
    stripped = strip_copied_tests(own, TESTS)
    assert "assert radix_sort([1, 9,11" in stripped  # not a shown test: the model's own
    assert "[15, 79, 25, 68, 37]" not in stripped
    plain = "```python\ndef f():\n    # done\n    return 1\n```"
    assert strip_copied_tests(plain, TESTS) == plain
    assert strip_copied_tests(REPLY, []) == REPLY


def test_rows_lose_the_copies_in_replies_only() -> None:
    prompt = [{"role": "user", "content": "Write radix_sort.\n\n" + "\n".join(TESTS)}]
    reply = [{"role": "assistant", "content": REPLY}]
    pair = strip_row({"prompt": prompt, "chosen": reply, "rejected": reply}, TESTS)
    assert pair["prompt"] == prompt  # the task keeps its tests
    assert "assert" not in pair["chosen"][0]["content"] + pair["rejected"][0]["content"]
    sft = strip_row({"messages": [*prompt, *reply]}, TESTS)
    assert sft["messages"][0] == prompt[0] and "assert" not in sft["messages"][1]["content"]


def test_build_records_the_option_and_changes_no_row_without_copies(tmp_path: Path) -> None:
    plain = build(BuildOptions(sessions=[SESSIONS], out=tmp_path / "a"))
    strip = build(BuildOptions(sessions=[SESSIONS], out=tmp_path / "b", strip_copied_tests=True))
    assert strip.manifest["hygiene"]["strip_copied_tests"] is True
    assert plain.manifest["hygiene"]["strip_copied_tests"] is False
    for fmt in ("sft", "repair", "dpo", "kto"):
        a = plain.files[fmt].read_text().splitlines()
        b = strip.files[fmt].read_text().splitlines()
        assert [json.loads(x) for x in a] == [json.loads(x) for x in b], fmt
