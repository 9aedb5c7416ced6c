"""Start one sandboxed process, feed it, capture it under a deadline, and kill its whole tree."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.sandbox.cgroup import PidsCgroup, wrap_command
from agent.sandbox.pump import EndPolicy, pump
from agent.sandbox.records import parse_records
from agent.sandbox.result import CapturedText


@dataclass
class RawRun:
    """What happened to one process, before it is interpreted as an ExecResult."""

    exit_code: int | None
    signal: int | None
    duration_s: float
    maxrss_kb: int | None
    stdout: CapturedText
    stderr: CapturedText
    records: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # result records that broke protocol


def make_preexec(
    cgroup: PidsCgroup | None, rlimits: dict[str, int] | None
) -> Callable[[], None] | None:
    """Runs in the child before exec: join the pids group, apply rlimits. Async-signal-light."""
    if cgroup is None and not rlimits:
        return None
    limits = [
        (res, value)
        for key, res in (
            ("memory_bytes", resource.RLIMIT_AS),
            ("cpu_s", resource.RLIMIT_CPU),
            ("file_bytes", resource.RLIMIT_FSIZE),
            ("nproc", resource.RLIMIT_NPROC),
        )
        if (value := (rlimits or {}).get(key))
    ]

    def preexec() -> None:
        if cgroup is not None:
            cgroup.join_from_child()
        for res, value in limits:
            resource.setrlimit(res, (value, value))

    return preexec


def run_process(
    argv_for: Callable[[int | None, int | None], Sequence[str]],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    max_output_bytes: int,
    stdin: bytes | None = None,
    spec: bytes | None = None,
    heartbeat_s: float | None = None,
    cgroup: PidsCgroup | None = None,
    rlimits: dict[str, int] | None = None,
) -> RawRun:
    """Run the command `argv_for(spec_fd, result_fd)` and collect everything it does.

    With `spec`, a pipe carries it to the child (`spec_fd`) and another brings result records
    back (`result_fd`); each record extends the deadline by `heartbeat_s`. At the deadline the
    whole tree is killed: the cgroup's members when there is one, else the process group.
    """
    spec_r = spec_w = res_r = res_w = None
    if spec is not None:
        spec_r, spec_w = os.pipe()
        res_r, res_w = os.pipe()
    pass_fds = tuple(fd for fd in (spec_r, res_w) if fd is not None)
    start = time.monotonic()
    argv = list(argv_for(spec_r, res_w))
    preexec = None
    if (cgroup is not None or rlimits) and os.path.exists("/bin/sh"):
        argv = wrap_command(argv, cgroup.path / "cgroup.procs" if cgroup else None, rlimits)
    else:
        preexec = make_preexec(cgroup, rlimits)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            start_new_session=True,
            preexec_fn=preexec,  # only without /bin/sh; it takes no locks
        )
    except BaseException:
        for fd in (spec_w, res_r):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in (spec_r, res_w):
            if fd is not None:
                os.close(fd)
    # _collect owns spec_w and res_r from here on, and closes them.
    return _collect(
        proc, start, timeout_s, max_output_bytes, stdin, spec, spec_w, res_r, heartbeat_s, cgroup
    )


def _kill_tree(proc: subprocess.Popen[bytes], cgroup: PidsCgroup | None) -> None:
    if cgroup is not None:
        cgroup.kill_all()
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


class ColdEnd(EndPolicy):
    """A fresh process per job: it ends when the process does; a kill ends it at once."""

    def __init__(self, proc: subprocess.Popen[bytes], cgroup: PidsCgroup | None) -> None:
        super().__init__(os.pidfd_open(proc.pid))
        self.proc, self.cgroup = proc, cgroup

    def on_process_end(self) -> bool:
        if self.cgroup is not None:  # orphans left behind by the program
            self.cgroup.kill_all()
        return False

    def kill(self) -> None:
        _kill_tree(self.proc, self.cgroup)


def _collect(
    proc: subprocess.Popen[bytes],
    start: float,
    timeout_s: float,
    max_output_bytes: int,
    stdin: bytes | None,
    spec: bytes | None,
    spec_w: int | None,
    res_r: int | None,
    heartbeat_s: float | None,
    cgroup: PidsCgroup | None,
) -> RawRun:
    assert proc.stdout is not None and proc.stderr is not None
    inputs: dict[int, bytes] = {}
    if proc.stdin is not None:
        inputs[os.dup(proc.stdin.fileno())] = stdin or b""
        proc.stdin.close()
    if spec_w is not None:
        inputs[spec_w] = spec or b""
    policy = ColdEnd(proc, cgroup)
    try:
        pumped = pump(
            policy,
            stdout_fd=os.dup(proc.stdout.fileno()),
            stderr_fd=os.dup(proc.stderr.fileno()),
            result_fd=res_r,
            inputs=inputs,
            deadline=start + timeout_s,
            heartbeat_s=heartbeat_s,
            max_output_bytes=max_output_bytes,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        _kill_tree(proc, cgroup)
        proc.wait()
        raise
    finally:
        os.close(policy.pidfd)
        proc.stdout.close()
        proc.stderr.close()
    proc.returncode = status  # keeps Popen from warning that the child is still running
    code = sig = None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
    else:
        code = os.WEXITSTATUS(status)
    records, problems = parse_records(pumped.results) if res_r is not None else ([], [])
    return RawRun(
        exit_code=code,
        signal=sig,
        duration_s=time.monotonic() - start,
        maxrss_kb=int(usage.ru_maxrss) or None,
        stdout=pumped.stdout,
        stderr=pumped.stderr,
        records=records,
        timed_out=pumped.timed_out,
        notes=pumped.notes,
        problems=problems,
    )
