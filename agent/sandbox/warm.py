"""Warm fork servers: one pre-started interpreter per worker, inside bubblewrap and a pids cgroup.

A fresh interpreter per run costs tens of milliseconds; forking a warm one costs about one. Each
server runs jobs one at a time, every job in a new session, a fresh job directory, its own
rlimits. Between jobs the host kills every process in the server's cgroup that is not the
server itself (orphans, fork bombs, timeouts), and the server wipes the job directory, /tmp
and /dev/shm. A job that kills the server gets a result saying so, and the next job gets a new
server. What a job shares with later jobs of the same worker: the server process, which is
non-dumpable (no ptrace, no /proc/PID/mem without the dropped capabilities), and nothing on
the host.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import marshal
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.sandbox import fsclean, isolation
from agent.sandbox.cgroup import PidsCgroup
from agent.sandbox.process import RawRun
from agent.sandbox.pump import EndPolicy, pump
from agent.sandbox.records import parse_records

FORKSERVER = Path(__file__).resolve().with_name("forkserver.py")
SERVER_PROCESSES = 2  # bwrap's monitor, and the server as the namespace's pid 1
START_TIMEOUT_S = 20.0
KILL_GRACE_S = 3.0
JOB_MARK = b'{"kind": "job"'  # how the server's record of a job's end starts


_dirs_swept = False


def sweep_stale_dirs() -> None:
    """Remove the directories of fork servers whose owning process died without cleaning up."""
    global _dirs_swept
    if _dirs_swept:
        return
    _dirs_swept = True
    for path in Path(tempfile.gettempdir()).glob("fixloop-warm-*-*"):
        owner = path.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            fsclean.remove_tree(str(path))


_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fixloop-spawn")


class ServerDied(RuntimeError):
    """The fork server is gone (killed by a job, or broken); the worker must be restarted."""


class ForkServer:
    """One warm interpreter in its own bubblewrap sandbox and pids cgroup."""

    def __init__(self, python: str, env: Callable[[Path], dict[str, str]], sys_path: list[str]):
        self.python = python
        sweep_stale_dirs()
        self.dir = Path(tempfile.mkdtemp(prefix=f"fixloop-warm-{os.getpid()}-"))
        self.cgroup = PidsCgroup(SERVER_PROCESSES + 64)
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = self.cgroup.wrap([
            *isolation.bwrap_prefix(
                [self.dir], self.dir, extra_ro=[FORKSERVER.parent], as_pid_1=True
            ),
            python, "-I", "-S", "-B", "-X", "utf8",
            str(FORKSERVER), str(child.fileno()), str(self.dir), json.dumps(sys_path),
            json.dumps(isolation.wipe_roots()),
        ])  # fmt: skip
        try:
            # Started from one long-lived thread: bwrap's --die-with-parent is the kernel's
            # parent-death signal, which fires when the *thread* that forked it ends, and the
            # caller's thread (a pool worker, a TUI worker) may end long before the server.
            self.proc = _SPAWNER.submit(
                subprocess.Popen,
                argv,
                cwd=self.dir,
                env=env(self.dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(child.fileno(),),
                start_new_session=True,
            ).result()
        except BaseException:
            self._cleanup_files()
            raise
        finally:
            child.close()
        self.sock.settimeout(START_TIMEOUT_S)
        try:
            hello = json.loads(self.sock.recv(4096) or b"{}")
        except (OSError, ValueError):
            hello = {}
        if "ready" not in hello:
            self.close()
            raise ServerDied("the fork server did not start (is the interpreter usable?)")
        self.base = frozenset(self.cgroup.pids())
        self.jobs = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.cgroup.kill_all()
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, 9)
        self.proc.wait()
        self.cgroup.close()
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        fsclean.remove_tree(str(self.dir))

    def run(
        self,
        spec: dict[str, Any],
        env: dict[str, str],
        *,
        stdin: bytes | None,
        timeout_s: float,
        heartbeat_s: float,
        max_output_bytes: int,
        max_processes: int,
    ) -> RawRun:
        """Run one harness job. Raises ServerDied when the server is gone before the job ran."""
        if self.pending_done:  # the previous job's clean-up overlapped with the caller's work
            self.pending_done = False
            if not self._await_done():
                raise ServerDied("the fork server did not finish cleaning up after the last run")
        self.jobs += 1
        with contextlib.suppress(OSError):
            self.cgroup.set_max(len(self.base) + max_processes + 3)
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        spec_r, spec_w = os.pipe()
        res_r, res_w = os.pipe()
        child_fds = [stdin_r, out_w, err_w, spec_r, res_w]
        start = time.monotonic()
        try:
            header = json.dumps({"job": self.jobs, "env": env}).encode()
            socket.send_fds(self.sock, [header], child_fds)
        except OSError as exc:
            for fd in (stdin_w, out_r, err_r, spec_w, res_r):
                os.close(fd)
            raise ServerDied(f"could not send the job: {exc}") from exc
        finally:
            for fd in child_fds:
                os.close(fd)
        return self._collect(
            start, spec, stdin, stdin_w, out_r, err_r, spec_w, res_r,
            timeout_s, heartbeat_s, max_output_bytes,
        )  # fmt: skip

    def _collect(
        self,
        start: float,
        spec: dict[str, Any],
        stdin: bytes | None,
        stdin_w: int,
        out_r: int,
        err_r: int,
        spec_w: int,
        res_r: int,
        timeout_s: float,
        heartbeat_s: float,
        max_output_bytes: int,
    ) -> RawRun:
        policy = WarmEnd(self)
        try:
            pumped = pump(
                policy,
                stdout_fd=out_r,
                stderr_fd=err_r,
                result_fd=res_r,
                inputs={spec_w: marshal.dumps(spec), stdin_w: stdin or b""},
                deadline=start + timeout_s,
                heartbeat_s=heartbeat_s,
                max_output_bytes=max_output_bytes,
            )
        finally:
            os.close(policy.pidfd)
        server_died = pumped.lost
        self.pending_done = not server_died
        notes = pumped.notes
        if server_died:
            notes.append("the sandbox's fork server died during this run (restarted)")
        records, problems = parse_records(pumped.results)
        job = next((r for r in records if r.get("kind") == "job"), None)
        end = next((r for r in records if r.get("kind") == "exit"), None)
        raw = RawRun(
            exit_code=end.get("exit_code") if end else None,
            signal=end.get("signal") if end else (9 if server_died or job else None),
            duration_s=time.monotonic() - start,
            maxrss_kb=(end or {}).get("maxrss_kb") or None,
            stdout=pumped.stdout,
            stderr=pumped.stderr,
            records=records,
            timed_out=pumped.timed_out,
            notes=notes,
            problems=problems,
        )
        self.broken = server_died
        return raw

    def _await_done(self) -> bool:
        self.sock.settimeout(KILL_GRACE_S)
        try:
            msg = json.loads(self.sock.recv(4096) or b"{}")
        except (OSError, ValueError):
            return False
        if type(msg) is not dict or msg.get("restart"):  # the job damaged the sandbox's /dev
            return False
        return "done" in msg

    broken = False
    pending_done = False


class WarmEnd(EndPolicy):
    """A job on a fork server: over when the server reports it (its `job` record); the
    server's own death loses the run; a kill is of the job's processes, not the server's."""

    kill_grace_s = KILL_GRACE_S

    def __init__(self, server: ForkServer) -> None:
        super().__init__(os.pidfd_open(server.proc.pid))
        self.server = server

    def job_reported_end(self, records: bytes, chunk: bytes) -> bool:
        tail = records[-(len(chunk) + len(JOB_MARK)) :]
        return JOB_MARK in tail or JOB_MARK in chunk  # the latter also once the cap is reached

    def on_job_end(self) -> None:
        self.server.cgroup.kill_all(keep=self.server.base)  # orphans of the job

    def on_process_end(self) -> bool:
        self.server.cgroup.kill_all()
        return True

    def kill(self) -> None:
        self.server.cgroup.kill_all(keep=self.server.base)


class WarmPool:
    """Idle fork servers, shared by every Sandbox with the same interpreter."""

    def __init__(self, max_idle: int = 8) -> None:
        self.max_idle = max_idle
        self._idle: dict[str, list[ForkServer]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def acquire(
        self, python: str, env: Callable[[Path], dict[str, str]], sys_path: list[str]
    ) -> ForkServer:
        with self._lock:
            idle = self._idle.get(python, [])
            while idle:
                server = idle.pop()
                if server.alive():
                    return server
                server.close()
        return ForkServer(python, env, sys_path)

    def release(self, server: ForkServer) -> None:
        if server.broken or not server.alive():
            server.close()
            return
        with self._lock:
            idle = self._idle.setdefault(server.python, [])
            if not self._closed and len(idle) < self.max_idle:
                idle.append(server)
                return
        server.close()

    def close(self) -> None:
        with self._lock:
            servers = [s for idle in self._idle.values() for s in idle]
            self._idle.clear()
        for server in servers:
            server.close()

    def forget(self) -> None:
        """In a forked child: the idle servers belong to the parent; never use or close them."""
        self._idle = {}
        self._lock = threading.Lock()


def _after_fork_in_child() -> None:
    """Threads do not survive fork: a new spawner thread, and no servers of the parent's."""
    global _SPAWNER
    _SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fixloop-spawn")
    POOL.forget()


POOL = WarmPool()
atexit.register(POOL.close)
os.register_at_fork(after_in_child=_after_fork_in_child)
