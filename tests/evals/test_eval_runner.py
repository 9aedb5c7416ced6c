"""The eval runner driving the real loop, sandbox and session log with a scripted model.

A tiny suite with known outcomes gives exactly the expected figures and table;
an interrupted run, resumed, gives the same totals as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.backends.scripted import ScriptedBackend
from agent.config import Settings
from agent.events import ChatMessage, SamplingParams, Task
from agent.session_log import read_session, session_files
from evals import report
from evals.errors import EvalError
from evals.results import StopRule, SuiteResult, summarize
from evals.results_file import ResultsFile, RunHeader, read_results
from evals.runner import run_suite


def fenced(code: str) -> str:
    return f"Here you go:\n```python\n{code}\n```\n"


ADD = fenced("def add(a, b):\n    return a + b")
SUB_WRONG = fenced("def sub(a, b):\n    return a + b")
SUB = fenced("def sub(a, b):\n    return a - b")
MUL_WRONG_1 = fenced("def mul(a, b):\n    return a + b")
MUL_WRONG_2 = fenced("def mul(a, b):\n    return a - b")
NEG_WRONG = fenced("def neg(a):\n    return a")
NEG = fenced("def neg(a):\n    return -a")
SQ_PUBLIC_ONLY = fenced("def sq(a):\n    return 4 if a == 2 else 0")

TASKS = [
    Task(text="Add two numbers.", tests=["assert add(1, 2) == 3"], task_id="tiny/1"),
    Task(text="Subtract.", tests=["assert sub(3, 1) == 2"], task_id="tiny/2"),
    Task(text="Multiply.", tests=["assert mul(2, 3) == 6"], task_id="tiny/3"),
    Task(text="Negate.", tests=["assert neg(2) == -2"], task_id="tiny/4"),
    Task(
        text="Square.",
        tests=["assert sq(2) == 4"],
        hidden_tests=["assert sq(3) == 9"],
        task_id="tiny/5",
    ),
]
for _t in TASKS:
    _t.suite, _t.split = "tiny", "train"

# In order: tiny/1 passes at turn 1; tiny/2 at turn 2; tiny/3 has a reply without code,
# then two wrong programs (fails 3 turns); tiny/4 repeats its wrong program (resampled,
# not counted against the budget) and passes at its 2nd counted turn; tiny/5 passes its
# public test at turn 1 but fails the hidden one.
REPLIES = [
    ADD,
    SUB_WRONG,
    SUB,
    "I would multiply them.",
    MUL_WRONG_1,
    MUL_WRONG_2,
    NEG_WRONG,
    NEG_WRONG,
    NEG,
    SQ_PUBLIC_ONLY,
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        sessions_dir=tmp_path / "sessions",
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        exec_timeout=5.0,
    )


def run(
    settings: Settings,
    out: Path,
    replies: list[str],
    label: str = "scripted",
    **kwargs: Any,
) -> SuiteResult:
    kwargs.setdefault("max_turns", 3)
    return run_suite(
        kwargs.pop("tasks", TASKS),
        settings,
        out_dir=out,
        backend=kwargs.pop("backend", None) or ScriptedBackend(replies, name=label),
        label=label,
        progress=False,
        **kwargs,
    )


def test_tiny_suite_gives_exactly_the_expected_figures(settings: Settings, tmp_path: Path) -> None:
    result = run(settings, tmp_path / "out", REPLIES)
    assert [t.pass_turns for t in result.tasks] == [[1], [2], [None], [2], [None]]
    assert result.pass_at_1.count == 1 and result.pass_at_1.n == 5
    assert {t: r.count for t, r in result.pass_within.items()} == {1: 1, 2: 3, 3: 3}
    assert result.passed.count == 3
    assert result.episodes == 5 and result.errors == 0
    assert result.completion_tokens > 0
    # every line of the table that carries a figure, exactly
    table = report.table([result]).splitlines()
    assert table[2].split("|")[1].strip() == "tiny (5 tasks)"
    rows = {line.split("|")[0].strip(): line.split("|")[1].strip() for line in table[2:]}
    assert rows["pass@1 (first attempt)"] == "1/5 20.0% [3.6-62.4]"
    assert rows["pass within 2 turns"] == "3/5 60.0% [23.1-88.2]"
    assert rows["pass within 3 turns"] == "3/5 60.0% [23.1-88.2]"
    assert rows["episodes (errors)"] == "5 (0)"


def test_every_episode_is_a_logged_eval_session(settings: Settings, tmp_path: Path) -> None:
    run(settings, tmp_path / "out", REPLIES)
    logs = [read_session(p) for p in session_files(settings.sessions_dir)]
    assert len(logs) == 5
    assert {r.header.purpose for r in logs} == {"eval"}
    assert sorted(r.header.task.task_id or "" for r in logs) == [t.task_id for t in TASKS]
    assert {(r.header.task.suite, r.header.task.split) for r in logs} == {("tiny", "train")}
    _, records = read_results(tmp_path / "out" / "episodes-scripted.jsonl")
    by_task = {r.task_id: r for r in records}
    for log in logs:
        rec = by_task[log.header.task.task_id or ""]
        assert rec.session_id == log.session_id
        assert log.outcome is not None
        assert rec.turns == log.outcome.turns
    # the hidden test ran once, on the final program, and failed
    hidden = [e for r in logs for e in r.events if getattr(e, "hidden", False)]
    assert len(hidden) == 1 and not hidden[0].result.passed


class InterruptingBackend:
    """The scripted model, with a Ctrl-C arriving during request number `at` (1-based)."""

    def __init__(self, replies: list[str], at: int) -> None:
        self.inner = ScriptedBackend(replies, name="scripted")
        self.identity = self.inner.identity
        self.n_ctx = self.inner.n_ctx
        self.at = at
        self.requests = 0

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.inner.count_tokens(messages)

    def count_text_tokens(self, text: str) -> int:
        return self.inner.count_text_tokens(text)

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[Any]:
        self.requests += 1
        if self.requests == self.at:
            raise KeyboardInterrupt
        return self.inner.stream_chat(messages, params, response_format)


def _totals(result: SuiteResult) -> dict[str, Any]:
    data = result.model_dump()
    for volatile in ("gen_s", "exec_s", "wall_s", "tokens_per_s", "overhead_s", "elapsed_s"):
        data.pop(volatile)
    data.pop("results_file")
    return data


def test_resume_after_interruption_gives_the_same_totals(
    settings: Settings, tmp_path: Path
) -> None:
    whole = run(settings, tmp_path / "whole", REPLIES)

    # Ctrl-C while the model writes tiny/3's first reply (request 4): tiny/1 and 2 are done.
    with pytest.raises(KeyboardInterrupt):
        run(settings, tmp_path / "cut", [], backend=InterruptingBackend(REPLIES, at=4))
    _, kept = read_results(tmp_path / "cut" / "episodes-scripted.jsonl")
    assert [r.task_id for r in kept] == ["tiny/1", "tiny/2"]

    # The rerun does only what is left (tiny/3 onwards): a backend with just those replies.
    resumed = run(settings, tmp_path / "cut", REPLIES[3:])
    assert _totals(resumed) == _totals(whole)
    _, records = read_results(tmp_path / "cut" / "episodes-scripted.jsonl")
    assert len(records) == 5

    # A third run has nothing to do: a backend without replies is never asked.
    again = run(settings, tmp_path / "cut", [])
    assert _totals(again) == _totals(whole)


def test_torn_last_line_is_dropped_and_redone(settings: Settings, tmp_path: Path) -> None:
    whole = run(settings, tmp_path / "out", REPLIES)
    path = tmp_path / "out" / "episodes-scripted.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:40])  # tiny/5's record cut mid-write
    resumed = run(settings, tmp_path / "out", [SQ_PUBLIC_ONLY])
    assert _totals(resumed) == _totals(whole)
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_resume_refuses_a_different_configuration(settings: Settings, tmp_path: Path) -> None:
    run(settings, tmp_path / "out", REPLIES)
    with pytest.raises(EvalError, match="max_turns: was 3, now 2"):
        run(settings, tmp_path / "out", REPLIES, max_turns=2)


def test_samples_give_pass_at_k(settings: Settings, tmp_path: Path) -> None:
    tasks = TASKS[:2]
    # tiny/1: sample 0 passes, sample 1 fails; tiny/2: both fail (one turn each)
    replies = [ADD, fenced("def add(a, b):\n    return a"), SUB_WRONG, SUB_WRONG]
    result = run(
        settings, tmp_path / "out", replies, tasks=tasks, max_turns=1, samples=2, temperature=0.8
    )
    assert result.pass_at_k[1].rate == pytest.approx(0.25)  # (1/2 + 0) / 2
    assert result.pass_at_k[2].rate == pytest.approx(0.5)  # (1 + 0) / 2
    assert [t.first_passed for t in result.tasks] == [1, 0]
    seeds = sorted(r.seed for r in read_results(Path(result.results_file))[1])
    assert seeds == [0, 0, 1, 1]


def recount(result: SuiteResult, task_ids: list[str], stop_at: StopRule) -> SuiteResult:
    """A finished run of 4 one-attempt samples, summarized again from its records."""
    return summarize(
        read_results(Path(result.results_file))[1],
        task_ids,
        model=result.model,
        suite="tiny",
        samples=4,
        max_turns=1,
        temperature=0.8,
        seed=0,
        stop_at=stop_at,
    )


def test_stop_at_pass_draws_a_tasks_samples_until_one_passes(
    settings: Settings, tmp_path: Path
) -> None:
    tasks = TASKS[:3]
    # tiny/1: sample 0 passes (1 to 3 are not drawn); tiny/2: 0 and 1 fail, 2 passes (3 is
    # not drawn); tiny/3: all four fail
    replies = [ADD, SUB_WRONG, SUB_WRONG, SUB, *[MUL_WRONG_1] * 4]
    kw: dict[str, Any] = {"tasks": tasks, "max_turns": 1, "samples": 4, "temperature": 0.8}
    backend = ScriptedBackend(replies, name="scripted")
    result = run(settings, tmp_path / "out", replies, backend=backend, stop_at="pass", **kw)
    assert len(backend.calls) == 1 + 3 + 4 == result.episodes
    assert result.stop_at == "pass"
    drawn = sorted((r.task_id, r.sample) for r in read_results(Path(result.results_file))[1])
    assert drawn == [
        ("tiny/1", 0),
        *[("tiny/2", s) for s in range(3)],
        *[("tiny/3", s) for s in range(4)],
    ]
    # pass@k: one of the first k passed; pass@1 is sample 0's
    assert {k: r.count for k, r in result.pass_at_k.items()} == {1: 1, 2: 1, 3: 2, 4: 2}
    assert result.pass_at_1.count == 1 and result.passed.count == 1
    # the same samples drawn in full give the same "one of the first k", and the summary
    # of those full records stopped at a pass leaves out the samples after a pass
    every = [ADD] * 4 + [SUB_WRONG, SUB_WRONG, SUB, SUB] + [MUL_WRONG_1] * 4
    full = run(settings, tmp_path / "full", every, **kw, label="full")
    assert full.episodes == 12 and full.pass_at_k[1].rate == pytest.approx((1 + 2 / 4) / 3)
    again = recount(full, [t.task_id or "" for t in tasks], "pass")
    assert again.episodes == 8 and again.completion_tokens == result.completion_tokens
    assert again.pass_at_k == result.pass_at_k
    assert [t.solved for t in again.tasks] == [True, True, False]
    assert [t.first_solved for t in again.tasks] == [True, False, False]


SQ = fenced("def sq(a):\n    return a * a")
SQ_WRONG = fenced("def sq(a):\n    return a - a")


def test_stop_at_public_pass_ships_the_first_sample_that_passes_the_prompts_tests(
    settings: Settings, tmp_path: Path
) -> None:
    """tiny/5 shows sq(2) == 4 and hides sq(3) == 9. Its first sample passes the shown test
    and fails the hidden one; the second passes both. An oracle stopped at the hidden pass
    counts the task at 2 samples; a loop that sees only the prompt ships the first."""
    square = [TASKS[4]]
    replies = [SQ_PUBLIC_ONLY, SQ, SQ, SQ]
    kw: dict[str, Any] = {"tasks": square, "max_turns": 1, "samples": 4, "temperature": 0.8}
    public = ScriptedBackend(replies, name="scripted")
    shipped = run(settings, tmp_path / "pub", replies, backend=public, stop_at="public-pass", **kw)
    assert len(public.calls) == 1 == shipped.episodes
    assert shipped.stop_at == "public-pass"
    assert {k: r.count for k, r in shipped.pass_at_k.items()} == {1: 0, 2: 0, 3: 0, 4: 0}
    assert not shipped.tasks[0].solved
    oracle = run(settings, tmp_path / "hid", replies, stop_at="pass", **kw)
    assert oracle.episodes == 2
    assert {k: r.count for k, r in oracle.pass_at_k.items()} == {1: 0, 2: 1, 3: 1, 4: 1}
    assert oracle.tasks[0].solved
    table = report.table([shipped])
    assert "4, until one passed the prompt's tests" in table
    # the oracle's episodes hold every sample the public rule needs: counted again by it
    again = recount(oracle, ["tiny/5"], "public-pass")
    assert again.pass_at_k == shipped.pass_at_k and again.episodes == 1
    # and a sample that fails the shown test is drawn past, as an oracle would
    past = run(
        settings, tmp_path / "past", [SQ_WRONG, SQ], stop_at="public-pass", **kw, label="past"
    )
    assert past.episodes == 2 and past.tasks[0].solved
    assert {k: r.count for k, r in past.pass_at_k.items()} == {1: 0, 2: 1, 3: 1, 4: 1}


def test_stop_at_pass_wants_samples_of_one_attempt(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="give --max-turns 1"):
        run(settings, tmp_path / "o", REPLIES, samples=2, temperature=0.8, stop_at="pass")
    with pytest.raises(EvalError, match=r"--stop-at-public-pass stops .* give --samples 2"):
        run(settings, tmp_path / "o", REPLIES, max_turns=1, stop_at="public-pass")


def test_samples_without_temperature_is_refused(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="--temperature > 0"):
        run(settings, tmp_path / "out", REPLIES, samples=3)


@pytest.mark.parametrize("delay_s", [0.01, 0.03], ids=["fast", "busy-machine"])
def test_workers_overlap_episodes_with_one_generation_at_a_time(
    settings: Settings, tmp_path: Path, delay_s: float
) -> None:
    """The "busy-machine" case is a CI run beside a model eval, where a reply's pieces came
    slower: a bound in seconds on each generation failed there; the checks below do not."""
    tasks = [
        Task(text=f"Add, case {i}.", tests=[f"assert add({i}, 1) == {i + 1}"], task_id=f"w/{i}")
        for i in range(6)
    ]
    # each reply streams in 12 pieces of delay_s: 0.12 s or 0.36 s of "generation"
    backend = ScriptedBackend([ADD] * 6, delay_s=delay_s, name="scripted")
    result = run(settings, tmp_path / "out", [], tasks=tasks, workers=3, backend=backend)
    assert result.passed.count == 6
    assert result.pass_at_1.count == 6
    _, records = read_results(Path(result.results_file))
    # every reply's 12 pieces were timed, however loaded the machine
    assert all(r.gen_s >= 12 * delay_s * 0.9 for r in records), [r.gen_s for r in records]
    # time spent waiting for another worker's generation is not counted as generation: the
    # generations, one at a time, fit in the run's wall time (counted waits of 3 workers
    # would add up to about twice it). A ratio, not a bound in seconds, so that a busy CPU
    # (slower sleeps and thread switches) cannot fail it.
    assert result.gen_s <= result.elapsed_s * 1.05, (result.gen_s, result.elapsed_s)


def test_two_models_side_by_side_with_flips(settings: Settings, tmp_path: Path) -> None:
    a = run(settings, tmp_path / "out", REPLIES, label="model-a", max_turns=1)
    # model-b: fails tiny/1, solves tiny/2 and tiny/4 at once
    replies_b = [fenced("def add(a, b):\n    return 0"), SUB, MUL_WRONG_1, NEG, SQ_PUBLIC_ONLY]
    b = run(settings, tmp_path / "out", replies_b, label="model-b", max_turns=1)
    cmp = report.comparisons([a, b])[0]["first_attempt"]
    assert cmp["only_a"] == ["tiny/1"]
    assert cmp["only_b"] == ["tiny/2", "tiny/4"]
    text = report.table([a, b])
    assert "vs model-a: first attempt" in text
    assert "+2 / -1" in text
    data = report.results_json([a, b])
    assert [r["model"] for r in data["runs"]] == ["model-a", "model-b"]
    png = report.plot([a, b], tmp_path / "out" / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = report.write_json([a, b], tmp_path / "out" / "results.json")
    figures = report.recorded_figures(path, "model-b")  # what a shipped manifest keeps
    assert figures["suite"] == a.suite and figures["pass_within"] == {"1": 2}
    assert figures["pass_turn"] == {
        "tiny/1": None,
        "tiny/2": 1,
        "tiny/3": None,
        "tiny/4": 1,
        "tiny/5": None,
    }
    same = report.against_recorded(b, [figures])  # a user's rerun of a shipped version
    assert same is not None and "2 passed now, 2 recorded; every task passed" in same
    changed = {**figures, "pass_turn": {**figures["pass_turn"], "tiny/3": 1}}
    assert "1 differ at the first attempt (recorded attempt -> now): tiny/3 (1 -> None)." in str(
        report.against_recorded(b, [changed])
    )
    # passed at the third attempt when recorded: the first attempt agrees, a repair turn not
    repaired = {**figures, "pass_turn": {**figures["pass_turn"], "tiny/3": 3}}
    text = str(report.against_recorded(b, [repaired]))
    assert "the first attempt is as recorded on all 5; 1 differ only in the repair" in text
    assert "turns: tiny/3 (3 -> None). A repair turn continues" in text
    assert report.against_recorded(b, [{**figures, "max_turns": 4}]) is None  # another loop
    with pytest.raises(ValueError, match=r"no single run of 'model-c'.*model-a, model-b"):
        report.recorded_figures(path, "model-c")
    path.write_text("{")
    with pytest.raises(ValueError, match=r"not a results\.json written by `fixloop eval`"):
        report.recorded_figures(path, "model-b")


def test_a_broken_backend_stops_the_run_without_keeping_episodes(
    settings: Settings, tmp_path: Path
) -> None:
    with pytest.raises(EvalError, match=r"first 3 episodes all ended in an error.*no reply left"):
        run(settings, tmp_path / "out", [])
    _, records = read_results(tmp_path / "out" / "episodes-scripted.jsonl")
    assert records == []


def test_errors_after_a_clean_episode_are_kept_as_failures(
    settings: Settings, tmp_path: Path
) -> None:
    result = run(settings, tmp_path / "out", [ADD], tasks=TASKS[:4], max_turns=1)
    assert result.errors == 3 and result.episodes == 4
    assert result.passed.count == 1


def test_the_progress_bar_names_what_runs(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fixloop retrain`'s seed stage said "eval MODEL" for two hours while it seeded."""
    for purpose in ("seed", "eval"):
        run_suite(
            TASKS[:1],
            settings,
            max_turns=1,
            out_dir=tmp_path / purpose,
            backend=ScriptedBackend([ADD], name="scripted"),
            label="scripted",
            purpose=purpose,
            progress=True,
        )
        assert f"{purpose} scripted:" in capsys.readouterr().err


def test_episodes_from_another_cpu_are_not_resumed_into_this_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Greedy repair turns differ between CPUs (docs/BENCHMARKS.md, "The shipped adapter on
    a new machine"): a results file records the kernels, and another machine starts anew."""
    zen4 = "AMD EPYC (cpu family 25, model 17); llama-cpp-python 0.3.36; AVX2 = 1 AVX512 = 1"
    header = RunHeader(
        model="m", model_key="m:abc", max_turns=4, temperature=0.0, seed=0, purpose="eval",
        kernels=zen4,
    )  # fmt: skip
    path = tmp_path / "episodes-m.jsonl"
    ResultsFile(path, header)
    ResultsFile(path, header)  # the same machine resumes
    assert read_results(path)[0] == header
    zen3 = header.model_copy(update={"kernels": zen4.replace("model 17", "model 1")})
    with pytest.raises(EvalError, match=r"kernels: was .*model 17.*another CPU or llama\.cpp"):
        ResultsFile(path, zen3)
    older = tmp_path / "episodes-older.jsonl"  # written before files recorded the kernels
    ResultsFile(older, header.model_copy(update={"kernels": None}))
    assert "predates" not in caplog.text
    ResultsFile(older, zen3)  # resumed, with a warning that it may be another machine's
    assert "predates results files that name their machine" in caplog.text
