"""Verifier synthesis: the model writes checkers for a preference, execution cross-validates
them (AutoIF's rules, Dong et al. 2024; see PAPERS.md).

For a preference text, K replies are sampled (temperature 0.8 by default), each asked for a
function `evaluate(code: str) -> bool` and labelled code examples. Then, as in AutoIF's
released pipeline:

1. functions that do not compile, do not define `evaluate`, or mention the network or
   downloads are dropped (`verify.screen`); functions and examples are deduplicated (an
   example given with both labels is dropped);
2. at least `min_functions` distinct functions and `min_cases` distinct examples are needed
   (3 and 10 in the paper; configurable, a 1.5B model is a weaker author than a 70B);
3. every function runs on every example in the sandbox, one job per function; one that
   hangs, crashes, prints or tries the network is discarded with the reason;
4. an example is kept when at least one function reproduces its label;
5. a function is kept when its accuracy on the kept examples is >= `min_accuracy` (0.8);
6. back-translation: the model says in one sentence what each kept function checks, and
   judges whether that contradicts the preference (AutoIF uses an NLI model; none can be
   downloaded here, so the local model judges); a contradicting function is dropped.

The most accurate surviving function (the shorter on a tie) is proposed to the user with the
kept examples and the yield; nothing is stored until the user approves.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.backends.base import Backend
from agent.events import ChatMessage, SamplingParams
from agent.extract import fenced_blocks, normalize_code
from agent.preferences.store import Case, VerifierVersion
from agent.preferences.verify import VerifierRun, VerifierRunner, screen

Progress = Callable[[str, int, int], None]  # (stage, done, total)

SYSTEM = "You are an expert Python programmer who writes small, exact code checkers."

AUTHOR_PROMPT = """\
A user has this standing preference for the Python code they get:

    {text}

1. Write a Python function `evaluate(code: str) -> bool` that returns True when the Python \
source code in `code` follows the preference, and False when it does not. Use only the \
standard library (the `ast` module is usually best); do not print, do not read or write \
files, do not use the network.
2. Then write {n_examples} short, different Python code examples: half that follow the \
preference and half that do not. Put each example in its own ```python block whose first \
line is the comment `# follows: yes` or `# follows: no`.

Answer with the `evaluate` function in a ```python block first, then the examples."""

BACK_PROMPT = """\
This Python function checks Python source code:

```python
{source}
```

In one sentence, what rule about the code does it check? Answer with the rule only."""

JUDGE_PROMPT = """\
Rule A: {text}
Rule B: {back}

Is rule B the same requirement as rule A, or a part of it? Answer with one word: yes or no."""

_DEFINES_EVALUATE = re.compile(r"^\s*def\s+evaluate\s*\(", re.M)
_MARKER = re.compile(
    r"^\s*#\s*(?:follows\s*[:=]?\s*(?P<label>yes|no|true|false)|(?P<word>good|bad|violates))\b",
    re.I,
)
_YES_NO = re.compile(r"\b(yes|no)\b", re.I)


@dataclass
class SynthesisConfig:
    """AutoIF's knobs; the defaults are the paper's thresholds."""

    samples: int = 8  # K replies, each with one function and its examples
    examples_per_sample: int = 6
    min_functions: int = 3
    min_cases: int = 10
    min_accuracy: float = 0.8
    back_translate: bool = True
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int = 0
    timeout_s: float = 10.0  # per verifier job (loading + every snippet)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError("samples must be at least 1")
        if not 0.0 <= self.min_accuracy <= 1.0:
            raise ValueError("min_accuracy must be in [0, 1]")


@dataclass
class Candidate:
    """One generated function and what became of it."""

    source: str
    sample: int  # which reply it came from (0-based)
    problem: str | None = None  # why it was dropped; None while (and when finally) kept
    stage: str = "generated"  # screen | run | accuracy | back-translation | kept
    answers: list[bool | None] = field(default_factory=list)  # on the distinct examples
    accuracy: float | None = None  # on the kept examples
    back_translation: str | None = None
    judge_reply: str | None = None

    @property
    def kept(self) -> bool:
        return self.stage == "kept"


@dataclass
class SynthesisResult:
    text: str
    config: SynthesisConfig
    candidates: list[Candidate] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)  # distinct examples
    kept_cases: list[Case] = field(default_factory=list)
    conflicting_cases: int = 0
    examples_generated: int = 0
    replies: list[str] = field(default_factory=list)
    failure: str | None = None  # why no verifier came out
    model: str | None = None
    duration_s: float = 0.0

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kept]

    @property
    def best(self) -> Candidate | None:
        kept = self.kept
        if not kept:
            return None
        return max(kept, key=lambda c: (c.accuracy or 0.0, -len(c.source)))

    def report(self) -> dict[str, Any]:
        """The yield, as stored with the approved verifier and printed to the user."""
        by_stage: dict[str, int] = {}
        for c in self.candidates:
            by_stage[c.stage] = by_stage.get(c.stage, 0) + 1
        n = len(self.candidates)
        best = self.best
        return {
            "samples": self.config.samples,
            "functions_generated": n,
            "functions_dropped": {
                stage: count for stage, count in by_stage.items() if stage != "kept"
            },
            "functions_kept": by_stage.get("kept", 0),
            "function_yield": round(by_stage.get("kept", 0) / n, 3) if n else 0.0,
            "examples_generated": self.examples_generated,
            "examples_distinct": len(self.cases),
            "examples_conflicting": self.conflicting_cases,
            "examples_kept": len(self.kept_cases),
            "best_accuracy": best.accuracy if best is not None else None,
            "thresholds": {
                "min_functions": self.config.min_functions,
                "min_cases": self.config.min_cases,
                "min_accuracy": self.config.min_accuracy,
                "back_translate": self.config.back_translate,
            },
            "failure": self.failure,
            "duration_s": round(self.duration_s, 2),
        }

    def version(self) -> VerifierVersion:
        """The proposed verifier as a version to store (after the user approved it)."""
        best = self.best
        if best is None:
            raise ValueError(self.failure or "no verifier survived")
        return VerifierVersion(
            version=1,
            verifier=best.source,
            cases=list(self.kept_cases),
            source="synthesized",
            model=self.model,
            report=self.report(),
        )


# ---------------------------------------------------------------- parsing replies


def parse_reply(reply: str) -> tuple[list[str], list[Case]]:
    """The `evaluate` functions and the labelled examples in one model reply.

    Each marker line (`# follows: yes|no`) starts an example that runs to the next marker or
    the block's end, whether the examples have blocks of their own (as asked) or follow the
    function in its block (as the 1.5B model often writes them); what comes before a
    block's first marker is a function when it defines `evaluate`."""
    functions: list[str] = []
    cases: list[Case] = []
    for lang, body in fenced_blocks(reply):
        if lang not in ("python", "py", "python3", "py3", "") or not body.strip():
            continue
        lines = body.splitlines()
        starts = [i for i, line in enumerate(lines) if _MARKER.match(line)]
        head = "\n".join(lines[: starts[0]] if starts else lines).strip("\n")
        if _DEFINES_EVALUATE.search(head):
            functions.append(with_stdlib_imports(head + "\n"))
        for start, end in zip(starts, [*starts[1:], len(lines)][: len(starts)], strict=True):
            marker = _MARKER.match(lines[start])
            assert marker is not None
            label = (marker.group("label") or marker.group("word")).lower()
            code = "\n".join(lines[start + 1 : end]).strip("\n")
            if code.strip():
                cases.append(Case(code=code + "\n", follows=label in ("yes", "true", "good")))
    return functions, cases


AUTO_IMPORTS = ("ast", "re", "tokenize", "io", "keyword")  # what checkers use unimported


def with_stdlib_imports(source: str) -> str:
    """The function with `import ast` (and the like) added when it uses the module without
    importing it: small models often forget the line, and the function cannot run without
    it. Only the standard-library modules a code checker needs; the verifier stays
    self-contained, as it is stored."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    bound = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    used = {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    missing = [m for m in AUTO_IMPORTS if m in used and m not in bound]
    return "".join(f"import {m}\n" for m in missing) + source


def distinct_cases(cases: Sequence[Case]) -> tuple[list[Case], int]:
    """Examples deduplicated by their code; one given with both labels is dropped."""
    labels: dict[str, set[bool]] = {}
    first: dict[str, Case] = {}
    for case in cases:
        key = case.code.strip()
        labels.setdefault(key, set()).add(case.follows)
        first.setdefault(key, case)
    conflicting = sum(len(v) > 1 for v in labels.values())
    return [first[k] for k, v in labels.items() if len(v) == 1], conflicting


# ---------------------------------------------------------------- the model


def complete(backend: Backend, messages: list[ChatMessage], params: SamplingParams) -> str:
    """The whole reply to `messages` (streamed, joined)."""
    stream = backend.stream_chat(messages, params)
    try:
        return "".join(chunk.text for chunk in stream)
    finally:
        close = getattr(stream, "close", None)  # a generator, or a plain iterator
        if close is not None:
            close()


def _ask(backend: Backend, prompt: str, params: SamplingParams) -> str:
    messages = [
        ChatMessage(role="system", content=SYSTEM),
        ChatMessage(role="user", content=prompt),
    ]
    return complete(backend, messages, params)


def back_translate(backend: Backend, source: str, max_tokens: int = 128) -> str:
    """What the model says the function checks, in one sentence."""
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0)
    reply = _ask(backend, BACK_PROMPT.format(source=source.strip()), params)
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def contradicts(backend: Backend, text: str, back: str) -> tuple[bool, str]:
    """The local model as the NLI judge: does `back` contradict `text`? (True, reply) when the
    model says `back` is not the preference or a part of it; a reply with neither yes nor no
    counts as no contradiction.

    Asked "does B contradict A?", the 1.5B model answered yes to all 6 test pairs, the 4
    consistent ones too, and dropped every verifier; asked whether B is A or a part of it, it
    answered 4 of 6 right and wrongly passed 2 contradicting rules (which the accuracy step
    catches when the examples are right). Measured 2026-12-01, greedy."""
    params = SamplingParams(temperature=0.0, max_tokens=8, seed=0)
    reply = _ask(backend, JUDGE_PROMPT.format(text=text, back=back), params)
    found = _YES_NO.search(reply)
    return (found is not None and found.group(1).lower() == "no"), reply.strip()


# ---------------------------------------------------------------- the pipeline


def synthesize(
    text: str,
    backend: Backend,
    config: SynthesisConfig | None = None,
    *,
    runner: VerifierRunner | None = None,
    progress: Progress | None = None,
) -> SynthesisResult:
    """AutoIF's verifier synthesis for one preference (see the module docstring)."""
    config = config or SynthesisConfig()
    runner = runner or VerifierRunner(timeout_s=config.timeout_s)
    started = time.perf_counter()
    result = SynthesisResult(text=text, config=config, model=backend.identity.key)
    step = _stepper(progress)
    _write_candidates(result, backend, step)  # 1.
    live = [c for c in result.candidates if c.problem is None]
    result.failure = _too_little(result, live)  # 2.
    if result.failure is None:
        live = _run_candidates(result, live, runner, step)  # 3.
        kept_index = _keep_cases(result, live)  # 4.
        live = _judge_accuracy(result, live, kept_index)  # 5.
        if config.back_translate:
            _back_translate_all(live, backend, text, step)  # 6.
        for candidate in live:
            if candidate.problem is None:
                candidate.stage = "kept"
        if not result.kept:
            result.failure = "no function survived cross-validation (see each one's reason)"
    result.duration_s = time.perf_counter() - started
    return result


def _stepper(progress: Progress | None) -> Progress:
    """`progress`, or a callback that ignores the progress reports."""

    def step(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    return step


def _write_candidates(result: SynthesisResult, backend: Backend, step: Progress) -> None:
    """Step 1: K samples, each with one function and its examples; functions deduplicated
    and screened, examples deduplicated (conflicting labels dropped)."""
    config = result.config
    all_cases: list[Case] = []
    seen: set[str] = set()
    prompt = AUTHOR_PROMPT.format(text=result.text, n_examples=config.examples_per_sample)
    step("writing verifiers", 0, config.samples)
    for i in range(config.samples):
        params = SamplingParams(
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            seed=config.seed + i,
        )
        reply = _ask(backend, prompt, params)
        result.replies.append(reply)
        functions, cases = parse_reply(reply)
        all_cases += cases
        for source in functions:
            key = normalize_code(source)
            if key in seen:
                continue
            seen.add(key)
            candidate = Candidate(source=source, sample=i)
            problem = screen(source)
            if problem is not None:
                candidate.problem, candidate.stage = problem, "screen"
            result.candidates.append(candidate)
        step("writing verifiers", i + 1, config.samples)
    result.examples_generated = len(all_cases)
    result.cases, result.conflicting_cases = distinct_cases(all_cases)


def _too_little(result: SynthesisResult, live: Sequence[Candidate]) -> str | None:
    """Step 2: why there is too little material to cross-validate; None when there is enough."""
    config = result.config
    if len(live) >= config.min_functions and len(result.cases) >= config.min_cases:
        return None
    return (
        f"too little to cross-validate: {len(live)} usable function(s) "
        f"(need {config.min_functions}) and {len(result.cases)} distinct example(s) "
        f"(need {config.min_cases}); sample more (--samples) or lower the thresholds"
    )


def _run_candidates(
    result: SynthesisResult, live: list[Candidate], runner: VerifierRunner, step: Progress
) -> list[Candidate]:
    """Step 3: every function on every example, in the sandbox; the ones that ran cleanly."""
    snippets = [c.code for c in result.cases]
    step("running verifiers", 0, len(live))
    for done, candidate in enumerate(live, 1):
        run = runner.run(candidate.source, snippets)
        candidate.answers = run.answers
        if not run.usable:
            candidate.problem, candidate.stage = run.problem, "run"
        step("running verifiers", done, len(live))
    return [c for c in live if c.problem is None]


def _keep_cases(result: SynthesisResult, live: Sequence[Candidate]) -> list[int]:
    """Step 4: keep an example some function gets right; the indices of the kept ones."""
    kept_index = [
        i
        for i, case in enumerate(result.cases)
        if any(c.answers[i] is not None and c.answers[i] == case.follows for c in live)
    ]
    result.kept_cases = [result.cases[i] for i in kept_index]
    return kept_index


def _judge_accuracy(
    result: SynthesisResult, live: list[Candidate], kept_index: Sequence[int]
) -> list[Candidate]:
    """Step 5: keep a function accurate on the kept examples; the ones accurate enough."""
    min_accuracy = result.config.min_accuracy
    labels = [case.follows for case in result.kept_cases]
    for candidate in live:
        answers = VerifierRun(answers=[candidate.answers[i] for i in kept_index])
        candidate.accuracy = round(answers.accuracy(labels), 4)
        if candidate.accuracy < min_accuracy:
            candidate.stage = "accuracy"
            candidate.problem = (
                f"accuracy {candidate.accuracy:.2f} on the kept examples < {min_accuracy:.2f}"
            )
    return [c for c in live if c.problem is None]


def _back_translate_all(
    live: Sequence[Candidate], backend: Backend, text: str, step: Progress
) -> None:
    """Step 6: back-translation, judged by the local model; a contradicting function is
    marked dropped."""
    step("back-translating", 0, len(live))
    for done, candidate in enumerate(live, 1):
        candidate.back_translation = back_translate(backend, candidate.source)
        bad, candidate.judge_reply = contradicts(backend, text, candidate.back_translation)
        if bad:
            candidate.stage = "back-translation"
            candidate.problem = (
                f"its back-translation contradicts the preference: {candidate.back_translation!r}"
            )
        step("back-translating", done, len(live))


def check_verifier(
    source: str, cases: Sequence[Case], runner: VerifierRunner | None = None
) -> tuple[VerifierRun, float | None]:
    """A verifier supplied or edited by hand, run on `cases` (or, with none, on two smoke
    snippets, to see it loads, answers with a bool, and neither hangs nor prints): the run,
    and its accuracy on the cases (None without cases)."""
    runner = runner or VerifierRunner()
    if not cases:
        run = runner.run(source, ["", "def f(x):\n    return x\n"])
        if run.usable and any(a is None for a in run.answers):
            run.problem = f"does not answer True or False on a simple program ({run.first_error})"
        return run, None
    run = runner.run_cases(source, cases)
    return run, run.accuracy([c.follows for c in cases]) if run.usable else 0.0
