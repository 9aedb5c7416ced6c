"""Weaker isolation levels still run programs correctly and never claim more than they give."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from agent.sandbox import ExecStatus, Sandbox, SandboxLimits, isolation
from agent.sandbox.cgroup import (
    GROUP_PARENT,
    PIDS_ROOT,
    PidsCgroup,
    pids_controller_available,
    sweep_stale,
)

LIMITS = SandboxLimits(timeout_s=2, memory_mb=256, max_processes=16)


@pytest.mark.parametrize("level", isolation.available_levels())
def test_every_available_level_runs_and_reports_itself(level: str) -> None:
    sandbox = Sandbox(LIMITS, isolation_level=level)
    result = sandbox.run_asserts("def f(x):\n    return x + 1\n", ["assert f(1) == 2"])
    assert result.status == ExecStatus.PASSED
    assert result.isolation.level == level
    assert result.isolation.network == (level in ("bwrap", "netns"))
    assert result.isolation.filesystem == ("private" if level == "bwrap" else "shared")
    if level != "bwrap":
        assert any("not contained" in n or "shared" in n for n in result.isolation.notes)
    timeout = sandbox.run_program("while True:\n    pass\n")
    assert timeout.status == ExecStatus.TIMEOUT


def test_process_level_says_writes_are_not_contained(tmp_path: Path) -> None:
    sandbox = Sandbox(LIMITS, isolation_level="process")
    target = tmp_path / f"written-{uuid.uuid4().hex}"
    result = sandbox.run_program(f"open({str(target)!r}, 'w').write('x')\n")
    assert result.status == ExecStatus.PASSED
    assert target.exists()  # the weak level really is weak ...
    assert result.isolation.filesystem == "shared"  # ... and says so


def test_home_and_tmpdir_point_into_the_private_workdir() -> None:
    code = "import os\nprint(os.environ['HOME'])\nprint(os.environ['TMPDIR'])\nprint(os.getcwd())\n"
    for level in isolation.available_levels():
        result = Sandbox(LIMITS, isolation_level=level).run_program(code)
        home, tmp, cwd = result.stdout.text.split()
        assert home.startswith(cwd) and tmp.startswith(cwd), (level, result.stdout.text)
        assert home != os.path.expanduser("~")


@pytest.mark.skipif(not pids_controller_available(), reason="no writable cgroup v1 pids controller")
def test_pids_cgroup_binds_and_cleans_up() -> None:
    with PidsCgroup(5) as group:
        assert (group.path / "pids.max").read_text().strip() == "5"
        path = group.path
    assert not path.exists()


@pytest.mark.skipif(not pids_controller_available(), reason="no writable cgroup v1 pids controller")
def test_stale_groups_of_dead_processes_are_swept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    parent = PIDS_ROOT / GROUP_PARENT
    stale = parent / f"run-{dead.pid}-0"
    mine = parent / f"run-{os.getpid()}-sweep-test"
    stale.mkdir()
    mine.mkdir()
    try:
        assert sweep_stale(parent) >= 1
        assert not stale.exists()
        assert mine.exists()  # the owner is alive: never touched
    finally:
        for path in (stale, mine):
            if path.exists():
                path.rmdir()
