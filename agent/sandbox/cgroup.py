"""A cgroup v1 `pids` controller group per run: bounds the process count even for root.

Root ignores RLIMIT_NPROC, so a fork bomb run as root is only contained by the pids
controller. Every run gets a child group with `pids.max` set; the program joins it before it
starts (see `join_fd`), and at the end every process still in it is killed and the group removed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from pathlib import Path

PIDS_ROOT = Path("/sys/fs/cgroup/pids")
GROUP_PARENT = "fixloop-sandbox"
_counter = itertools.count()


def pids_controller_available() -> bool:
    """True when a child pids group can be created here (cgroup v1 pids mounted, writable)."""
    parent = PIDS_ROOT / GROUP_PARENT
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / f"probe-{os.getpid()}-{next(_counter)}"
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


class PidsCgroup:
    """One run's pids group. Use as a context manager; `kill_all()` ends every member."""

    def __init__(self, max_pids: int) -> None:
        parent = PIDS_ROOT / GROUP_PARENT
        parent.mkdir(exist_ok=True)
        self.path = parent / f"run-{os.getpid()}-{next(_counter)}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(max_pids))
        self.max_pids = max_pids
        self.join_fd = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def join_from_child(self) -> None:
        """Called in the child between fork and exec: move the calling process in."""
        os.write(self.join_fd, str(os.getpid()).encode())

    def pids(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def peak(self) -> int | None:
        try:
            return int((self.path / "pids.peak").read_text())
        except (OSError, ValueError):
            return None

    def events_max(self) -> int:
        """How many forks were refused because the group was full."""
        try:
            return int((self.path / "pids.events").read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            return 0

    def kill_all(self, keep: frozenset[int] = frozenset(), timeout_s: float = 5.0) -> bool:
        """SIGKILL every member except `keep`; forks are refused meanwhile. True when done."""
        with contextlib.suppress(OSError):
            (self.path / "pids.max").write_text(str(len(keep)))
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                victims = [p for p in self.pids() if p not in keep]
                if not victims:
                    return True
                for pid in victims:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.001)
        finally:
            with contextlib.suppress(OSError):
                (self.path / "pids.max").write_text(str(self.max_pids))

    def close(self) -> None:
        """Kill what is left and remove the group."""
        self.kill_all()
        with contextlib.suppress(OSError):
            os.close(self.join_fd)
        for _ in range(200):  # members that were just killed leave the group asynchronously
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.005)

    def __enter__(self) -> PidsCgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
