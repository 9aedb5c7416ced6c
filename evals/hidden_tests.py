"""Hidden tests for MBPP-format tasks: the reference solution run on inputs varied from the
public asserts (RLEF's private tests: the public ones drive feedback, these decide reward).

For each public `assert f(ARGS) == EXPECTED` whose arguments are literals, a few variants of
the arguments are made (numbers nudged, sequences reversed, shortened, extended, strings
changed in case or length), deterministically from the task id. The reference solution runs
them in the sandbox, twice; a case is kept only when both runs return the same value, fast,
without an exception, and the value is plain data that survives `repr` -> `literal_eval`
(floats excluded: `==` on them would reward one rounding over another). The result is a
list of `assert f(ARGS) == VALUE` statements per task, stored beside the split
(`<split>_hidden.jsonl`) with the generator version, and reproducible from it.
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.sandbox import Sandbox, SandboxLimits

GENERATOR_VERSION = 1
PER_TASK = 5
CASE_TIMEOUT_S = 0.5
_RUNNER = """
import json, sys, time
_cases = json.loads(sys.stdin.read())
_out = []
for _src in _cases:
    _t = time.perf_counter()
    try:
        _value = eval(_src)
        _out.append([repr(_value), time.perf_counter() - _t])
    except BaseException as _exc:
        _out.append([None, time.perf_counter() - _t])
sys.stdout.write("\\n@@fixloop-hidden@@" + json.dumps(_out))
"""


@dataclass(frozen=True)
class Call:
    """A public assert's call: `name(*args)`, its source, and the expected value's source."""

    name: str
    args: tuple[Any, ...]
    expected: str


def parse_call(test: str) -> Call | None:
    """`assert name(literal, ...) == literal` -> Call; None for any other shape."""
    try:
        tree = ast.parse(test.strip())
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    check = tree.body[0].test
    if not (isinstance(check, ast.Compare) and len(check.ops) == 1):
        return None
    if not isinstance(check.ops[0], ast.Eq):
        return None
    call = check.left  # only a direct call of a named function is varied
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords):
        return None
    try:
        args = tuple(ast.literal_eval(a) for a in call.args)
    except (ValueError, SyntaxError, TypeError):
        return None
    return Call(call.func.id, args, ast.unparse(check.comparators[0]))


def _vary(value: Any, rng: random.Random) -> Iterator[Any]:
    """Values of the same type near `value`."""
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, int):
        yield from (value + 1, value - 1, value * 2 + rng.randint(1, 9), abs(value) // 2)
    elif isinstance(value, str):
        if value:
            yield from (value[::-1], value[:-1], value.swapcase(), value + value[0])
        yield "a"
    elif isinstance(value, list | tuple):
        kind = type(value)
        if value:
            yield kind(reversed(value))
            yield kind(value[:-1])
            yield kind([*value, value[0]])
            yield kind(sorted(value, key=repr))
            inner = list(value)
            i = rng.randrange(len(inner))
            for other in _vary(inner[i], rng):
                inner[i] = other
                yield kind(inner)
                break


def variants(call: Call, rng: random.Random, limit: int = 8) -> list[tuple[Any, ...]]:
    """Argument tuples near the call's, one argument changed at a time, without repeats."""
    seen = {repr(call.args)}
    out: list[tuple[Any, ...]] = []
    # MBPP often passes a sequence with its length (`f(arr, n)`): the two change together,
    # or a right program that uses len(arr) would fail a case the reference only survives.
    lengths = {
        j: i
        for i, seq in enumerate(call.args)
        if isinstance(seq, list | tuple | str)
        for j, n in enumerate(call.args)
        if type(n) is int and j != i and n == len(seq)
    }
    for i, arg in enumerate(call.args):
        if i in lengths:
            continue
        for other in _vary(arg, rng):
            args = [*call.args[:i], other, *call.args[i + 1 :]]
            for j, seq in lengths.items():
                if seq == i:
                    args[j] = len(other)
            args = tuple(args)
            key = repr(args)
            if key not in seen:
                seen.add(key)
                out.append(args)
    rng.shuffle(out)
    return out[:limit]


def _plain(text: str) -> bool:
    """A value repr that reads back as the same plain data, with no float inside."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return repr(value) == text and "float" not in _types(value)


def _types(value: Any) -> set[str]:
    if isinstance(value, list | tuple | set | frozenset):
        return {type(value).__name__}.union(*(_types(v) for v in value))
    if isinstance(value, dict):
        parts = [_types(k) | _types(v) for k, v in value.items()]
        return {"dict"}.union(*parts)
    return {type(value).__name__}


def _run(sandbox: Sandbox, program: str, cases: list[str]) -> list[tuple[str | None, float]]:
    result = sandbox.run_program(program + _RUNNER, stdin=json.dumps(cases))
    marker = "@@fixloop-hidden@@"
    text = result.stdout.text
    if marker not in text:
        return []
    try:
        rows = json.loads(text.rsplit(marker, 1)[1])
    except ValueError:
        return []
    return [(row[0], float(row[1])) for row in rows]


def derive(
    task_id: int | str,
    code: str,
    tests: Sequence[str],
    setup: str = "",
    *,
    sandbox: Sandbox | None = None,
    per_task: int = PER_TASK,
) -> list[str]:
    """Hidden asserts for one task from its reference `code` (empty when none can be made)."""
    rng = random.Random(f"fixloop-hidden/{GENERATOR_VERSION}/{task_id}")
    calls = [c for c in (parse_call(t) for t in tests) if c is not None]
    public = {" ".join(t.split()) for t in tests}
    candidates: list[str] = []
    for call in calls:
        for args in variants(call, rng):
            src = f"{call.name}({', '.join(repr(a) for a in args)})"
            if src not in candidates:
                candidates.append(src)
    if not candidates:
        return []
    sandbox = sandbox or Sandbox(SandboxLimits(timeout_s=10.0))
    program = f"{setup}\n{code}\n"
    first, second = _run(sandbox, program, candidates), _run(sandbox, program, candidates)
    if len(first) != len(candidates) or len(second) != len(candidates):
        return []
    out: list[str] = []
    for src, (a, ta), (b, tb) in zip(candidates, first, second, strict=True):
        if a is None or a != b or max(ta, tb) > CASE_TIMEOUT_S or not _plain(a):
            continue
        test = f"assert {src} == {a}"
        if " ".join(test.split()) not in public:
            out.append(test)
        if len(out) >= per_task:
            break
    return out


def derive_split(
    rows: Sequence[dict[str, Any]], out: Path, *, workers: int = 2, progress: bool = True
) -> tuple[int, int]:
    """Derive hidden tests for every MBPP row and write them to `out` (atomically), resuming
    from the tasks `out` already holds. Returns (tasks with hidden tests, tasks total)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    done: dict[int, dict[str, Any]] = {}
    if out.is_file():
        for line in out.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("generator") == GENERATOR_VERSION:
                done[int(row["task_id"])] = row
    todo = [r for r in rows if int(r["task_id"]) not in done]
    sandbox = Sandbox(SandboxLimits(timeout_s=10.0))

    def one(row: dict[str, Any]) -> dict[str, Any]:
        tests = derive(
            row["task_id"], row["code"], row["test_list"], row.get("test_setup_code") or "",
            sandbox=sandbox,
        )  # fmt: skip
        return {
            "task_id": int(row["task_id"]),
            "generator": GENERATOR_VERSION,
            "hidden_tests": tests,
        }

    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(rows), initial=len(done), desc="hidden tests", unit="task",
             disable=not progress) as bar,
    ):  # fmt: skip
        for row in pool.map(one, todo):
            done[row["task_id"]] = row
            bar.update(1)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for task_id in sorted(done):
            fh.write(json.dumps(done[task_id]) + "\n")
    tmp.replace(out)
    return sum(bool(r["hidden_tests"]) for r in done.values()), len(done)


def hidden_path(split_file: Path) -> Path:
    """Where the hidden tests of a split file live: `train.jsonl` -> `train_hidden.jsonl`."""
    return split_file.with_name(f"{split_file.stem}_hidden.jsonl")


def load_hidden(split_file: Path) -> dict[int, list[str]]:
    """Hidden tests by MBPP task id, or {} when none were derived for this split."""
    path = hidden_path(split_file)
    if not path.is_file():
        return {}
    out: dict[int, list[str]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out[int(row["task_id"])] = list(row["hidden_tests"])
    return out
