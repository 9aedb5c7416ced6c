"""The Sandbox: run untrusted model code and its tests, and say exactly what happened."""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import json
import marshal
import os
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.errors import FixloopError
from agent.sandbox import fsclean, harness, isolation, warm
from agent.sandbox.cgroup import GROUPS
from agent.sandbox.junit import junit_tests, report_disagreement
from agent.sandbox.limits import SandboxLimits
from agent.sandbox.outcome import asserts_result, command_result, program_result
from agent.sandbox.process import RawRun, run_process
from agent.sandbox.records import check_job
from agent.sandbox.result import ExecResult, ExecStatus, Isolation
from agent.sandbox.resume import run_with_resume

HARNESS = Path(harness.__file__).resolve()
PROCESS_OVERHEAD = 6  # bwrap monitor + pid-1 + judge + the program's process, with slack
# The pids controller counts threads as well as processes: a program's thread pool must not
# run into the bound meant for fork bombs, which then stop at max_processes + this many tasks.
THREAD_ALLOWANCE = 128
JUNIT_NAME = ".fixloop-junit.xml"


class SandboxError(FixloopError, RuntimeError):
    """The sandbox itself could not run (bad configuration), as opposed to the program failing."""


class Sandbox:
    """Runs untrusted Python (and test commands) in a fresh, limited, isolated process.

    Assert tests run in order in one module (as MBPP's and HumanEval's harnesses do), each
    with its own timeout; a test that hangs, crashes or exits gets that result and the
    remaining tests run in a fresh process. Runs go to a warm fork server (a pre-started
    interpreter inside the sandbox that forks one child per run) when bubblewrap and the pids
    cgroup are available, else to a fresh sandboxed interpreter.

    The verdict (passed or not) is decided where the program cannot reach: assert tests are
    evaluated by a judge process that holds the only result channel and is non-dumpable;
    the program runs in a separate process forked before the judge reads the tests, and only
    plain data crosses back (`agent/sandbox/harness.py`, `wire.py`). Exit status and peak
    memory come from `wait4` in the judge; the host accepts only well-formed records in the
    expected order (`records.py`), and anything else makes the run an error.

    Protected against (with bubblewrap and the cgroup pids controller, the default here;
    `result.isolation` says what was in effect for each run and never claims more):
    - forged verdicts in assert mode: frame walking, `gc`, `sys.settrace`, patched builtins or
      `math.isclose`, objects whose `__eq__` is always true (program objects are never
      compared), fake records (the program never holds the result channel), builtins
      shadowed by the program (`set = ...`), a replaced `check` (the setup's wins);
    - hangs: a wall-clock timeout per program and per assert test kills the whole process
      tree, including grandchildren that start a new session or ignore SIGTERM (pid namespace
      plus the cgroup's member list); CPU time is bounded by RLIMIT_CPU;
    - memory: an address-space limit (RLIMIT_AS), reported as status "memory";
    - fork bombs: a per-run cgroup `pids.max` (root ignores RLIMIT_NPROC); without the
      controller, RLIMIT_NPROC for non-root users, else nothing ("pids": "none");
    - output floods: stdout/stderr kept to `max_output_bytes` each (head and tail), any bytes;
    - files: only the private working directory (HOME and TMPDIR inside it) and a private
      /tmp, /run and /dev/shm are writable; each file is capped by RLIMIT_FSIZE; the real home
      and fixloop's own data (evaluation datasets, session logs, the data directory) are
      hidden; everything is discarded after the run (trees of any depth);
    - network: none (a private network namespace: even loopback servers on the host are
      unreachable), and no host unix-domain socket (/run is private; other listening
      sockets are covered);
    - secrets in the environment: the program sees a fixed, minimal environment;
    - signals: the program cannot signal host processes (pid namespace);
    - warm fork servers: the server is the sandbox's pid 1 and non-dumpable, so no process a
      job can ptrace outlives the job; between jobs the job directory, /tmp, /dev/shm, /run,
      the hidden home, new /dev entries and SysV IPC objects are wiped (read-only mounts
      skipped), and a job that damages /dev gets the server replaced.
    Not protected against:
    - pytest mode (test files, workspace test commands): pytest imports the program into its
      own process, so the program can change what pytest reports. fixloop writes the report
      to a fresh directory, never follows a link or FIFO there, and refuses a report that
      disagrees with pytest's exit status or its printed summary; nothing more;
    - reading host files outside the hidden directories: the host filesystem is visible
      read-only;
    - kernel exploits: processes run as root with all capabilities dropped, not as a
      separate user, and share the host kernel;
    - disk use by many small files in the working directory (only per-file size is capped),
      and memory use by files in the private /tmp (tmpfs);
    - with the "netns" or "process" fallbacks, everything filesystem-related above (writes
      go to the real filesystem) and the network with "process". The verdict stays
      protected: the program's process drops every capability, root's included, so it
      cannot attach to the non-dumpable judge.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        isolation_level: str = "auto",
        python: str | None = None,
        warm_start: bool = True,
    ) -> None:
        self.limits = limits or SandboxLimits()
        if isolation_level == "auto":
            isolation_level = isolation.best_level()
        elif isolation_level not in isolation.available_levels():
            raise SandboxError(
                f"isolation level {isolation_level!r} is not available here "
                f"(available: {', '.join(isolation.available_levels())}); install bubblewrap "
                "(`apt-get install bubblewrap`) or use isolation_level='auto'"
            )
        self.level = isolation_level
        self.python = python or sys.executable
        self.use_cgroup = isolation.cgroup_available()
        # Warm fork servers need the full isolation to clean up between runs.
        self.warm = warm_start and self.level == "bwrap" and self.use_cgroup

    # ------------------------------------------------------------------ public API

    def run_asserts(self, code: str, tests: list[str], setup: str = "") -> ExecResult:
        """Load `code`, then run each assert statement separately, each with its own timeout.

        A test that hangs, crashes or exits the process gets that result and the remaining
        tests still run (in a fresh process).
        """
        tests = list(tests)
        spec = {"mode": "asserts", "code": code, "tests": tests, "setup": setup}
        isolations: list[Isolation] = []

        def run_from(start: int) -> RawRun:
            raw, iso = self._run_harness({**spec, "start": start}, n_tests=len(tests) - start)
            raw.records, problems = check_job(raw.records, start, len(tests))
            raw.problems += problems
            for record in raw.records:  # the name is the host's, never the record's
                if record["kind"] == "test":
                    record["name"] = tests[record["index"]]
            isolations.append(iso)
            return raw

        raw = run_with_resume(run_from, tests, self.limits.per_test_timeout_s)
        iso = isolations[-1]
        iso.notes = list(dict.fromkeys([*iso.notes, *raw.notes]))
        return asserts_result(raw, tests, iso)

    def run_program(
        self, code: str, expected_stdout: str | None = None, stdin: str | bytes | None = None
    ) -> ExecResult:
        """Run `code` as a script (`__main__`), optionally comparing its stdout. `stdin` may be
        bytes (passed through as they are) or text (sent as UTF-8)."""
        spec = {"mode": "program", "code": code}
        raw, iso = self._run_harness(spec, n_tests=0, stdin=stdin)
        raw.records, problems = check_job(raw.records, 0, 0)
        raw.problems += problems
        return program_result(raw, expected_stdout, iso)

    def run_pytest_file(self, code: str, test_file_text: str) -> ExecResult:
        """`code` as solution.py next to test_solution.py, run by pytest (one result per test).

        Each test gets `per_test_timeout_s` (with pytest-timeout), the run 3 x `timeout_s`.
        """
        with self._workdir() as work:
            (work / "solution.py").write_text(code, encoding="utf-8")
            (work / "test_solution.py").write_text(test_file_text, encoding="utf-8")
            # Plugins are not auto-loaded (the host's may be slow or irrelevant): pytest-timeout
            # is loaded explicitly when this interpreter has it.
            command = f"{shlex.quote(self.python)} -m pytest test_solution.py"
            if self.python == sys.executable and importlib.util.find_spec("pytest_timeout"):
                command += f" -p pytest_timeout --timeout={self.limits.per_test_timeout_s:g}"
            return self.run_command(
                work,
                command,
                timeout_s=3 * self.limits.timeout_s,
                extra_env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
            )

    def run_command(
        self,
        workdir: Path,
        command: str,
        *,
        timeout_s: float | None = None,
        extra_env: dict[str, str] | None = None,
        root: Path | None = None,
    ) -> ExecResult:
        """Run a test command in `workdir` (a directory the caller prepared, e.g. a scratch copy).

        `workdir` (or `root`, a directory containing it, e.g. the scratch copy of a whole
        repository when the command runs in a subdirectory) is the only writable host
        directory, and under bubblewrap the only visible one below /tmp. A pytest command gets
        a JUnit XML report added, so the result has one TestResult per test. `timeout_s`
        overrides the limits' wall clock for this command; `extra_env` is added to the
        scrubbed environment.
        """
        workdir = Path(workdir).resolve()
        if not workdir.is_dir():
            raise SandboxError(f"workdir {workdir} is not a directory; create it first")
        tree = Path(root).resolve() if root is not None else workdir
        if not workdir.is_relative_to(tree):
            raise SandboxError(f"root {tree} must contain workdir {workdir}")
        argv = shlex.split(command)
        if not argv:
            raise SandboxError("empty command: give the test command to run, e.g. 'pytest -q'")
        is_pytest = any(Path(a).name in ("pytest", "py.test") for a in argv[:3])
        with self._private_dirs() as home:
            # The report goes to a fresh directory of the run's own, not the work tree the
            # program can prepare; it is read without following links or opening FIFOs.
            report = home / "report" / JUNIT_NAME
            report.parent.mkdir()
            if is_pytest:
                argv += [f"--junitxml={report}", "-p", "no:cacheprovider"]
            env = {**self._env(home), **(extra_env or {})}
            raw = self._spawn(
                lambda _s, _r: [*self._prefix([tree, home], workdir), *argv],
                cwd=workdir,
                env=env,
                timeout_s=timeout_s or self.limits.timeout_s,
                rlimits=self.limits.rlimits(),
            )
            tests = junit_tests(report) if is_pytest else []
        result = command_result(raw, tests, self._isolation())
        disagreement = report_disagreement(tests, raw.exit_code, raw.stdout.text) if tests else None
        if disagreement is not None:
            result.status = ExecStatus.ERROR
            result.isolation.notes.append(f"pytest's report was not believed: {disagreement}")
        result.command = argv
        return result

    # ------------------------------------------------------------------ internals

    def _isolation(self, warm_run: bool = False) -> Isolation:
        pids = "cgroup" if self.use_cgroup else self._pids_fallback()
        iso = isolation.describe(self.level, pids)
        if warm_run:
            iso.notes.append("warm fork server: runs of one worker share a sandbox, wiped between")
        return iso

    def _pids_fallback(self) -> str:
        return "none" if os.geteuid() == 0 else "rlimit"

    def _prefix(self, writable: list[Path], chdir: Path, *, as_pid_1: bool = False) -> list[str]:
        return isolation.command_prefix(
            self.level, writable, chdir, extra_ro=[HARNESS.parent], as_pid_1=as_pid_1
        )

    @contextlib.contextmanager
    def _workdir(self) -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix="fixloop-run-"))
        try:
            yield path
        finally:
            _remove_later(path)

    @contextlib.contextmanager
    def _private_dirs(self) -> Iterator[Path]:
        """A private directory holding HOME and TMPDIR for the program."""
        with self._workdir() as base:
            (base / "home").mkdir()
            (base / "tmp").mkdir()
            yield base

    def _env(self, base: Path) -> dict[str, str]:
        bindir = str(Path(self.python).parent)
        return {
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(base / "home"),
            "TMPDIR": str(base / "tmp"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONUNBUFFERED": "1",
            # glibc reserves an arena per thread, which RLIMIT_AS counts: 32 threads would
            # need 2 GiB of address space they never use
            "MALLOC_ARENA_MAX": "2",
        }

    def _spawn(self, argv_for: Any, **kwargs: Any) -> RawRun:
        raw = self._spawn_raw(argv_for, **kwargs)
        if self.level == "bwrap" and raw.signal is None and (raw.exit_code or 0) > 128:
            # bwrap reports a child killed by signal N as exit status 128 + N
            raw.signal, raw.exit_code = raw.exit_code - 128, None  # type: ignore[operator]
        return raw

    def _spawn_raw(self, argv_for: Any, **kwargs: Any) -> RawRun:
        extra = {}
        if not self.use_cgroup:  # RLIMIT_NPROC counts all of the user's processes
            extra = {"nproc": self.limits.max_processes + _user_process_count()}
        if extra:
            kwargs["rlimits"] = {**(kwargs.get("rlimits") or {}), **extra}
        if not self.use_cgroup:
            return run_process(argv_for, max_output_bytes=self.limits.max_output_bytes, **kwargs)
        cgroup = GROUPS.acquire(self.limits.max_processes + THREAD_ALLOWANCE + PROCESS_OVERHEAD)
        try:
            return run_process(
                argv_for, max_output_bytes=self.limits.max_output_bytes, cgroup=cgroup, **kwargs
            )
        finally:
            GROUPS.release(cgroup)

    def _run_harness(
        self, spec: dict[str, Any], n_tests: int, stdin: str | bytes | None = None
    ) -> tuple[RawRun, Isolation]:
        spec = {
            **spec,
            "test_timeout_s": self.limits.per_test_timeout_s,
            "limits": self.limits.rlimits(n_tests),
            "sys_path": site_packages(self.python),
        }
        stdin_bytes = stdin.encode() if isinstance(stdin, str) else stdin
        heartbeat_s = self.limits.per_test_timeout_s + 2 * harness.GRACE_S + 1.0
        if self.warm:
            for _attempt in range(2):
                try:
                    server = warm.POOL.acquire(self.python, self._env, site_packages(self.python))
                except warm.ServerDied:
                    break  # fall back to a cold run
                try:
                    raw = server.run(
                        spec,
                        self._env(Path("/nonexistent")),
                        stdin=stdin_bytes,
                        timeout_s=self.limits.timeout_s,
                        heartbeat_s=heartbeat_s,
                        max_output_bytes=self.limits.max_output_bytes,
                        max_processes=self.limits.max_processes + THREAD_ALLOWANCE,
                    )
                except warm.ServerDied:
                    server.close()
                    continue
                except BaseException:
                    server.close()  # in an unknown state: never reused
                    raise
                warm.POOL.release(server)
                iso = self._isolation(warm_run=True)
                iso.notes += raw.notes
                return raw, iso
        with self._workdir() as work:
            (work / "home").mkdir()
            (work / "tmp").mkdir()
            python = [self.python, "-I", "-S", "-B", "-X", "utf8", str(HARNESS)]
            raw = self._spawn(
                lambda s, r: [*self._prefix([work], work, as_pid_1=True), *python, str(s), str(r)],
                cwd=work,
                env=self._env(work),
                timeout_s=self.limits.timeout_s,
                heartbeat_s=heartbeat_s,
                spec=marshal.dumps(spec),
                stdin=stdin_bytes,
            )
            iso = self._isolation()
            iso.notes += raw.notes
            return raw, iso


def _user_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


_trash: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
_trash_lock = threading.Lock()
_trash_thread: threading.Thread | None = None


def _empty_trash() -> None:
    """The clean-up thread: removes trees of any shape, and never dies of one."""
    while (path := _trash.get()) is not None:
        with contextlib.suppress(BaseException):  # a leftover must not stop later clean-ups
            fsclean.remove_tree(str(path))


def _remove_later(path: Path) -> None:
    """Delete a finished run's directory off the critical path (a background thread)."""
    global _trash_thread
    with _trash_lock:
        if _trash_thread is None:
            _trash_thread = threading.Thread(target=_empty_trash, name="fixloop-rm", daemon=True)
            _trash_thread.start()
            atexit.register(_flush_trash)
    _trash.put(path)


def _trash_after_fork() -> None:
    global _trash, _trash_thread, _trash_lock
    _trash, _trash_thread, _trash_lock = queue.SimpleQueue(), None, threading.Lock()


os.register_at_fork(after_in_child=_trash_after_fork)


def _flush_trash() -> None:
    global _trash_thread
    with _trash_lock:
        thread, _trash_thread = _trash_thread, None
    if thread is not None:
        _trash.put(None)
        thread.join(timeout=30)


@functools.cache
def site_packages(python: str) -> list[str]:
    """The interpreter's site-packages directories (added to sys.path; .pth files skipped)."""
    if python == sys.executable:
        import site

        return [p for p in site.getsitepackages() if Path(p).is_dir()]
    code = "import json, site; print(json.dumps(site.getsitepackages()))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
        return [p for p in json.loads(out.stdout) if Path(p).is_dir()]
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
