"""Which isolation this machine offers, and the command prefix that puts a program inside it.

Levels, strongest first (the level actually used is reported in every result):
- "bwrap": bubblewrap; no network, the host filesystem read-only, only the working directory
  (and private /tmp, /dev/shm) writable, the real home hidden, a private pid namespace, all
  capabilities dropped;
- "netns": `unshare --net`; no network, but the host filesystem is shared;
- "process": a fresh process with rlimits, a temporary working directory and a scrubbed
  environment only.
The process count is bounded by the cgroup pids controller where available ("cgroup"), else by
RLIMIT_NPROC for non-root users ("rlimit"), else not at all ("none").
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from agent.sandbox.cgroup import pids_controller_available
from agent.sandbox.result import Isolation

LEVELS = ("bwrap", "netns", "process")


def _works(argv: list[str]) -> bool:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@functools.cache
def bwrap_path() -> str | None:
    path = shutil.which("bwrap")
    if path and _works([path, *_BWRAP_BASE, "--", "true"]):
        return path
    return None


@functools.cache
def unshare_path() -> str | None:
    path = shutil.which("unshare")
    if path and _works([path, "--net", "--", "true"]):
        return path
    return None


@functools.cache
def cgroup_available() -> bool:
    return pids_controller_available()


def best_level() -> str:
    if bwrap_path():
        return "bwrap"
    if unshare_path():
        return "netns"
    return "process"


def available_levels() -> list[str]:
    return [
        lvl
        for lvl in LEVELS
        if lvl == "process"
        or (lvl == "bwrap" and bwrap_path())
        or (lvl == "netns" and unshare_path())
    ]


_BWRAP_BASE = [
    "--ro-bind", "/", "/",
    "--dev", "/dev",
    "--proc", "/proc",
    "--tmpfs", "/tmp",
    "--tmpfs", "/dev/shm",
    "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
    "--die-with-parent", "--new-session",
    "--cap-drop", "ALL",
]  # fmt: skip


def _interpreter_dirs() -> list[Path]:
    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    return sorted(d for d in dirs if d.exists())


def _hidden_home() -> Path | None:
    home = Path(os.path.expanduser("~"))
    if str(home) in ("/", "") or not home.is_dir():
        return None
    return home


def _run_dirs() -> list[Path]:
    """/run and /var/run (when it is a directory of its own): where host daemons' sockets live."""
    dirs = [Path("/run")] if Path("/run").is_dir() else []
    var_run = Path("/var/run")
    if var_run.is_dir() and not var_run.is_symlink():
        dirs.append(var_run)
    return dirs


@functools.cache
def _host_sockets() -> tuple[Path, ...]:
    """Listening unix-domain sockets with a path on the host (from /proc/net/unix)."""
    found: set[Path] = set()
    try:
        lines = Path("/proc/net/unix").read_text(errors="replace").splitlines()[1:]
    except OSError:
        return ()
    for line in lines:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7].startswith("/"):
            found.add(Path(fields[7]))
    return tuple(sorted(p for p in found if p.is_socket()))


def answer_key_dirs() -> list[Path]:
    """fixloop's own data a program must not read: evaluation datasets, session logs, the
    data directory (registry, built datasets). Overrides from the environment count too."""
    from agent import paths

    root = Path(__file__).resolve().parents[2]
    dirs = [root / "sessions", root / "evals" / "data", paths.default_data_dir()]
    for var in ("FIXLOOP_SESSIONS_DIR", "FIXLOOP_DATA_DIR"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    return [d.resolve() for d in dirs if d.is_dir()]


def wipe_roots() -> list[str]:
    """The writable places a warm fork server empties between jobs (besides the job's dir)."""
    roots = ["/tmp", "/dev/shm", *(str(d) for d in _run_dirs())]
    home = _hidden_home()
    if home is not None:
        roots.append(str(home))
    return roots


def bwrap_prefix(
    writable: list[Path], chdir: Path, extra_ro: list[Path] = (), *, as_pid_1: bool = False
) -> list[str]:
    """bwrap arguments: read-only host, private /tmp and /run, the real home and fixloop's
    data hidden, host sockets unreachable, `writable` bound.

    `extra_ro` are directories (e.g. the harness's) re-exposed read-only if under a hidden
    directory. `as_pid_1`: the command is the pid namespace's init (no bwrap init process
    that outlives a job).
    """
    path = bwrap_path()
    assert path is not None
    argv = [path, *_BWRAP_BASE]
    if as_pid_1:
        argv.append("--as-pid-1")
    hidden = [Path("/tmp"), Path("/dev/shm"), *_run_dirs()]
    for d in _run_dirs():
        argv += ["--tmpfs", str(d)]
    home = _hidden_home()
    if home is not None:
        argv += ["--tmpfs", str(home)]
        hidden.append(home)
    needed = [*_interpreter_dirs(), *extra_ro, *writable]
    for d in answer_key_dirs():
        if not any(n.is_relative_to(d) for n in needed) and not any(
            d.is_relative_to(h) for h in hidden
        ):
            argv += ["--tmpfs", str(d)]
            hidden.append(d)
    for sock in _host_sockets():
        if not any(sock.is_relative_to(h) for h in hidden):
            argv += ["--ro-bind", "/dev/null", str(sock)]
    # The interpreter and the harness stay visible even when they live under a hidden
    # directory: ~/.pyenv, or a checkout (and its .venv) under /tmp.
    for d in [*_interpreter_dirs(), *extra_ro]:
        if any(d.is_relative_to(h) for h in hidden):
            argv += ["--ro-bind", str(d), str(d)]
    for d in writable:
        argv += ["--bind", str(d), str(d)]
    argv += ["--chdir", str(chdir), "--"]
    return argv


def command_prefix(
    level: str,
    writable: list[Path],
    chdir: Path,
    extra_ro: list[Path] = (),
    *,
    as_pid_1: bool = False,
) -> list[str]:
    """The argv prefix that runs a command at `level` with `writable` as its writable dirs."""
    if level == "bwrap":
        return bwrap_prefix(writable, chdir, extra_ro, as_pid_1=as_pid_1)
    if level == "netns":
        path = unshare_path()
        assert path is not None
        return [path, "--net", "--"]
    return []


def describe(level: str, pids: str) -> Isolation:
    """The Isolation record for a run at `level`: what is in effect, nothing more."""
    notes: list[str] = []
    if level == "bwrap":
        iso = Isolation(level="bwrap", network=True, filesystem="private", pids=pids)
        notes.append("host filesystem readable (read-only); real home hidden")
    elif level == "netns":
        iso = Isolation(level="netns", network=True, filesystem="shared", pids=pids)
        notes.append("host filesystem shared: writes outside the workdir are not contained")
    else:
        iso = Isolation(level="process", network=False, filesystem="shared", pids=pids)
        notes.append("network reachable; host filesystem shared")
    if pids == "none":
        notes.append("process count not bounded (root ignores RLIMIT_NPROC, no pids cgroup)")
    if level != "bwrap" and pids != "cgroup":
        notes.append("processes that start a new session can outlive a timeout")
    iso.notes = notes
    return iso
