"""A warm interpreter inside the sandbox that forks one child per job (standard library only).

Started by `agent.sandbox.warm.ForkServer` as
`python -I -S forkserver.py CONTROL_FD WORKDIR SYS_PATH_JSON` inside bubblewrap, in a pids
cgroup. For each job the host sends, over the SOCK_SEQPACKET control socket, a small JSON header
with five file descriptors (stdin, stdout, stderr, spec, result). The server forks; the child
starts a new session, takes the descriptors as its stdio, enters a fresh job directory (HOME
and TMPDIR inside it), applies the rlimits and runs the harness. The server waits for it,
writes the `exit` record (exit code, signal, peak memory), cleans the job directory and /tmp,
and answers `done`. Timeouts and stray processes are the host's business: it kills every
process in the cgroup except the server's own.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import shutil
import socket
import sys
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import harness  # noqa: E402 - the sibling module, imported by path; not left on sys.path

sys.path.remove(_HERE)

MAX_FDS = 5
# Imported once here so that each forked job finds them loaded, as a program forked from a
# warm interpreter would: the harness's own lazy imports, and the standard modules that MBPP-
# and HumanEval-style programs import most (typing for `List`, re, math, collections, ...).
PRELOAD = (
    "ast", "traceback", "linecache", "signal", "contextlib", "resource", "typing", "re",
    "math", "cmath", "collections", "heapq", "itertools", "functools", "operator", "bisect",
    "string", "random", "datetime", "array", "copy", "fractions", "decimal", "statistics",
)  # fmt: skip


def _clean_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


PR_SET_DUMPABLE = 4


def _set_dumpable(value: int) -> bool:
    """Non-dumpable: without CAP_SYS_PTRACE (dropped) no job can ptrace or open /proc/PID/mem
    of the server. True when it took effect."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_DUMPABLE, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _child(header: dict, fds: list[int], sock: socket.socket, jobdir: str) -> None:
    code = harness.EXIT_CHILD_CRASHED
    try:
        _set_dumpable(1)  # the job is an ordinary process again
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
        with open(spec_r, "rb") as fh:
            spec = marshal.loads(fh.read())
        harness.apply_limits(spec.get("limits", {}))
        code = harness.run_job(spec, result_w)
        harness._flush_std()
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def serve(sock: socket.socket, workdir: str) -> None:
    counter = 0
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
        harness._flush_std()
        pid = os.fork()
        if pid == 0:
            _child(header, fds, sock, jobdir)
        result_w = fds[4]
        for fd in fds[:4]:
            os.close(fd)
        _, status, usage = os.wait4(pid, 0)
        record: dict = {"kind": "exit", "exit_code": None, "signal": None}
        if os.WIFSIGNALED(status):
            record["signal"] = os.WTERMSIG(status)
        else:
            record["exit_code"] = os.WEXITSTATUS(status)
        record["maxrss_kb"] = int(usage.ru_maxrss)
        with contextlib.suppress(OSError):
            harness._emit(result_w, record)
        os.close(result_w)
        shutil.rmtree(jobdir, ignore_errors=True)
        _clean_dir("/tmp")
        _clean_dir("/dev/shm")
        sock.send(json.dumps({"done": header.get("job")}).encode())


def main(argv: list[str]) -> None:
    ctrl_fd, workdir, sys_path = int(argv[1]), argv[2], json.loads(argv[3])
    sys.path.extend(p for p in sys_path if p not in sys.path)
    for name in PRELOAD:
        try:  # noqa: SIM105 - contextlib is not imported yet
            __import__(name)
        except ImportError:
            pass
    protected = _set_dumpable(0)
    sock = socket.socket(fileno=ctrl_fd)
    sock.send(json.dumps({"ready": os.getpid(), "protected": protected}).encode())
    serve(sock, workdir)


if __name__ == "__main__":
    main(sys.argv)
