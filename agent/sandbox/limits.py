"""Resource limits for one sandboxed execution."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

# Upper bounds, so that a limit always fits the rlimits, timers and clocks it becomes
# (`inf`, `1e300` or 2**70 MB would overflow them): one day, and 16 TiB.
MAX_TIMEOUT_S = 86400.0
MAX_MEMORY_MB = 2**24
MIN_MEMORY_MB = 32


class SandboxLimits(BaseModel):
    """What one execution may use. Every limit applies per run (per test for `test_timeout_s`)."""

    timeout_s: float = Field(
        10.0,
        gt=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        description="wall clock for the program (load + run)",
    )
    test_timeout_s: float | None = Field(
        None,
        gt=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        description="wall clock per assert test (default: timeout_s)",
    )
    memory_mb: int = Field(
        1024, ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB, description="address-space limit (RLIMIT_AS)"
    )
    max_output_bytes: int = Field(
        256 * 1024, ge=256, description="kept of each of stdout/stderr (head + tail)"
    )
    max_processes: int = Field(64, ge=4, description="processes alive at once (cgroup pids.max)")
    max_file_mb: int = Field(64, ge=1, description="largest file the program may write")

    @property
    def per_test_timeout_s(self) -> float:
        return self.test_timeout_s if self.test_timeout_s is not None else self.timeout_s

    def total_budget_s(self, n_tests: int) -> float:
        """The longest an execution with `n_tests` assert tests may take, overall."""
        return self.timeout_s + n_tests * (self.per_test_timeout_s + 0.5)

    def rlimits(self, n_tests: int = 0) -> dict[str, int]:
        """The rlimits applied to the program's processes (see harness.apply_limits)."""
        return {
            "memory_bytes": self.memory_mb * 1024 * 1024,
            "cpu_s": math.ceil(self.total_budget_s(n_tests)) + 1,
            "file_bytes": self.max_file_mb * 1024 * 1024,
        }
