"""A cgroup v1 `pids` controller group per run: bounds the process count even for root.

Root ignores RLIMIT_NPROC, so a fork bomb run as root is only contained by the pids
controller. Every run gets a child group with `pids.max` set; the program joins it before it
starts (see `join_fd`), and at the end every process still in it is killed and the group removed.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shlex
import signal
import threading
import time
from collections.abc import Sequence
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


_swept = False


def sweep_stale(parent: Path = PIDS_ROOT / GROUP_PARENT) -> int:
    """Remove empty run groups left by fixloop processes that died without cleaning up
    (killed, or ended by os._exit). Only groups whose owner pid is gone. Returns how many."""
    removed = 0
    try:
        entries = list(parent.iterdir())
    except OSError:
        return 0
    for entry in entries:
        owner = entry.name.split("-")[1] if entry.name.startswith("run-") else ""
        if not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        with contextlib.suppress(OSError):
            entry.rmdir()  # fails (busy) if any process is still in it
            removed += 1
    return removed


class PidsCgroup:
    """One run's pids group. Use as a context manager; `kill_all()` ends every member."""

    def set_max(self, max_pids: int) -> None:
        if max_pids != self.max_pids:
            (self.path / "pids.max").write_text(str(max_pids))
            self.max_pids = max_pids

    def __init__(self, max_pids: int) -> None:
        global _swept
        parent = PIDS_ROOT / GROUP_PARENT
        parent.mkdir(exist_ok=True)
        if not _swept:
            _swept = True
            sweep_stale(parent)
        self.path = parent / f"run-{os.getpid()}-{next(_counter)}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(max_pids))
        self.max_pids = max_pids
        self.join_fd = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def join_from_child(self) -> None:
        """Called in the child between fork and exec: move the calling process in."""
        os.write(self.join_fd, str(os.getpid()).encode())

    def wrap(self, argv: Sequence[str], rlimits: dict[str, int] | None = None) -> list[str]:
        """`argv` run through /bin/sh, which joins this group and applies `rlimits` first.

        Cheaper than a preexec function (the parent can vfork) and safe with threads.
        """
        return wrap_command(argv, self.path / "cgroup.procs", rlimits)

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
        if not [p for p in self.pids() if p not in keep]:
            return True
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


_ULIMIT_FLAGS = {
    "memory_bytes": ("-v", 1024),
    "cpu_s": ("-t", 1),
    "file_bytes": ("-f", 512),
    "nproc": ("-p", 1),
}


def wrap_command(
    argv: Sequence[str], procs: Path | None, rlimits: dict[str, int] | None = None
) -> list[str]:
    """`/bin/sh -c 'echo $$ > PROCS; ulimit ...; exec "$@"' argv...`: join, limit, exec."""
    steps = []
    if procs is not None:
        steps.append(f"echo $$ > {shlex.quote(str(procs))}")
    for key, value in (rlimits or {}).items():
        if key in _ULIMIT_FLAGS:
            flag, unit = _ULIMIT_FLAGS[key]
            steps.append(f"ulimit {flag} {max(1, value // unit)}")
    steps.append('exec "$@"')
    return ["/bin/sh", "-c", " && ".join(steps), "fixloop-sandbox", *argv]


class GroupPool:
    """Empty run groups kept for reuse: creating and removing a cgroup costs milliseconds."""

    def __init__(self) -> None:
        self._free: list[PidsCgroup] = []
        self._lock = threading.Lock()

    def acquire(self, max_pids: int) -> PidsCgroup:
        with self._lock:
            group = self._free.pop() if self._free else None
        if group is not None:
            try:
                group.set_max(max_pids)
                return group
            except OSError:  # removed behind our back
                group.close()
        return PidsCgroup(max_pids)

    def release(self, group: PidsCgroup) -> None:
        if group.kill_all() and not group.pids():
            with self._lock:
                if len(self._free) < 16:
                    self._free.append(group)
                    return
        group.close()

    def close(self) -> None:
        with self._lock:
            groups, self._free = self._free, []
        for group in groups:
            group.close()

    def forget(self) -> None:
        """In a forked child: the free groups belong to the parent."""
        self._free = []
        self._lock = threading.Lock()


GROUPS = GroupPool()
atexit.register(GROUPS.close)
os.register_at_fork(after_in_child=GROUPS.forget)
