"""Many executions over a pool of workers, each with the single-run guarantees."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Literal

from pydantic import BaseModel, Field

from agent.sandbox.limits import SandboxLimits
from agent.sandbox.result import ExecResult, ExecStatus
from agent.sandbox.sandbox import Sandbox


class BatchJob(BaseModel):
    """One program to run: assert tests, a script with expected stdout, or a pytest file."""

    code: str
    tests: list[str] = Field(default_factory=list)
    setup: str = ""
    kind: Literal["asserts", "program", "pytest"] = "asserts"
    expected_stdout: str | None = None
    stdin: str | None = None
    test_file_text: str = ""
    limits: SandboxLimits | None = None  # None: the batch's limits


def run_job(sandbox: Sandbox, job: BatchJob) -> ExecResult:
    if job.kind == "asserts":
        return sandbox.run_asserts(job.code, job.tests, job.setup)
    if job.kind == "program":
        return sandbox.run_program(job.code, job.expected_stdout, job.stdin)
    return sandbox.run_pytest_file(job.code, job.test_file_text)


def run_batch(
    jobs: Sequence[BatchJob],
    workers: int = 2,
    progress: bool = True,
    limits: SandboxLimits | None = None,
) -> list[ExecResult]:
    """Run `jobs` on `workers` parallel sandboxed processes; results in the order of `jobs`."""
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    base = Sandbox(limits)
    sandboxes: dict[str, Sandbox] = {}

    def sandbox_for(job: BatchJob) -> Sandbox:
        if job.limits is None:
            return base
        key = job.limits.model_dump_json()
        if key not in sandboxes:
            sandboxes[key] = Sandbox(job.limits)
        return sandboxes[key]

    results: list[ExecResult | None] = [None] * len(jobs)
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(jobs), desc="exec", unit="prog", disable=not progress) as bar,
    ):
        futures = {pool.submit(run_job, sandbox_for(job), job): i for i, job in enumerate(jobs)}
        passed = 0
        for fut in as_completed(futures):
            result = fut.result()
            results[futures[fut]] = result
            passed += result.status == ExecStatus.PASSED
            bar.update(1)
            bar.set_postfix(passed=passed)
    return [r for r in results if r is not None]
