"""The one I/O pump: feed a sandboxed job its input, drain its capped output and result
records, watch its deadline, and notice its end. Cold runs and warm fork servers differ only
in their `EndPolicy` (what ends a job, what a kill means)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import time
from dataclasses import dataclass, field

from agent.sandbox.capture import CappedBuffer
from agent.sandbox.result import CapturedText

PIPE_SIZE = 1 << 20
READ_SIZE = 1 << 20
RESULT_CAP = 8 << 20  # bytes of result records accepted from inside the sandbox
EXIT_GRACE_S = 1.0  # how long pipes may stay open after the job ended
WRITE_CHUNK = 65536


class EndPolicy:
    """How one kind of run ends. The defaults describe a cold run (one process per job)."""

    kill_grace_s: float | None = None  # after a kill: None = the job is over at once

    def __init__(self, pidfd: int) -> None:
        self.pidfd = pidfd  # readable when the watched process has ended

    def job_reported_end(self, records: bytes, chunk: bytes) -> bool:
        """Whether the result stream says the job is over (warm: the server's record)."""
        return False

    def on_job_end(self) -> None:
        """The job is over: remove what it left running."""

    def on_process_end(self) -> bool:
        """The watched process ended; True when that means the run was lost (a dead server)."""
        return False

    def kill(self) -> None:
        """The deadline passed: kill the job."""


@dataclass
class Pumped:
    stdout: CapturedText
    stderr: CapturedText
    results: bytes
    timed_out: bool = False
    lost: bool = False  # the process that should have reported the job's end did not
    notes: list[str] = field(default_factory=list)


def set_pipe_size(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def pump(
    policy: EndPolicy,
    *,
    stdout_fd: int,
    stderr_fd: int,
    result_fd: int | None,
    inputs: dict[int, bytes],
    deadline: float,
    heartbeat_s: float | None,
    max_output_bytes: int,
) -> Pumped:
    """Run the loop until the job is over and its pipes are drained (or their grace ran out).

    `inputs` maps a write end to the bytes to send (each is closed once sent); every record
    line on `result_fd` moves the deadline to `heartbeat_s` from now. Closes every fd given.
    """
    out, err = CappedBuffer(max_output_bytes), CappedBuffer(max_output_bytes)
    results = bytearray()
    readers: dict[int, CappedBuffer | None] = {stdout_fd: out, stderr_fd: err}
    if result_fd is not None:
        readers[result_fd] = None
    writers = {fd: memoryview(data) for fd, data in inputs.items() if data}
    for fd, data in inputs.items():
        if not data:
            os.close(fd)
    sel = selectors.DefaultSelector()
    for fd in readers:
        set_pipe_size(fd)
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    for fd in writers:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_WRITE)
    sel.register(policy.pidfd, selectors.EVENT_READ)
    pumped = Pumped(stdout=CapturedText(), stderr=CapturedText(), results=b"")
    ended_at: float | None = None
    killed_at: float | None = None
    reported = False
    try:
        while readers or ended_at is None:
            now = time.monotonic()
            if ended_at is None and reported:
                ended_at = now
                policy.on_job_end()
                continue
            if ended_at is not None:
                limit = ended_at + EXIT_GRACE_S
            elif killed_at is not None:
                limit = killed_at + (policy.kill_grace_s or 0.0)
            else:
                limit = deadline
            if now >= limit:
                if ended_at is not None:
                    pumped.notes.append("output pipes still open after exit; closed by fixloop")
                    break
                if killed_at is not None:  # killed, and the end was never reported
                    pumped.lost = True
                    ended_at = now
                    continue
                pumped.timed_out = True
                killed_at = now
                policy.kill()
                if policy.kill_grace_s is None:
                    ended_at = time.monotonic()
                continue
            for key, _ in sel.select(limit - now):
                fd = int(key.fd)
                if fd == policy.pidfd:
                    sel.unregister(fd)
                    pumped.lost = policy.on_process_end() or pumped.lost
                    if ended_at is None:
                        ended_at = time.monotonic()
                elif fd in writers:
                    view = writers[fd]
                    try:
                        n = os.write(fd, view[:WRITE_CHUNK])
                    except OSError:  # the reader is gone: the rest is dropped
                        n = len(view)
                    writers[fd] = view = view[n:]
                    if not view:
                        sel.unregister(fd)
                        del writers[fd]
                        os.close(fd)
                else:
                    try:
                        chunk = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(fd)
                        del readers[fd]
                        continue
                    buffer = readers[fd]
                    if buffer is not None:
                        buffer.feed(chunk)
                        continue
                    seen = len(results)
                    if seen < RESULT_CAP:
                        results.extend(chunk[: RESULT_CAP - seen])
                    reported = reported or policy.job_reported_end(results, chunk)
                    if heartbeat_s is not None and b"\n" in chunk:
                        deadline = time.monotonic() + heartbeat_s  # the next record is due
    finally:
        sel.close()
        for fd in [*readers, *writers]:
            with contextlib.suppress(OSError):
                os.close(fd)
    pumped.stdout, pumped.stderr, pumped.results = out.result(), err.result(), bytes(results)
    return pumped
