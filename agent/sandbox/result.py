"""The typed result of one sandboxed execution: what ran, what happened, how isolated it was."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class ExecStatus(StrEnum):
    PASSED = "passed"  # exited 0 and every test passed
    FAILED = "failed"  # ran to the end, some test failed (or expected stdout differed)
    ERROR = "error"  # crashed: non-zero exit, exception at import, syntax error
    TIMEOUT = "timeout"  # wall-clock or CPU limit reached
    MEMORY = "memory"  # address-space limit reached (MemoryError or killed for memory)
    KILLED = "killed"  # ended by a signal fixloop did not send for a limit


class TestStatus(StrEnum):
    __test__ = False  # not a pytest class (a dunder, so not an enum member)

    PASSED = "passed"
    FAILED = "failed"  # an assertion was false
    ERROR = "error"  # an exception other than AssertionError
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


class TestResult(BaseModel):
    """One test: an assert statement, a pytest node, or an expected-stdout check."""

    __test__ = False  # not a pytest class

    name: str  # the assert statement itself, or the pytest node id
    status: TestStatus
    message: str = ""  # assertion message or "Type: message"
    expression: str | None = None  # left side of a failing `==` (e.g. "f(3)")
    expected: str | None = None  # repr of the right side
    actual: str | None = None  # repr of the left side as evaluated
    exception_type: str | None = None
    lineno: int | None = None  # line in the model's program where it failed
    duration_s: float = 0.0
    traceback: str | None = None  # frames in the model's program and the test only


class CapturedText(BaseModel):
    """A stream captured with a size cap: head and tail kept, the middle counted."""

    text: str = ""  # decoded with errors="backslashreplace": never lost, never raises
    total_bytes: int = 0
    truncated_bytes: int = 0


class Isolation(BaseModel):
    """What protection was actually in effect for this run. Never claims more than is there."""

    level: str = "none"  # "bwrap", "netns", "process" (rlimits + tmpdir only)
    network: bool = False  # True: the program had no network access
    filesystem: str = "shared"  # "private" (only workdir writable), "shared" (host fs visible)
    pids: str = "none"  # how the process count is bounded: "cgroup", "rlimit", "none"
    notes: list[str] = Field(default_factory=list)


class ExecResult(BaseModel):
    status: ExecStatus
    tests: list[TestResult] = Field(default_factory=list)
    exit_code: int | None = None
    signal: int | None = None
    duration_s: float = 0.0
    peak_memory_kb: int | None = None
    stdout: CapturedText = Field(default_factory=CapturedText)
    stderr: CapturedText = Field(default_factory=CapturedText)
    isolation: Isolation = Field(default_factory=Isolation)
    command: list[str] = Field(default_factory=list)
    timed_out_tests: int = 0

    @property
    def passed(self) -> bool:
        return self.status == ExecStatus.PASSED

    @property
    def n_passed(self) -> int:
        return sum(t.status == TestStatus.PASSED for t in self.tests)

    @property
    def n_tests(self) -> int:
        return len(self.tests)
