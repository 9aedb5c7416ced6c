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
    loop = _Loop(policy, deadline, heartbeat_s, max_output_bytes)
    try:
        loop.open(stdout_fd, stderr_fd, result_fd, inputs)
        loop.run()
    finally:
        loop.close()
    return loop.pumped()


class _Loop:
    """The state of one pump: its pipes, its clock, and what has arrived."""

    def __init__(
        self, policy: EndPolicy, deadline: float, heartbeat_s: float | None, max_output: int
    ) -> None:
        self.policy, self.deadline, self.heartbeat_s = policy, deadline, heartbeat_s
        self.out, self.err = CappedBuffer(max_output), CappedBuffer(max_output)
        self.results = bytearray()
        self.readers: dict[int, CappedBuffer | None] = {}
        self.writers: dict[int, memoryview] = {}
        self.sel = selectors.DefaultSelector()
        self.ended_at: float | None = None
        self.killed_at: float | None = None
        self.reported = False
        self.timed_out = self.lost = False
        self.notes: list[str] = []

    def open(
        self, stdout_fd: int, stderr_fd: int, result_fd: int | None, inputs: dict[int, bytes]
    ) -> None:
        self.readers = {stdout_fd: self.out, stderr_fd: self.err}
        if result_fd is not None:
            self.readers[result_fd] = None
        for fd, data in inputs.items():
            if data:
                self.writers[fd] = memoryview(data)
            else:
                os.close(fd)
        for fd in self.readers:
            set_pipe_size(fd)
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ)
        for fd in self.writers:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_WRITE)
        self.sel.register(self.policy.pidfd, selectors.EVENT_READ)

    def run(self) -> None:
        while self.readers or self.ended_at is None:
            now = time.monotonic()
            if self.ended_at is None and self.reported:
                self.ended_at = now
                self.policy.on_job_end()
                continue
            limit = self._limit()
            if now >= limit:
                if self.ended_at is not None:
                    self.notes.append("output pipes still open after exit; closed by fixloop")
                    return
                self._passed_limit()
                continue
            for key, _ in self.sel.select(limit - now):
                self._ready(int(key.fd))

    def _limit(self) -> float:
        if self.ended_at is not None:
            return self.ended_at + EXIT_GRACE_S
        if self.killed_at is not None:
            return self.killed_at + (self.policy.kill_grace_s or 0.0)
        return self.deadline

    def _passed_limit(self) -> None:
        """The deadline passed: kill the job; or the kill's grace did: the end is lost."""
        now = time.monotonic()
        if self.killed_at is not None:  # killed, and the end was never reported
            self.lost = True
            self.ended_at = now
            return
        self.timed_out = True
        self.killed_at = now
        self.policy.kill()
        if self.policy.kill_grace_s is None:
            self.ended_at = time.monotonic()

    def _ready(self, fd: int) -> None:
        if fd == self.policy.pidfd:
            self.sel.unregister(fd)
            self.lost = self.policy.on_process_end() or self.lost
            if self.ended_at is None:
                self.ended_at = time.monotonic()
        elif fd in self.writers:
            self._write(fd)
        else:
            self._read(fd)

    def _write(self, fd: int) -> None:
        view = self.writers[fd]
        try:
            n = os.write(fd, view[:WRITE_CHUNK])
        except OSError:  # the reader is gone: the rest is dropped
            n = len(view)
        self.writers[fd] = view = view[n:]
        if not view:
            self.sel.unregister(fd)
            del self.writers[fd]
            os.close(fd)

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        if not chunk:
            self.sel.unregister(fd)
            del self.readers[fd]
            return
        buffer = self.readers[fd]
        if buffer is not None:
            buffer.feed(chunk)
            return
        seen = len(self.results)
        if seen < RESULT_CAP:
            self.results.extend(chunk[: RESULT_CAP - seen])
        self.reported = self.reported or self.policy.job_reported_end(self.results, chunk)
        if self.heartbeat_s is not None and b"\n" in chunk:
            self.deadline = time.monotonic() + self.heartbeat_s  # the next record is due

    def close(self) -> None:
        self.sel.close()
        for fd in [*self.readers, *self.writers]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.readers, self.writers = {}, {}

    def pumped(self) -> Pumped:
        return Pumped(
            stdout=self.out.result(),
            stderr=self.err.result(),
            results=bytes(self.results),
            timed_out=self.timed_out,
            lost=self.lost,
            notes=self.notes,
        )
