"""Self-play tasks (AutoIF's self-instruct step, for code): the model proposes new practice
tasks with tests, and execution decides which to keep.

Each proposal shows the model a few seed tasks (MBPP train, or the user's own tested tasks)
and asks for one new task with assert tests. A proposal is kept only when, in this order:

1. it parses: a description and at least `min_tests` assert statements calling one function;
2. it is new: not a near-duplicate of a seed task or of a task already kept;
3. it is not an evaluation task: not a near-duplicate of any evaluation task fixloop can
   see (MBPP validation, MBPP test where present, HumanEval, the user's held-out tasks), and
   the trainer's data guard (`EvalGuard`) accepts it;
4. a trivial stub (every function the tests call returns None) fails its tests;
5. some sampled solution (K at temperature 0.8) passes all its tests, in the sandbox;
6. its tests are fast and deterministic: the passing solution passes twice more, every test
   within `test_timeout_s`.

Kept tasks are written in MBPP's JSONL format (`task_id`, `text`, `test_list`, `code`), so
`fixloop data seed --suite FILE` runs the agent on them like any train split.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import difflib
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import prompts
from agent.backends.base import Backend
from agent.events import ChatMessage, SamplingParams, Task, TaskKind
from agent.extract import extract_code, fenced_blocks
from agent.hashing import normalize_text, text_hash
from agent.sandbox import Sandbox, SandboxLimits
from trainer.data.hygiene import EvalGuard

Progress = Callable[[str, int, int], None]

FILTERS = ("unparseable", "duplicate", "evaluation", "trivial", "unsolved", "slow_or_flaky")

PROPOSE_PROMPT = """\
Here are some Python programming tasks, each with the tests its function must pass:

{examples}

Write ONE new task of the same kind, different from all of these: a one-sentence \
description of a function to write, then {n_tests} tests as assert statements that call \
it. Answer exactly in this format:

Task: <the description>
Tests:
```python
assert ...
```"""

_TASK_LINE = re.compile(r"^\s*\**\s*task\s*\**\s*:\s*\**\s*(?P<text>.*)$", re.I | re.M)
_TESTS_LINE = re.compile(r"^\s*\**\s*tests?\s*\**\s*:", re.I | re.M)
_WORD = re.compile(r"[a-z0-9_]+")
# The boilerplate most task texts open with: compared, it makes every pair look alike.
_BOILERPLATE = re.compile(
    r"^(please\s+)?(write|create|implement|define)\s+(a\s+|an\s+)?(python\s+)?"
    r"(function|program|method)\s*(to|that|which|for|named\s+\w+\s+(to|that))?\s*"
)


@dataclass
class SelfPlayConfig:
    proposals: int = 20  # M
    solutions: int = 4  # K sampled solutions per task
    examples: int = 3  # seed tasks shown per proposal
    n_tests: int = 3
    min_tests: int = 2
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 768
    seed: int = 0
    near_duplicate: float = 0.8  # text similarity at which two tasks are the same
    test_timeout_s: float = 2.0
    reruns: int = 2


@dataclass
class Outcome:
    """What became of one proposal."""

    index: int
    reply: str
    seeds: list[str]  # task ids shown
    task: Task | None = None
    verdict: str = "kept"  # "kept" or one of FILTERS
    detail: str = ""
    solution: str | None = None

    @property
    def kept(self) -> bool:
        return self.verdict == "kept"


@dataclass
class SelfPlayResult:
    config: SelfPlayConfig
    outcomes: list[Outcome] = field(default_factory=list)
    eval_sets: dict[str, int] = field(default_factory=dict)  # name -> tasks checked against
    duration_s: float = 0.0

    @property
    def kept(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.kept]

    def counts(self) -> dict[str, int]:
        found = Counter(o.verdict for o in self.outcomes)
        return {name: found.get(name, 0) for name in (*FILTERS, "kept")}

    def report(self) -> dict[str, Any]:
        return {
            "proposals": len(self.outcomes),
            "kept": len(self.kept),
            "dropped_by": {k: v for k, v in self.counts().items() if k != "kept"},
            "checked_against": self.eval_sets,
            "config": self.config.__dict__,
            "duration_s": round(self.duration_s, 2),
            "dropped": [
                {"index": o.index, "verdict": o.verdict, "detail": o.detail}
                for o in self.outcomes
                if not o.kept
            ],
        }


# ---------------------------------------------------------------- similarity


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def comparable(text: str) -> str:
    """A task text as compared for near-duplicates: lower case, spacing and final
    punctuation normalized, the 'Write a function to' opening removed."""
    norm = normalize_text(text).rstrip(".!?;: ")
    return _BOILERPLATE.sub("", norm, count=1)


class NearDuplicates:
    """Texts to compare against: a word-overlap prefilter, then difflib's ratio."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.items: list[tuple[str, set[str], str]] = []  # (normalized, words, label)

    def add(self, text: str, label: str) -> None:
        norm = comparable(text)
        self.items.append((norm, _words(norm), label))

    def match(self, text: str) -> str | None:
        """The label of the first stored text at least `threshold` similar, else None."""
        norm = comparable(text)
        words = _words(norm)
        for other, other_words, label in self.items:
            if other == norm:
                return label
            union = len(words | other_words) or 1
            if len(words & other_words) / union < self.threshold / 2:
                continue
            ratio = difflib.SequenceMatcher(None, norm, other, autojunk=False).ratio()
            if ratio >= self.threshold:
                return label
        return None

    def __len__(self) -> int:
        return len(self.items)


def evaluation_texts(sessions_dir: Path | None = None) -> dict[str, list[str]]:
    """The evaluation tasks fixloop can see, by set: their texts (and HumanEval's prompts)."""
    from evals.suites import SuiteError, load_humaneval, load_mbpp, load_sessions

    sets: dict[str, list[str]] = {}
    for split in ("validation", "test"):
        try:
            sets[f"mbpp-{split}"] = [t.text for t in load_mbpp(split)]
        except SuiteError:
            continue  # MBPP's test split is not shipped; checked where present
    with contextlib.suppress(SuiteError):
        sets["humaneval"] = [t.text for t in load_humaneval()]
    if sessions_dir is not None and Path(sessions_dir).is_dir():
        with contextlib.suppress(SuiteError):  # none held out yet
            sets["sessions-heldout"] = [t.text for t in load_sessions(Path(sessions_dir))]
    return sets


# ---------------------------------------------------------------- parsing


def parse_proposal(reply: str, min_tests: int = 2) -> tuple[Task | None, str]:
    """(the proposed task, "") or (None, why it cannot be used)."""
    found = _TASK_LINE.search(reply)
    if found is None:
        return None, "no 'Task:' line"
    end = _TESTS_LINE.search(reply, found.end())
    text = reply[found.start("text") : end.start() if end else found.end()].strip()
    text = text.split("```")[0].strip()
    if len(text) < 10:
        return None, "the description is missing or too short"
    tests: list[str] = []
    for lang, body in fenced_blocks(reply[found.end() :]):
        if lang not in ("python", "py", ""):
            continue
        for line in body.splitlines():
            line = line.strip()
            if not line.startswith("assert "):
                continue
            try:
                tree = ast.parse(line)
            except SyntaxError:
                continue
            if isinstance(tree.body[0], ast.Assert) and line not in tests:
                tests.append(line)
    if len(tests) < min_tests:
        return None, f"{len(tests)} usable assert test(s) (need {min_tests})"
    names = {_called(t) for t in tests} - {None}
    if len(names) != 1:
        return None, f"the tests should call one function, they call {sorted(names) or 'none'}"
    entry = names.pop()
    digest = text_hash(text)[:12]
    task = Task(
        text=text,
        kind=TaskKind.FUNCTION,
        tests=tests,
        entry_point=entry,
        task_id=f"selfplay/{digest}",
        suite="selfplay",
        split="train",
    )
    return task, ""


_BUILTINS = frozenset(dir(builtins))


def _called(test: str) -> str | None:
    """The first non-builtin function a test calls."""
    for node in ast.walk(ast.parse(test)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id not in _BUILTINS
        ):
            return node.func.id
    return None


def stub_for(task: Task) -> str:
    """The trivial solution: the entry point takes anything and returns None."""
    return f"def {task.entry_point}(*args, **kwargs):\n    return None\n"


def _example(task: Task) -> str:
    tests = "\n".join(task.tests[:3])
    return f"Task: {task.text.strip()}\nTests:\n```python\n{tests}\n```"


# ---------------------------------------------------------------- the run


def _complete(backend: Backend, messages: list[ChatMessage], params: SamplingParams) -> str:
    stream = backend.stream_chat(messages, params)
    try:
        return "".join(chunk.text for chunk in stream)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def selfplay(
    seeds: Sequence[Task],
    backend: Backend,
    config: SelfPlayConfig | None = None,
    *,
    eval_sets: dict[str, list[str]] | None = None,
    guard: EvalGuard | None = None,
    sandbox: Sandbox | None = None,
    progress: Progress | None = None,
) -> SelfPlayResult:
    """Propose `config.proposals` tasks from `seeds` and keep the ones that pass every filter."""
    config = config or SelfPlayConfig()
    if not seeds:
        raise ValueError("self-play needs seed tasks with tests")
    guard = guard or EvalGuard()
    sandbox = sandbox or Sandbox(
        SandboxLimits(timeout_s=10.0, test_timeout_s=config.test_timeout_s, memory_mb=512)
    )
    eval_sets = eval_sets if eval_sets is not None else evaluation_texts()
    result = SelfPlayResult(config=config, eval_sets={k: len(v) for k, v in eval_sets.items()})
    started = time.perf_counter()
    known = NearDuplicates(config.near_duplicate)
    for seed_task in seeds:
        known.add(seed_task.text, seed_task.task_id or "a seed task")
    evaluation = NearDuplicates(config.near_duplicate)
    for name, texts in eval_sets.items():
        for i, text in enumerate(texts):
            evaluation.add(text, f"{name} #{i}")
    rng = random.Random(config.seed)
    for index in range(config.proposals):
        shown = rng.sample(list(seeds), min(config.examples, len(seeds)))
        outcome = _propose(backend, config, index, shown)
        result.outcomes.append(outcome)
        if outcome.task is not None:
            _judge(outcome, outcome.task, backend, config, known, evaluation, guard, sandbox)
        if progress is not None:
            progress("proposing tasks", index + 1, config.proposals)
    result.duration_s = time.perf_counter() - started
    return result


def _propose(backend: Backend, config: SelfPlayConfig, index: int, shown: list[Task]) -> Outcome:
    examples = "\n\n".join(_example(t) for t in shown)
    prompt = PROPOSE_PROMPT.format(examples=examples, n_tests=config.n_tests)
    params = SamplingParams(
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_tokens,
        seed=config.seed + index,
    )
    reply = _complete(backend, [ChatMessage(role="user", content=prompt)], params)
    outcome = Outcome(index=index, reply=reply, seeds=[t.task_id or "" for t in shown])
    outcome.task, why = parse_proposal(reply, config.min_tests)
    if outcome.task is None:
        outcome.verdict, outcome.detail = "unparseable", why
    return outcome


def _judge(
    outcome: Outcome,
    task: Task,
    backend: Backend,
    config: SelfPlayConfig,
    known: NearDuplicates,
    evaluation: NearDuplicates,
    guard: EvalGuard,
    sandbox: Sandbox,
) -> None:
    same = known.match(task.text)
    if same is not None:
        outcome.verdict, outcome.detail = "duplicate", f"near-duplicate of {same}"
        return
    same = evaluation.match(task.text)
    why = f"near-duplicate of evaluation task {same}" if same else guard.reason(task)
    if why is not None:
        outcome.verdict, outcome.detail = "evaluation", why
        return
    stub = sandbox.run_asserts(stub_for(task), task.tests)
    if stub.passed:
        outcome.verdict, outcome.detail = "trivial", "a stub returning None passes every test"
        return
    solution = None
    for k in range(config.solutions):
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            seed=config.seed + 1000 * (outcome.index + 1) + k,
        )
        messages = prompts.first_messages(prompts.SYSTEM, prompts.task_prompt(task))
        code = extract_code(_complete(backend, messages, params), task.entry_point)
        if code is not None and sandbox.run_asserts(code, task.tests).passed:
            solution = code
            break
    if solution is None:
        outcome.verdict = "unsolved"
        outcome.detail = f"none of {config.solutions} sampled solutions passes its tests"
        return
    for _ in range(config.reruns):
        again = sandbox.run_asserts(solution, task.tests)
        if not again.passed:
            outcome.verdict = "slow_or_flaky"
            statuses = sorted({t.status.value for t in again.tests if t.status != "passed"})
            outcome.detail = f"a rerun of the passing solution did not pass ({', '.join(statuses)})"
            return
    outcome.solution = solution
    known.add(task.text, task.task_id or "a kept task")


def write_tasks(result: SelfPlayResult, path: Path) -> Path:
    """The kept tasks as MBPP-format JSONL (atomic), and the report beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for number, outcome in enumerate(result.kept, 1):
            task = outcome.task
            assert task is not None
            row = {
                "task_id": number,
                "text": task.text,
                "test_list": task.tests,
                "test_setup_code": "",
                "code": outcome.solution,
                "entry_point": task.entry_point,
                "source": "selfplay",
                "seeds": outcome.seeds,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    report = path.with_suffix(".report.json")
    report.write_text(json.dumps(result.report(), indent=2) + "\n", encoding="utf-8")
    return report


def user_tasks(sessions_dir: Path, guard: EvalGuard | None = None) -> list[Task]:
    """The user's own function tasks with assert tests (chat and solve sessions), minus the
    ones held out for evaluation: seeds for self-play."""
    from agent.session_log import SessionLogError, read_session, session_files

    guard = guard or EvalGuard()
    by_text: dict[str, Task] = {}
    for path in session_files(sessions_dir):
        try:
            header = read_session(path).header
        except SessionLogError:
            continue
        task = header.task
        if header.purpose not in ("chat", "solve") or task.kind != TaskKind.FUNCTION:
            continue
        if not task.tests or guard.reason(task) is not None:
            continue
        digest = text_hash(task.text)
        by_text.setdefault(digest, task.model_copy(update={"task_id": f"user/{digest[:12]}"}))
    return sorted(by_text.values(), key=lambda t: t.task_id or "")
