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
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.sandbox import isolation
from agent.sandbox.capture import CappedBuffer
from agent.sandbox.cgroup import PidsCgroup
from agent.sandbox.process import EXIT_GRACE_S, READ_SIZE, RESULT_CAP, RawRun, _parse_records

FORKSERVER = Path(__file__).resolve().with_name("forkserver.py")
SERVER_PROCESSES = 3  # bwrap monitor, the namespace's pid 1, the server
START_TIMEOUT_S = 20.0
KILL_GRACE_S = 3.0
EXIT_MARK = b'{"kind": "exit"'  # how the server's exit record starts


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
            shutil.rmtree(path, ignore_errors=True)


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
            *isolation.bwrap_prefix([self.dir], self.dir, extra_ro=[FORKSERVER.parent]),
            python, "-I", "-S", "-B", "-X", "utf8",
            str(FORKSERVER), str(child.fileno()), str(self.dir), json.dumps(sys_path),
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
        shutil.rmtree(self.dir, ignore_errors=True)

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
        out, err = CappedBuffer(max_output_bytes), CappedBuffer(max_output_bytes)
        result_data = bytearray()
        deadline = start + timeout_s
        exited_at: float | None = None
        timed_out = False
        server_died = False
        notes: list[str] = []
        sel = selectors.DefaultSelector()
        readers: dict[int, CappedBuffer | None] = {out_r: out, err_r: err, res_r: None}
        writers: dict[int, memoryview] = {spec_w: memoryview(marshal.dumps(spec))}
        if stdin:
            writers[stdin_w] = memoryview(stdin)
        else:
            os.close(stdin_w)
        for fd in readers:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        for fd in writers:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_WRITE)
        pidfd = os.pidfd_open(self.proc.pid)
        sel.register(pidfd, selectors.EVENT_READ)
        killed_at: float | None = None

        exit_seen = False  # the server's exit record has arrived: the job is over

        try:
            while readers or exited_at is None:
                now = time.monotonic()
                if exited_at is None and exit_seen:
                    exited_at = now
                    self.cgroup.kill_all(keep=self.base)  # orphans of the job
                    continue
                if exited_at is not None:
                    limit = exited_at + EXIT_GRACE_S
                elif killed_at is not None:
                    limit = killed_at + KILL_GRACE_S
                else:
                    limit = deadline
                if now >= limit:
                    if exited_at is not None:
                        notes.append("output pipes still open after exit; closed by fixloop")
                        break
                    if killed_at is not None:  # the server did not report the job's end
                        server_died = True
                        exited_at = now
                        continue
                    timed_out = True
                    killed_at = now
                    self.cgroup.kill_all(keep=self.base)
                    continue
                for key, _ in sel.select(limit - now):
                    fd = int(key.fd)
                    if fd == pidfd:
                        sel.unregister(pidfd)
                        server_died = True
                        self.cgroup.kill_all()
                        exited_at = time.monotonic()
                    elif fd in writers:
                        view = writers[fd]
                        try:
                            n = os.write(fd, view[:65536])
                        except OSError:
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
                        else:
                            seen_from = max(0, len(result_data) - len(EXIT_MARK))
                            if len(result_data) < RESULT_CAP:
                                result_data.extend(chunk)
                            exit_seen = (
                                exit_seen
                                or EXIT_MARK in result_data[seen_from:]
                                or EXIT_MARK in chunk  # also once the cap is reached
                            )
                            if b"\n" in chunk:  # a record: the next one is due soon
                                deadline = time.monotonic() + heartbeat_s
        finally:
            sel.close()
            os.close(pidfd)
            for fd in [*readers, *writers]:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pending_done = not server_died
        if server_died:
            notes.append("the sandbox's fork server died during this run (restarted)")
        records = _parse_records(bytes(result_data))
        end = next((r for r in records if r.get("kind") == "exit"), None)
        if end is None and server_died and not timed_out:
            records.append({"kind": "exit", "exit_code": None, "signal": 9, "maxrss_kb": 0})
        raw = RawRun(
            exit_code=end.get("exit_code") if end else None,
            signal=end.get("signal") if end else (9 if server_died else None),
            duration_s=time.monotonic() - start,
            maxrss_kb=(end or {}).get("maxrss_kb") or None,
            stdout=out.result(),
            stderr=err.result(),
            records=records,
            timed_out=timed_out,
            notes=notes,
        )
        self.broken = server_died
        return raw

    def _await_done(self) -> bool:
        self.sock.settimeout(KILL_GRACE_S)
        try:
            msg = self.sock.recv(4096)
        except OSError:
            return False
        return bool(msg) and "done" in json.loads(msg)

    broken = False
    pending_done = False


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
