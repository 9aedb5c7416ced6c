"""Run a suite through the agent's own loop (`AgentSession`, purpose "eval") and score it.

`workers` episodes run at once, on threads. A model in this process generates for one
of them at a time (a lock around the backend), so the others only run their tests
meanwhile; keep one worker there: llama.cpp reuses the evaluated prompt prefix from one
turn to the next, and episodes taking turns on the model throw that cache away (each
repair turn then re-reads the whole conversation), which costs far more than test
execution saves. A server (``--base-url``) is not serialized: up to `workers`
generations are in flight at once, which a server with that many parallel slots
(``llama-server -np N``, vLLM) decodes together, one slot (and prompt cache) per stream.

Resumable: each finished episode is appended to ``<out_dir>/episodes-<model>.jsonl``
(after a header line naming the run's settings); a rerun with the same out_dir
skips the episodes already there, and every total is computed from that file,
so an interrupted run finishes with the totals an uninterrupted one gives.

Scoring, per episode, for every turn budget t = 1..max_turns: the program a
t-turn run would have ended with (the loop's best attempt among the first t
that count against the budget; a repeated program is resampled without
counting, as the loop does) passes the scoring tests. Those are the task's
hidden tests where it has them (HumanEval's `check`), else its public tests.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from agent.episode import fold
from agent.errors import FixloopError
from agent.events import (
    ChatMessage,
    EpisodeFinished,
    ErrorRaised,
    Event,
    ExecFinished,
    ModelIdentity,
    ModelReplied,
    SamplingParams,
    Task,
)
from evals.results import EpisodeRecord, SuiteResult, summarize

if TYPE_CHECKING:
    from agent.backends.base import Backend, StreamChunk
    from agent.config import Settings
    from agent.environment import FunctionEnv


FAIL_FAST_ERRORS = 3  # this many errors before any clean episode: the backend is broken


class EvalError(FixloopError, ValueError):
    """An evaluation that cannot run as asked; the message names the problem and the fix."""


class RunHeader(BaseModel):
    """First line of a results file: what the episodes in it were produced with."""

    model: str
    model_key: str
    max_turns: int
    temperature: float
    seed: int
    purpose: str
    policy: str = "greedy"  # the repair policy (agent/policies.py); older files: greedy


# ---------------------------------------------------------------- one model at a time
class SerializedBackend:
    """A backend shared by worker threads: one generation (or token count) at a time.

    A thread takes the lock when it first counts tokens for a turn (the loop does
    that before it starts timing the reply) and keeps it until its reply has
    streamed, so time spent waiting for another episode's generation is not
    counted as generation time. The wait is kept per thread (`take_wait`).
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.identity: ModelIdentity = inner.identity
        self.n_ctx: int = inner.n_ctx
        self._lock = threading.Lock()
        self._local = threading.local()

    def _acquire(self) -> None:
        if getattr(self._local, "owned", False):
            return
        started = time.perf_counter()
        self._lock.acquire()
        self._local.owned = True
        self._local.wait = getattr(self._local, "wait", 0.0) + time.perf_counter() - started

    def release(self) -> None:
        """Give the model up if this thread holds it (after an episode, whatever happened)."""
        if getattr(self._local, "owned", False):
            self._local.owned = False
            self._lock.release()

    def take_wait(self) -> float:
        """Seconds this thread waited for the model since the last call."""
        wait = getattr(self._local, "wait", 0.0)
        self._local.wait = 0.0
        return float(wait)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        self._acquire()
        return self.inner.count_tokens(messages)

    def count_text_tokens(self, text: str) -> int:
        return self.inner.count_text_tokens(text)

    def stream_chat(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        self._acquire()
        try:
            yield from self.inner.stream_chat(messages, params, response_format)
        finally:
            self.release()


def in_process(backend: Backend) -> bool:
    """A model in this process (one generation at a time), not a server's endpoint."""
    return backend.identity.backend != "openai"


# ---------------------------------------------------------------- scoring an episode


def score_episode(
    events: Sequence[Event], task: Task, max_turns: int, env: FunctionEnv | None
) -> list[bool]:
    """Whether a run with a budget of t turns would have passed, for t = 1..max_turns
    (the episode fold's budget and best-attempt rules, `agent.episode`)."""
    episode = fold(list(events))
    if not task.hidden_tests:
        first = episode.first_pass_within()
        return [first is not None and first <= t for t in range(1, max_turns + 1)]
    hidden_by_turn = {
        ev.turn: ev.result.passed for ev in events if isinstance(ev, ExecFinished) and ev.hidden
    }
    cache: dict[str, bool] = {}
    out: list[bool] = []
    for t in range(1, max_turns + 1):
        best = episode.best(within=t)
        if best is None or best.code is None or best.result is None:
            out.append(False)
        elif best.turn in hidden_by_turn:
            out.append(hidden_by_turn[best.turn])
        else:
            if best.code not in cache:
                if env is None:
                    raise EvalError("scoring hidden tests needs an environment")
                result = env.run_hidden(best.code, task)
                cache[best.code] = bool(result is not None and result.passed)
            out.append(cache[best.code])
    return out


def episode_record(
    events: Sequence[Event],
    task: Task,
    *,
    sample: int,
    seed: int,
    label: str,
    model_key: str,
    max_turns: int,
    wall_s: float,
    session_id: str,
    log_path: str,
    env: FunctionEnv | None,
) -> EpisodeRecord:
    """Score one finished episode from its events."""
    within = score_episode(events, task, max_turns, env)
    finished = [e for e in events if isinstance(e, EpisodeFinished)]
    end = finished[-1] if finished else None
    replies = [e for e in events if isinstance(e, ModelReplied)]
    errors = [e.message for e in events if isinstance(e, ErrorRaised)]
    public = {e.turn: e.result for e in events if isinstance(e, ExecFinished) and not e.hidden}
    return EpisodeRecord(
        task_id=task.task_id or "",
        sample=sample,
        seed=seed,
        model=label,
        model_key=model_key,
        outcome=end.outcome if end else "error",
        passed=within[-1],
        pass_turn=next((t for t, ok in enumerate(within, 1) if ok), None),
        within=within,
        turns=end.turns if end else len(replies),
        turn_passed=[r.passed for _, r in sorted(public.items())],
        n_tests=end.n_tests if end else 0,
        best_passed=end.best_passed if end else 0,
        completion_tokens=sum(r.completion_tokens for r in replies),
        prompt_tokens=sum(r.prompt_tokens for r in replies),
        prompt_tokens_evaluated=prompt_tokens_evaluated(replies),
        gen_s=round(sum(r.duration_s for r in replies), 4),
        exec_s=round(sum(e.result.duration_s for e in events if isinstance(e, ExecFinished)), 4),
        wall_s=round(wall_s, 4),
        session_id=session_id,
        log_path=log_path,
        error="; ".join(errors) or None,
    )


def prompt_tokens_evaluated(replies: Sequence[ModelReplied]) -> int | None:
    """Prompt tokens the model evaluated over an episode's replies (a reply that did not say
    counts as evaluated in full); None when no reply said."""
    if all(r.prompt_tokens_evaluated is None for r in replies):
        return None
    return sum(
        r.prompt_tokens if r.prompt_tokens_evaluated is None else r.prompt_tokens_evaluated
        for r in replies
    )


# ---------------------------------------------------------------- the results file
def model_label(settings: Settings) -> str:
    """How a run's model is named in tables and file names: --model (or the URL), + adapter."""
    label = settings.base_url or settings.model
    if settings.adapter is not None:
        label += f"+{Path(settings.adapter).stem}"
    return label


def results_path(out_dir: Path, label: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", label).strip("_") or "model"
    return out_dir / f"episodes-{slug}.jsonl"


def read_results(path: Path) -> tuple[RunHeader | None, list[EpisodeRecord]]:
    """The header and records of a results file; a torn last line is dropped from the file."""
    if not path.exists():
        return None, []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    header: RunHeader | None = None
    records: list[EpisodeRecord] = []
    good_bytes = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + (1 if i < len(lines) - 1 else 0)
            continue
        last = i == len(lines) - 1  # no newline after it: written partly
        try:
            data = json.loads(line)
            if last:
                raise ValueError("unterminated last line")
            if "run" in data:
                header = RunHeader.model_validate(data["run"])
            else:
                records.append(EpisodeRecord.model_validate(data))
        except (ValueError, ValidationError) as exc:
            if last:  # a crash mid-write: drop the partial line so appends stay valid
                with open(path, "r+b") as fh:
                    fh.truncate(good_bytes)
                break
            raise EvalError(
                f"{path}:{i + 1}: not a results line ({exc}); delete the file or use another --out"
            ) from exc
        good_bytes += len(line) + 1
    return header, records


class ResultsFile:
    """Append-only, thread-safe writer of one run's records."""

    def __init__(self, path: Path, header: RunHeader) -> None:
        self.path = path
        self._lock = threading.Lock()
        existing, _ = read_results(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if existing is None:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"run": header.model_dump()}) + "\n")
        elif existing != header:
            diff = {
                k: (getattr(existing, k), getattr(header, k))
                for k in RunHeader.model_fields
                if getattr(existing, k) != getattr(header, k)
            }
            raise EvalError(
                f"{path} holds results of a different run ({', '.join(f'{k}: was {a!r}, now {b!r}' for k, (a, b) in diff.items())}); "  # noqa: E501
                "use another --out directory, or delete the file to start over"
            )

    def append(self, record: EpisodeRecord) -> None:
        line = record.model_dump_json() + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


# ---------------------------------------------------------------- the run
@dataclass
class _Job:
    task: Task
    sample: int
    seed: int


def _check_args(tasks: Sequence[Task], samples: int, temperature: float, workers: int) -> None:
    if not tasks:
        raise EvalError("no tasks to evaluate")
    ids = [t.task_id for t in tasks]
    if any(not i for i in ids):
        raise EvalError("every task needs a task_id (the suite loaders set one)")
    dupes = sorted({i for i in ids if ids.count(i) > 1})  # type: ignore[misc]
    if dupes:
        raise EvalError(f"duplicate task ids {dupes[:5]}; each task must be unique")
    if samples < 1:
        raise EvalError(f"--samples {samples}: give at least 1")
    if samples > 1 and temperature == 0:
        raise EvalError(
            f"--samples {samples} with --temperature 0 draws the same greedy program {samples} "
            "times; give --temperature > 0 (e.g. 0.8) for independent samples"
        )
    if workers < 1:
        raise EvalError(f"--workers {workers}: give at least 1")


def run_suite(
    tasks: Sequence[Task],
    settings: Settings,
    *,
    max_turns: int,
    samples: int = 1,
    temperature: float = 0.0,
    workers: int = 1,
    seed: int = 0,
    out_dir: Path,
    purpose: str = "eval",
    progress: bool = True,
    backend: Backend | None = None,
    suite_name: str | None = None,
    label: str | None = None,
) -> SuiteResult:
    """Evaluate `settings`' model (or `backend`) on `tasks`; resumable through `out_dir`.

    Every episode is an `AgentSession` logged under `settings.sessions_dir`
    with `purpose` and the task's suite/split/task_id. `label` names the model
    in tables and the results file (default: --model, or the base URL).
    """
    from agent.environment import FunctionEnv
    from agent.session import AgentSession

    _check_args(tasks, samples, temperature, workers)
    label = label or model_label(settings)
    if backend is None:
        from agent.backends import make_backend

        backend = make_backend(settings)
    run_settings = settings.model_copy(
        update={"max_turns": max_turns, "temperature": temperature, "seed": seed}
    )
    header = RunHeader(
        model=label,
        model_key=backend.identity.key,
        max_turns=max_turns,
        temperature=temperature,
        seed=seed,
        purpose=purpose,
        policy=settings.policy,
    )
    path = results_path(out_dir, label)
    results = ResultsFile(path, header)
    _, existing = read_results(path)
    done = {(r.task_id, r.sample) for r in existing}
    jobs = [
        _Job(task, s, seed + s)
        for task in tasks
        for s in range(samples)
        if (task.task_id, s) not in done
    ]
    shared = SerializedBackend(backend) if workers > 1 and in_process(backend) else backend
    scorer = FunctionEnv(timeout_s=settings.exec_timeout, memory_mb=settings.memory_mb)
    stop = threading.Event()
    active: set[Any] = set()
    active_lock = threading.Lock()
    wanted = {(t.task_id, s) for t in tasks for s in range(samples)}
    passed = sum(r.passed for r in existing if (r.task_id, r.sample) in wanted)
    total = len(tasks) * samples
    bar = tqdm(
        total=total,
        initial=total - len(jobs),
        desc=f"eval {label}",
        unit="ep",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    counters = {"passed": passed, "tokens": 0, "gen_s": 0.0, "ok": 0}

    def run_job(job: _Job) -> EpisodeRecord | None:
        if stop.is_set():
            return None
        cfg = run_settings.model_copy(update={"seed": job.seed})
        session = AgentSession(job.task, shared, cfg, purpose=purpose)  # type: ignore[arg-type]
        with active_lock:
            active.add(session)
        started = time.perf_counter()
        events: list[Event] = []
        try:
            for event in session.start():
                if event.type != "token_delta":
                    events.append(event)
        finally:
            session.close()
            waited = 0.0
            if isinstance(shared, SerializedBackend):
                shared.release()
                waited = shared.take_wait()
            with active_lock:
                active.discard(session)
        end = next((e for e in reversed(events) if isinstance(e, EpisodeFinished)), None)
        if stop.is_set() or end is None or end.outcome == "cancelled":
            return None  # interrupted: not a result; a rerun does this episode again
        record = episode_record(
            events,
            job.task,
            sample=job.sample,
            seed=job.seed,
            label=label,
            model_key=backend.identity.key,
            max_turns=max_turns,
            wall_s=time.perf_counter() - started - waited,
            session_id=session.session_id,
            log_path=str(session.log_path),
            env=scorer,
        )
        return record

    held_back: list[EpisodeRecord] = []  # errors before any episode of this run got through

    def note(record: EpisodeRecord | None) -> None:
        if record is None:
            return
        if record.outcome == "error" and counters["ok"] == 0:
            held_back.append(record)
            if len(held_back) >= FAIL_FAST_ERRORS:
                raise EvalError(
                    f"the first {len(held_back)} episodes all ended in an error "
                    f"({held_back[0].error}); fix the model or backend and run again "
                    "(these episodes were not kept)"
                )
        else:
            counters["ok"] += record.outcome != "error"
            for early in held_back:
                results.append(early)
            held_back.clear()
            results.append(record)
        counters["passed"] += record.passed
        counters["tokens"] += record.completion_tokens
        counters["gen_s"] += record.gen_s
        rate = counters["tokens"] / counters["gen_s"] if counters["gen_s"] else 0.0
        bar.set_postfix(passed=f"{counters['passed']}/{bar.n + 1}", tok_s=f"{rate:.1f}")
        bar.update(1)

    started = time.perf_counter()
    try:
        if workers == 1:
            for job in jobs:
                note(run_job(job))
        else:
            _run_parallel(jobs, run_job, note, workers, stop, active, active_lock)
    finally:
        bar.close()
    for early in held_back:  # fewer than FAIL_FAST_ERRORS errors and nothing else: keep them
        results.append(early)
    _, records = read_results(path)
    return summarize(
        records,
        [t.task_id or "" for t in tasks],
        model=label,
        suite=suite_name or (tasks[0].suite or "custom"),
        samples=samples,
        max_turns=max_turns,
        temperature=temperature,
        seed=seed,
        elapsed_s=time.perf_counter() - started,
        results_file=str(path),
        policy=settings.policy,
    )


def _run_parallel(
    jobs: Sequence[_Job],
    run_job: Any,
    note: Any,
    workers: int,
    stop: threading.Event,
    active: set[Any],
    active_lock: threading.Lock,
) -> None:
    """Run jobs on `workers` threads; on Ctrl-C cancel the running episodes and re-raise."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval")
    pending: set[Future[EpisodeRecord | None]] = set()
    queue = list(jobs)
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                pending.add(pool.submit(run_job, queue.pop(0)))
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                note(fut.result())
    except BaseException:
        stop.set()
        with active_lock:
            for session in active:
                session.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
