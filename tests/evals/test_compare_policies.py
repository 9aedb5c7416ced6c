"""bench/compare_policies.py end to end on a scripted model: every policy and the samples
reference run through the real loop and sandbox, the figures, flips, table and plot come
out, and a rerun resumes without generating anything."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agent.backends.base import BackendError, StreamChunk
from agent.events import ChatMessage, ModelIdentity, SamplingParams
from agent.policies import POLICIES
from tests.bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[2]


def load_bench() -> ModuleType:
    return load_bench_script("compare_policies")


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


SUITE = [
    {  # first attempt wrong (nothing passes); any later attempt right
        "text": "Write a function add(a, b) that returns the sum.",
        "task_id": 1,
        "test_setup_code": "",
        "test_list": ["assert add(1, 2) == 3", "assert add(2, 5) == 7"],
        "challenge_test_list": [],
    },
    {  # right at once
        "text": "Write a function rev(s) that reverses a string.",
        "task_id": 2,
        "test_setup_code": "",
        "test_list": ["assert rev('ab') == 'ba'"],
        "challenge_test_list": [],
    },
    {  # first attempt half right: a repair (the program in context) fixes it, a restart does not
        "text": "Write a function neg(a) that returns minus a.",
        "task_id": 3,
        "test_setup_code": "",
        "test_list": ["assert neg(0) == 0", "assert neg(2) == -2"],
        "challenge_test_list": [],
    },
    {  # repairs never fix it (nothing passes, again and again); a fresh start does
        "text": "Write a function sq(a) that returns a squared.",
        "task_id": 4,
        "test_setup_code": "",
        "test_list": ["assert sq(3) == 9", "assert sq(4) == 16"],
        "challenge_test_list": [],
    },
]

PROGRAMS = {
    "add": (
        fenced("def add(a, b):\n    return a - b - 1"),
        fenced("def add(a, b):\n    return a + b"),
    ),
    "rev": (fenced("def rev(s):\n    return s[::-1]"),) * 2,
    "neg": (fenced("def neg(a):\n    return a"), fenced("def neg(a):\n    return -a")),
    "sq": (fenced("def sq(a):\n    return -a"), fenced("def sq(a):\n    return a * a")),
}


class TaskAwareModel:
    """Answers by the task, the conversation and the seed: the first attempt from the task
    alone gets the first program, and so does any sample with seed 0; `add` gets it right on
    any later turn, `neg` only when its earlier program is in the conversation (a repair),
    `sq` only from a restart or a new sample of the task (a seed other than 0)."""

    n_ctx = 4096

    def __init__(self) -> None:
        self.identity = ModelIdentity(name="task-aware", backend="scripted")
        self.calls = 0
        self._lock = threading.Lock()

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    def count_text_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        with self._lock:
            self.calls += 1
        task = messages[1].content
        name = next(n for n in PROGRAMS if f"function {n}(" in task)
        first, later = PROGRAMS[name]
        repairing = any(m.role == "assistant" for m in messages)
        restarted = "A previous attempt failed" in task or "An earlier attempt" in task
        resampled = not repairing and params.temperature > 0 and bool(params.seed)
        if name == "neg":
            reply = later if repairing else first
        elif name == "sq":
            wrong = fenced(f"def sq(a):\n    return -a - {len(messages)}")  # new each turn
            reply = later if (restarted or resampled) else (wrong if repairing else first)
        else:
            reply = later if (repairing or restarted or resampled) else first
        prompt = self.count_tokens(messages)
        evaluated = prompt if not repairing else prompt // 3  # as a prefix cache would
        return iter(
            [
                StreamChunk(text=reply, prompt_tokens_evaluated=evaluated),
                StreamChunk(
                    text="",
                    finish_reason="stop",
                    prompt_tokens=prompt,
                    completion_tokens=len(reply.split()),
                ),
            ]
        )


class NoModel(TaskAwareModel):
    def stream_chat(self, *args: Any, **kwargs: Any) -> Iterator[StreamChunk]:
        raise BackendError("a resumed comparison must not generate")


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, sub in (("SESSIONS_DIR", "sessions"), ("DATA_DIR", "data"), ("CACHE_DIR", "cache")):
        monkeypatch.setenv(f"FIXLOOP_{name}", str(tmp_path / sub))
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in SUITE))
    return path


def test_dry_run_prints_the_fixloop_eval_commands(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "cmp"
    assert bench.main(["--suites", str(suite), "--out", str(out), "--dry-run", "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(POLICIES) + 2} runs" in printed
    assert "samples-k4-public: counted from samples-k4's episodes" in printed
    for policy in POLICIES:
        assert f"--policy {policy} --limit=2 --workers 1 --out {out}/tiny/{policy}" in printed
    assert (
        "--max-turns 1 --samples 4 --temperature 0.8 --seed 0 --stop-at-pass --limit=2" in printed
    )
    assert not out.exists()  # nothing ran


def test_every_policy_and_the_samples_end_to_end_then_resumed(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "cmp"
    args = ["--suites", str(suite), "--out", str(out), "--no-progress"]
    model = TaskAwareModel()
    assert bench.main(args, backend=model) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["policy"]: r for r in summary["rows"]}
    assert list(rows) == [
        "greedy",
        "sampled",
        "restart",
        "mixed",
        "adaptive",
        "fresh",
        "resample",
        "targeted",
        "samples-k4",
        "samples-k4-public",
    ]

    def within(policy: str) -> list[float]:
        return [rows[policy]["pass_within"][str(t)]["count"] for t in range(1, 5)]

    # greedy and sampled repair in one conversation: add and neg at attempt 2, never sq
    assert within("greedy") == within("sampled") == [1, 3, 3, 3]
    # restart repairs the first failure, then starts over: sq at attempt 3
    assert within("restart") == [1, 3, 4, 4]
    # mixed starts add and sq over (nothing passed) and repairs neg (half passed)
    assert within("mixed") == within("adaptive") == [1, 4, 4, 4]
    # fresh restarts add and sq from the task alone, a new sample (seed 2) that passes, and
    # repairs neg (half passed)
    assert within("fresh") == [1, 4, 4, 4]
    # resample never repairs: add and sq pass at their first new sample, neg (which only a
    # repair fixes) never does: its samples repeat the first program, resampled for free
    assert within("resample") == [1, 3, 3, 3]
    assert rows["resample"]["vs_greedy"]["gained"] == ["tiny/4"]
    assert rows["resample"]["vs_greedy"]["lost"] == ["tiny/3"]
    # targeted repairs only a crash at a line: neg's wrong answer is resampled, as resample
    assert within("targeted") == within("resample")
    # four samples of the task alone: rev at the first, add and sq at the second (seed 1)
    assert within("samples-k4") == [1, 3, 3, 3]
    # drawn until the first pass: rev 1, add and sq 2, neg all four
    assert rows["samples-k4"]["episodes"] == 1 + 2 + 2 + 4
    # the prompt's tests are the tests here: stopping at a public pass counts the same
    assert within("samples-k4-public") == [1, 3, 3, 3]
    assert rows["samples-k4-public"]["episodes"] == 1 + 2 + 2 + 4
    assert rows["samples-k4-public"]["vs_greedy"] == rows["samples-k4"]["vs_greedy"]
    assert rows["greedy"]["vs_greedy"] is None
    assert rows["sampled"]["vs_greedy"] == {"gained": [], "lost": [], "mcnemar_exact_p": 1.0}
    assert rows["restart"]["vs_greedy"]["gained"] == ["tiny/4"]
    assert rows["mixed"]["vs_greedy"]["gained"] == ["tiny/4"]
    assert rows["samples-k4"]["vs_greedy"]["gained"] == ["tiny/4"]
    assert rows["samples-k4"]["vs_greedy"]["lost"] == ["tiny/3"]
    for row in rows.values():
        assert row["n_tasks"] == 4 and row["errors"] == 0
        assert row["completion_tokens"] > 0 and row["wall_s"] > 0
        assert 0 < row["prompt_tokens_evaluated"] <= row["prompt_tokens_sent"]
    table = (out / "summary.md").read_text()
    assert "| greedy | 1/4 25.0%" in table and "4 samples, T 0.8 (pass@k)" in table
    assert "+1 / -0" in table and "+1 / -1" in table  # mixed and the samples against greedy
    assert (out / "policies.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each run is a `fixloop eval` results directory, named by suite and policy
    for policy in rows:
        runs = list((out / "tiny" / policy).glob("episodes-*.jsonl"))
        assert len(runs) == (0 if policy == "samples-k4-public" else 1)
    calls = model.calls
    assert calls > 0

    # a rerun finds every episode done: same figures, no generation
    capsys.readouterr()
    assert bench.main(args, backend=NoModel()) == 0
    again = json.loads((out / "summary.json").read_text())
    strip = ("elapsed_s",)
    assert {k: v for k, v in again.items() if k not in strip} == {
        k: v for k, v in summary.items() if k not in strip
    }

    # --report reads the same figures back without loading any model
    (out / "summary.json").unlink()
    assert bench.main([*args, "--report"]) == 0
    reported = json.loads((out / "summary.json").read_text())
    assert reported["rows"] == summary["rows"]
    assert reported["model_key"] == summary["model_key"]


def test_policies_pooled_over_two_suites_with_flips_against_greedy_and_the_default(
    suite: Path, tmp_path: Path
) -> None:
    bench = load_bench()
    other = tmp_path / "tiny2.jsonl"
    other.write_text(suite.read_text())
    out = tmp_path / "cmp"
    args = ["--suites", str(suite), str(other), "--out", str(out), "--no-progress"]
    args += ["--no-samples", "--policies", "greedy", "mixed", "resample"]
    assert bench.main(args, backend=TaskAwareModel()) == 0
    pooled = {r["policy"]: r for r in json.loads((out / "summary.json").read_text())["pooled"]}
    assert list(pooled) == ["greedy", "mixed", "resample"]
    assert pooled["greedy"]["per_suite"] == {str(suite): 3, str(other): 3}
    assert (pooled["mixed"]["passed"]["count"], pooled["mixed"]["passed"]["n"]) == (8, 8)
    # resample, the default, against greedy over both suites' tasks: sq gained, neg lost
    flips = pooled["resample"]["vs"]["greedy"]
    assert (flips["gained"], flips["lost"]) == (["tiny/4", "tiny2/4"], ["tiny/3", "tiny2/3"])
    assert pooled["greedy"]["vs"]["resample"]["gained"] == ["tiny/3", "tiny2/3"]
    assert "resample" not in pooled["resample"]["vs"]
    for r in pooled.values():
        assert 0 < r["prompt_tokens_evaluated"] <= r["prompt_tokens_sent"]
    table = (out / "summary.md").read_text()
    assert "all suites pooled, within 4 attempts" in table
    assert "| resample | 3/4 | 3/4 | **6/8 75.0%" in table
    assert "vs resample (the default)" in table
    # the plot's pooled panel: one labelled point per policy at (prompt compute, pass rate)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    bench.plot_pooled(ax, list(pooled.values()), 4)
    points = {t.get_text(): tuple(t.xy) for t in ax.texts}
    plt.close(fig)
    assert points == {
        p: (r["prompt_tokens_evaluated"] / 1000, 100 * r["passed"]["rate"])
        for p, r in pooled.items()
    }
    assert points["mixed"][1] == 100.0
    # one suite: no pooled table
    single = tmp_path / "one"
    one = ["--suites", str(suite), "--out", str(single), "--no-progress", "--no-samples"]
    assert bench.main([*one, "--policies", "greedy"], backend=TaskAwareModel()) == 0
    assert "all suites pooled" not in (single / "summary.md").read_text()


def test_report_names_the_run_that_is_not_finished(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench()
    out = tmp_path / "cmp"
    args = ["--suites", str(suite), "--out", str(out), "--no-progress", "--policies", "greedy"]
    assert bench.main([*args, "--limit", "2"], backend=TaskAwareModel()) == 0
    assert bench.main([*args, "--report"]) == 2  # 2 of the 4 tasks ran
    err = capsys.readouterr().err
    assert "tiny/greedy/episodes-" in err and "run the comparison without --report" in err
