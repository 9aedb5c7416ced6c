"""Run a suite through the agent's own loop (`AgentSession`, purpose "eval") and score it.

`workers` episodes run at once, on threads. A model in this process generates for one
of them at a time (a lock around the backend), so the others only run their tests
meanwhile; keep one worker there: llama.cpp reuses the evaluated prompt prefix from one
turn to the next, and episodes taking turns on the model throw that cache away (each
repair turn then re-reads the whole conversation), which costs far more than test
execution saves. A server (``--base-url``) is not serialized: up to `workers`
generations are in flight at once, which a server with that many parallel slots
(``llama-server -np N``, vLLM) decodes together, one slot (and prompt cache) per stream.

Resumable: each finished episode is appended to the run's results file
(`evals.results_file`); a rerun with the same out_dir skips the episodes already
there, and every total is computed from that file, so an interrupted run finishes
with the totals an uninterrupted one gives. Each episode is scored from its events
by `evals.scoring`; `evals.shared_backend` serializes an in-process model.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from agent.events import EpisodeFinished, Event, Task
from evals.errors import EvalError
from evals.results import STOP_RULES, EpisodeRecord, StopRule, SuiteResult, summarize
from evals.results_file import ResultsFile, RunHeader, model_label, read_results, results_path
from evals.scoring import episode_record
from evals.shared_backend import SerializedBackend, in_process

if TYPE_CHECKING:
    from agent.backends.base import Backend
    from agent.config import Settings
    from agent.preferences import Preference


FAIL_FAST_ERRORS = 3  # this many errors before any clean episode: the backend is broken


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


def _check_stop_at(rule: StopRule, samples: int, max_turns: int) -> None:
    if rule not in STOP_RULES:
        raise EvalError(f"stop rule {rule!r}: use one of {', '.join(STOP_RULES)}")
    flag = f"--stop-at-{rule}"
    if samples < 2:
        raise EvalError(f"{flag} stops a task's samples at the first pass: give --samples 2+")
    if max_turns != 1:
        raise EvalError(
            f"{flag} with --max-turns {max_turns}: it draws single attempts (pass@k) "
            "until one passes; give --max-turns 1"
        )


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
    preferences: Sequence[Preference] = (),
    stop_at: StopRule | None = None,
) -> SuiteResult:
    """Evaluate `settings`' model (or `backend`) on `tasks`; resumable through `out_dir`.

    Every episode is an `AgentSession` logged under `settings.sessions_dir`
    with `purpose` and the task's suite/split/task_id. `label` names the model
    in tables and the results file (default: --model, or the base URL). `preferences`:
    listed in the first prompt as in the user's sessions and checked on every attempt, but
    a violation does not fail the attempt: pass rates stay the tests' own, and each
    preference's compliance of the first program is reported beside them (evaluations apply
    no preference by default, so that their numbers stay comparable). `stop_at`: a task's
    samples are drawn in order and stop at the first that passes the scoring tests ("pass":
    pass@k is exact for "one of the first k") or the prompt's tests ("public-pass": what a
    deployed loop would ship); the costs are what sampling until then spends.
    """
    from agent.environment import FunctionEnv
    from agent.preferences.env import PreferenceEnv
    from agent.preferences.verify import VerifierRunner
    from agent.session import AgentSession, default_env

    _check_args(tasks, samples, temperature, workers)
    if stop_at:
        _check_stop_at(stop_at, samples, max_turns)
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
        preferences=[f"{p.id} v{p.current.version}" for p in preferences],
        kernels=backend.identity.kernels,
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
        desc=f"{purpose} {label}",  # "seed ..." while seeding, "eval ..." otherwise
        unit="ep",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    counters = {"passed": passed, "tokens": 0, "gen_s": 0.0, "ok": 0}
    stopped = {r.task_id for r in existing if r.stops(stop_at)} if stop_at else set()

    def run_job(job: _Job) -> EpisodeRecord | None:
        if stop.is_set():
            return None
        if job.task.task_id in stopped:  # an earlier sample of it passed: not drawn
            bar.update(1)
            return None
        cfg = run_settings.model_copy(update={"seed": job.seed})
        env = None
        if preferences:
            runner = VerifierRunner(timeout_s=settings.preference_timeout)
            inner = default_env(job.task, cfg, shared)
            env = PreferenceEnv(inner, preferences, runner, enforce=False)
        session = AgentSession(job.task, shared, cfg, purpose=purpose, env=env)  # type: ignore[arg-type]
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
        if stop_at and record.stops(stop_at):
            stopped.add(record.task_id)
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
        stop_at=stop_at,
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
