"""Start one sandboxed process, feed it, capture it under a deadline, and kill its whole tree."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.sandbox.capture import CappedBuffer
from agent.sandbox.cgroup import PidsCgroup, wrap_command
from agent.sandbox.result import CapturedText

PIPE_SIZE = 1 << 20
READ_SIZE = 1 << 20
RESULT_CAP = 8 << 20  # bytes of result records accepted from inside the sandbox
EXIT_GRACE_S = 1.0  # how long pipes may stay open after the main process ended


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


def _set_pipe_size(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def _parse_records(data: bytes) -> list[dict[str, Any]]:
    records = []
    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


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
    out, err = CappedBuffer(max_output_bytes), CappedBuffer(max_output_bytes)
    result_data = bytearray()
    sel = selectors.DefaultSelector()
    readers: dict[int, Callable[[bytes], None]] = {
        proc.stdout.fileno(): out.feed,
        proc.stderr.fileno(): err.feed,
    }

    def feed_results(chunk: bytes) -> None:
        nonlocal deadline
        if len(result_data) < RESULT_CAP:
            result_data.extend(chunk)
        if heartbeat_s is not None and b"\n" in chunk:  # a record: the next one is due soon
            deadline = time.monotonic() + heartbeat_s

    if res_r is not None:
        readers[res_r] = feed_results
    for fd in readers:
        _set_pipe_size(fd)
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    writers: dict[int, memoryview] = {}
    stdin_fd = proc.stdin.fileno() if proc.stdin is not None else -1
    if stdin and proc.stdin is not None:
        writers[stdin_fd] = memoryview(stdin)
    if spec is not None and spec_w is not None:
        writers[spec_w] = memoryview(spec)
    for fd in writers:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_WRITE)
    pidfd = os.pidfd_open(proc.pid)
    sel.register(pidfd, selectors.EVENT_READ)

    deadline = start + timeout_s
    timed_out = False
    exited_at: float | None = None
    notes: list[str] = []
    try:
        while readers or exited_at is None:
            now = time.monotonic()
            limit = deadline if exited_at is None else exited_at + EXIT_GRACE_S
            if now >= limit:
                if exited_at is None:
                    timed_out = True
                    _kill_tree(proc, cgroup)
                    exited_at = time.monotonic()
                    continue
                notes.append("output pipes still open after exit; closed by fixloop")
                break
            for key, _ in sel.select(limit - now):
                fd = int(key.fd)
                if fd == pidfd:
                    sel.unregister(pidfd)
                    exited_at = time.monotonic()
                    if cgroup is not None:  # orphans left behind by the program
                        cgroup.kill_all()
                elif fd in writers:
                    view = writers[fd]
                    try:
                        n = os.write(fd, view[:65536])
                    except (BrokenPipeError, OSError):
                        n = len(view)
                    writers[fd] = view = view[n:]
                    if not view:
                        sel.unregister(fd)
                        del writers[fd]
                        _close_writer(proc, fd, stdin_fd)
                else:
                    try:
                        chunk = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                    if chunk:
                        readers[fd](chunk)
                    else:
                        sel.unregister(fd)
                        del readers[fd]
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        _kill_tree(proc, cgroup)
        proc.wait()
        raise
    finally:
        sel.close()
        os.close(pidfd)
        for fd in list(writers):
            _close_writer(proc, fd, stdin_fd)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        if res_r is not None:
            os.close(res_r)
    proc.returncode = status  # keeps Popen from warning that the child is still running
    code = sig = None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
    else:
        code = os.WEXITSTATUS(status)
    return RawRun(
        exit_code=code,
        signal=sig,
        duration_s=time.monotonic() - start,
        maxrss_kb=int(usage.ru_maxrss) or None,
        stdout=out.result(),
        stderr=err.result(),
        records=_parse_records(bytes(result_data)),
        timed_out=timed_out,
        notes=notes,
    )


def _close_writer(proc: subprocess.Popen[bytes], fd: int, stdin_fd: int) -> None:
    if proc.stdin is not None and fd == stdin_fd:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    else:
        with contextlib.suppress(OSError):
            os.close(fd)
