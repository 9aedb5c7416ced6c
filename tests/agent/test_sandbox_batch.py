"""run_batch: many programs over a pool of workers, results in order, same guarantees."""

from __future__ import annotations

import pytest

from agent.sandbox import BatchJob, ExecStatus, SandboxLimits, run_batch


def test_batch_results_come_back_in_order() -> None:
    jobs = [
        BatchJob(code=f"def f():\n    return {i}\n", tests=[f"assert f() == {i}"])
        for i in range(12)
    ]
    jobs[5] = BatchJob(code="def f():\n    return -1\n", tests=["assert f() == 5"])
    results = run_batch(jobs, workers=2, progress=False)
    assert [r.status for r in results] == [
        ExecStatus.FAILED if i == 5 else ExecStatus.PASSED for i in range(12)
    ]
    assert results[5].tests[0].actual == "-1"


def test_batch_mixes_kinds_and_limits(capsys: pytest.CaptureFixture[str]) -> None:
    jobs = [
        BatchJob(kind="program", code="print(input()[::-1])", stdin="abc", expected_stdout="cba"),
        BatchJob(
            kind="program",
            code="while True:\n    pass\n",
            limits=SandboxLimits(timeout_s=0.5),
        ),
        BatchJob(kind="program", code="x = bytearray(4 * 1024**3)\n"),
        BatchJob(code="import os\nos.killpg(0, 9)\n", tests=["assert True"]),
    ]
    results = run_batch(jobs, workers=2, progress=True, limits=SandboxLimits(memory_mb=256))
    assert [r.status for r in results] == [
        ExecStatus.PASSED,
        ExecStatus.TIMEOUT,
        ExecStatus.MEMORY,
        ExecStatus.KILLED,
    ]
    assert "exec" in capsys.readouterr().err  # the tqdm bar


def test_batch_rejects_bad_worker_count() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        run_batch([], workers=0)
    assert run_batch([], workers=1, progress=False) == []


def test_a_forked_child_does_not_share_the_parents_servers() -> None:
    import multiprocessing

    from agent.sandbox import Sandbox

    sandbox = Sandbox(SandboxLimits(timeout_s=5))
    assert sandbox.run_program("print(1)\n").passed  # the parent now has an idle server
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        status = pool.apply(_child_run, ())
    assert status == "passed"
    assert sandbox.run_program("print(2)\n").stdout.text == "2\n"  # the parent's still work


def _child_run() -> str:
    from agent.sandbox import Sandbox

    return Sandbox(SandboxLimits(timeout_s=5)).run_program("print(3)\n").status.value
