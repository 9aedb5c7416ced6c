"""A warm interpreter inside the sandbox that forks one job per request (standard library only).

Started by `agent.sandbox.warm.ForkServer` as
`python -I -S forkserver.py CONTROL_FD WORKDIR SYS_PATH_JSON WIPE_JSON` inside bubblewrap with
`--as-pid-1` (so no other process of the sandbox outlives a job), in a pids cgroup. For each
job the host sends, over the SOCK_SEQPACKET control socket, a small JSON header with five file
descriptors (stdin, stdout, stderr, spec, result). The server forks the job's judge
(`harness.job`), waits for it, writes a `job` record (how the judge ended), wipes everything a
job could have left (the job directory, /tmp, /dev/shm, the hidden home, new entries in /dev,
SysV IPC objects), reaps orphans, and answers `done`. The server is non-dumpable: no job can
ptrace it or read its memory. Timeouts and stray processes are the host's business: it kills
every process in the cgroup except the server's own.
"""

from __future__ import annotations

import json
import os
import socket
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import fsclean  # noqa: E402 - sibling modules, imported by path; the path is not kept
import harness  # noqa: E402
import runtime  # noqa: E402 - the very module harness.py uses

sys.path.remove(_HERE)

MAX_FDS = 5
# Imported once here so that each forked job finds them loaded, as a program forked from a
# warm interpreter would: the harness's own lazy imports, and the standard modules that MBPP-
# and HumanEval-style programs import most (typing for `List`, re, math, collections, ...).
PRELOAD = (
    "ast", "traceback", "linecache", "signal", "contextlib", "resource", "typing", "re",
    "math", "cmath", "collections", "heapq", "itertools", "functools", "operator", "bisect",
    "string", "random", "datetime", "array", "copy", "fractions", "decimal", "statistics",
    "json", "pickle", "select", "threading", "atexit",
)  # fmt: skip
IPC_RMID = 0
_SYSV = (("shm", "shmctl"), ("sem", "semctl"), ("msg", "msgctl"))


def _dev_entries() -> dict[str, tuple[int, int]]:
    entries = {}
    try:
        for entry in os.scandir("/dev"):
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            entries[entry.name] = (info.st_mode, info.st_rdev)
    except OSError:
        pass
    return entries


def _remove_sysv_ipc() -> None:
    """Shared memory segments, semaphores and message queues a job made (private IPC ns)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    for kind, call in _SYSV:
        try:
            with open(f"/proc/sysvipc/{kind}") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 2:
                continue
            ident = int(fields[1])
            if call == "semctl":
                libc.semctl(ident, 0, IPC_RMID)
            else:
                getattr(libc, call)(ident, IPC_RMID, None)


def _reap() -> None:
    """As pid 1, the server inherits every orphan: collect the ones that have ended."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wipe(jobdir: str, roots: list[str], dev: dict[str, tuple[int, int]]) -> bool:
    """Remove everything the job could have left; False when /dev was damaged (restart)."""
    fsclean.remove_tree(jobdir)
    for root in roots:
        fsclean.clean_dir(root)
    now = _dev_entries()
    for name in set(now) - set(dev):
        fsclean.remove_tree(os.path.join("/dev", name))
    _remove_sysv_ipc()
    _reap()
    return all(now.get(name) == value for name, value in dev.items())


def _child(header: dict, fds: list[int], sock: socket.socket, jobdir: str) -> None:
    def body() -> None:
        os.setsid()
        sock.close()
        stdin_r, stdout_w, stderr_w, spec_r, result_w = fds
        for src, dst in ((stdin_r, 0), (stdout_w, 1), (stderr_w, 2)):
            os.dup2(src, dst)
            os.close(src)
        os.chdir(jobdir)
        os.environ.clear()
        os.environ.update(header["env"])
        os.environ["HOME"] = os.path.join(jobdir, "home")
        os.environ["TMPDIR"] = os.path.join(jobdir, "tmp")
        harness.job(spec_r, result_w)

    runtime.run_child(body)


def serve(sock: socket.socket, workdir: str, roots: list[str]) -> None:
    counter = 0
    dev = _dev_entries()
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, MAX_FDS)
        except OSError:
            return
        if not msg:
            return
        counter += 1
        header = json.loads(msg)
        if len(fds) != MAX_FDS:
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"error": f"expected {MAX_FDS} fds, got {len(fds)}"}).encode())
            continue
        jobdir = os.path.join(workdir, f"job-{counter}")
        os.makedirs(os.path.join(jobdir, "home"))
        os.makedirs(os.path.join(jobdir, "tmp"))
        runtime.flush_std()
        pid = os.fork()
        if pid == 0:
            _child(header, fds, sock, jobdir)
        result_w = fds[4]
        for fd in fds[:4]:
            os.close(fd)
        _, status, _usage = os.wait4(pid, 0)
        record: dict = {"kind": "job", "exit_code": None, "signal": None}
        if os.WIFSIGNALED(status):
            record["signal"] = os.WTERMSIG(status)
        else:
            record["exit_code"] = os.WEXITSTATUS(status)
        try:  # noqa: SIM105
            runtime.emit(result_w, record)
        except OSError:
            pass
        os.close(result_w)
        intact = wipe(jobdir, roots, dev)
        sock.send(json.dumps({"done": header.get("job"), "restart": not intact}).encode())
        if not intact:
            return


def main(argv: list[str]) -> None:
    ctrl_fd, workdir = int(argv[1]), argv[2]
    sys_path, roots = json.loads(argv[3]), json.loads(argv[4])
    sys.path.extend(p for p in sys_path if p not in sys.path)
    for name in PRELOAD:
        try:  # noqa: SIM105
            __import__(name)
        except ImportError:
            pass
    protected = runtime.set_dumpable(0)
    sock = socket.socket(fileno=ctrl_fd)
    sock.send(json.dumps({"ready": os.getpid(), "protected": protected}).encode())
    serve(sock, workdir, roots)


if __name__ == "__main__":
    main(sys.argv)
