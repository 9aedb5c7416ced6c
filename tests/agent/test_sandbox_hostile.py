"""Hostile programs: the sandbox survives each, the host is untouched, the status is right."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sandbox import ExecStatus, Sandbox, SandboxLimits, TestStatus, isolation
from agent.sandbox.cgroup import GROUP_PARENT, PIDS_ROOT
from agent.sandbox.warm import SERVER_PROCESSES

LIMITS = SandboxLimits(
    timeout_s=5.0, memory_mb=256, max_output_bytes=4096, max_processes=16, max_file_mb=8
)
HANG_LIMITS = LIMITS.model_copy(update={"timeout_s": 1.0})  # for programs meant to time out


@pytest.fixture(scope="module", params=["warm", "cold"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """Every hostile program runs both on a warm fork server and in a fresh interpreter."""
    return Sandbox(LIMITS, warm_start=request.param == "warm")


@pytest.fixture
def hang_sandbox(sandbox: Sandbox) -> Sandbox:
    """The same mode with a 1 s timeout, for the programs that must be stopped."""
    return Sandbox(HANG_LIMITS, warm_start=sandbox.warm)


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def busy_cgroups() -> list[str]:
    """This process's run groups that still hold more than an idle fork server's processes."""
    parent = PIDS_ROOT / GROUP_PARENT
    if not parent.is_dir():
        return []
    return [
        p.name
        for p in parent.iterdir()
        if p.is_dir()
        and p.name.startswith(f"run-{os.getpid()}-")
        and len((p / "cgroup.procs").read_text().split()) > SERVER_PROCESSES
    ]


def test_infinite_loop_times_out(hang_sandbox: Sandbox) -> None:
    sandbox = hang_sandbox
    start = time.monotonic()
    result = sandbox.run_program("while True:\n    pass\n")
    assert result.status == ExecStatus.TIMEOUT
    assert time.monotonic() - start < 5
    loop_in_test = sandbox.run_asserts("def f():\n    while True: pass\n", ["assert f() == 1"])
    assert loop_in_test.status == ExecStatus.TIMEOUT
    assert loop_in_test.tests[0].status == TestStatus.TIMEOUT


def test_fork_bomb_is_contained(hang_sandbox: Sandbox) -> None:
    marker = f"bomb-{uuid.uuid4().hex}"
    bomb = f"""
import os, sys, time
told = False
while True:  # {marker}
    try:
        os.fork()
    except OSError:
        if not told:
            told = True
            os.write(1, b"refused\\n")
        time.sleep(0.01)
"""
    # exec so that every process of the bomb carries the marker in its command line
    code = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {bomb!r}])\n"
    result = hang_sandbox.run_program(code)
    assert result.status == ExecStatus.TIMEOUT
    if result.isolation.pids != "none":
        assert "refused" in result.stdout.text  # the process bound was reached
    if os.geteuid() == 0 and isolation.cgroup_available():
        assert result.isolation.pids == "cgroup"
    assert processes_with(marker) == []
    assert busy_cgroups() == []


def test_huge_allocation_is_a_memory_error(sandbox: Sandbox) -> None:
    result = sandbox.run_program("x = bytearray(10 * 1024**3)\n")
    assert result.status == ExecStatus.MEMORY
    in_test = sandbox.run_asserts("def f():\n    return [0] * (10**10)\n", ["assert f()"])
    assert in_test.status == ExecStatus.MEMORY
    assert in_test.tests[0].exception_type == "MemoryError"


def test_a_gigabyte_of_stdout_is_capped(sandbox: Sandbox) -> None:
    big = Sandbox(LIMITS.model_copy(update={"timeout_s": 30}), warm_start=sandbox.warm)
    code = (
        "import sys\nchunk = b'y' * (1 << 20)\n"
        "for _ in range(1024):\n    sys.stdout.buffer.write(chunk)\n"
    )
    result = big.run_program(code)
    assert result.status == ExecStatus.PASSED
    assert result.stdout.total_bytes == 1 << 30
    assert result.stdout.truncated_bytes == (1 << 30) - 4096
    assert len(result.stdout.text) < 4096 + 100
    assert "bytes cut" in result.stdout.text


def test_binary_garbage_on_stdout_survives(sandbox: Sandbox) -> None:
    result = sandbox.run_program("import os\nos.write(1, bytes(range(256)) * 4)\n")
    assert result.status == ExecStatus.PASSED
    assert result.stdout.total_bytes == 1024
    assert "\\xff" in result.stdout.text and "\\x80" in result.stdout.text


def test_single_50mb_line_without_newline(sandbox: Sandbox) -> None:
    result = sandbox.run_program("import sys\nsys.stdout.write('z' * (50 * 1024 * 1024))\n")
    assert result.status == ExecStatus.PASSED
    assert result.stdout.total_bytes == 50 * 1024 * 1024
    assert result.stdout.text.startswith("z" * 2048) and result.stdout.text.endswith("z" * 2048)


@pytest.mark.parametrize("parent_hangs", [False, True])
def test_grandchild_in_new_session_ignoring_sigterm_is_gone(
    sandbox: Sandbox, hang_sandbox: Sandbox, parent_hangs: bool
) -> None:
    marker = f"orphan-{uuid.uuid4().hex}"
    code = f"""
import subprocess, sys, time
child = (
    "import signal, time\\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    "time.sleep(600)  # {marker}"
)
subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
time.sleep(0.3)
if {parent_hangs}:
    time.sleep(600)
"""
    result = (hang_sandbox if parent_hangs else sandbox).run_program(code)
    assert result.status == (ExecStatus.TIMEOUT if parent_hangs else ExecStatus.PASSED)
    deadline = time.monotonic() + 2
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_writes_outside_the_workdir_do_not_land(sandbox: Sandbox) -> None:
    name = f"fixloop-escape-{uuid.uuid4().hex}"
    home_target = Path.home() / name
    tmp_target = Path("/tmp") / name
    code = f"""
import os
results = []
for path in ({str(home_target)!r}, {str(tmp_target)!r}, os.path.expanduser("~/{name}")):
    try:
        with open(path, "w") as fh:
            fh.write("escaped")
        results.append("wrote")
    except OSError as exc:
        results.append(type(exc).__name__)
print(results)
"""
    try:
        result = sandbox.run_program(code)
        assert result.status == ExecStatus.PASSED, result.stderr.text
        if result.isolation.filesystem == "private":
            assert not home_target.exists()
            assert not tmp_target.exists()
        else:
            assert "not contained" in " ".join(result.isolation.notes)
    finally:
        home_target.unlink(missing_ok=True)
        tmp_target.unlink(missing_ok=True)


def test_secret_environment_variable_is_not_visible(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIXLOOP_TEST_SECRET_TOKEN", "s3cr3t-value")
    code = (
        "import os\nprint(os.environ.get('FIXLOOP_TEST_SECRET_TOKEN'))\nprint(sorted(os.environ))\n"
    )
    result = sandbox.run_program(code)
    assert result.status == ExecStatus.PASSED
    assert "s3cr3t-value" not in result.stdout.text
    assert result.stdout.text.startswith("None\n")


@pytest.fixture
def loopback_server() -> Iterator[tuple[int, list[bytes]]]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                received.append(conn.recv(100))
                conn.sendall(b"pong")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


def test_loopback_server_is_unreachable(
    sandbox: Sandbox, loopback_server: tuple[int, list[bytes]]
) -> None:
    port, received = loopback_server
    code = f"""
import socket
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=0.5)
    s.sendall(b"ping")
    print("connected", s.recv(10))
except OSError as exc:
    print("refused", type(exc).__name__)
"""
    result = sandbox.run_program(code)
    assert result.status == ExecStatus.PASSED
    if result.isolation.network:
        assert result.stdout.text.startswith("refused")
        assert received == []
    else:
        assert result.stdout.text.startswith("connected")  # reported honestly as reachable


def test_deep_recursion(sandbox: Sandbox, hang_sandbox: Sandbox) -> None:
    code = "def down(n):\n    return down(n + 1)\n"
    result = sandbox.run_asserts(code, ["assert down(0) == 1"])
    assert result.status == ExecStatus.FAILED
    assert result.tests[0].exception_type == "RecursionError"
    assert result.tests[0].lineno == 2
    unbounded = "import sys\nsys.setrecursionlimit(10**7)\n" + code + "down(0)\n"
    crash = hang_sandbox.run_program(unbounded)  # frames fill memory, or the C stack overflows
    assert crash.status in (ExecStatus.KILLED, ExecStatus.MEMORY, ExecStatus.TIMEOUT)


def test_os_exit(sandbox: Sandbox) -> None:
    result = sandbox.run_program("import os\nprint('bye', flush=True)\nos._exit(3)\n")
    assert (result.status, result.exit_code) == (ExecStatus.ERROR, 3)
    assert result.stdout.text == "bye\n"
    in_test = sandbox.run_asserts(
        "import os\ndef f():\n    os._exit(3)\n", ["assert f()", "assert 1"]
    )
    assert in_test.tests[0].status == TestStatus.ERROR
    assert "code 3" in in_test.tests[0].message
    assert in_test.tests[1].status == TestStatus.PASSED


def test_sys_exit_with_message(sandbox: Sandbox) -> None:
    result = sandbox.run_program("import sys\nsys.exit('fatal: no input')\n")
    assert (result.status, result.exit_code) == (ExecStatus.ERROR, 1)
    assert "fatal: no input" in result.stderr.text
    at_load = sandbox.run_asserts("import sys\nsys.exit('boom')\n", ["assert True"])
    assert at_load.status == ExecStatus.ERROR
    assert at_load.tests[0].exception_type == "SystemExit"


def test_killpg_of_own_group(sandbox: Sandbox) -> None:
    result = sandbox.run_program("import os\nos.killpg(0, 9)\n")
    assert result.status == ExecStatus.KILLED
    assert result.signal == 9


def test_file_size_limit(sandbox: Sandbox) -> None:
    code = "with open('big.bin', 'wb') as fh:\n    fh.write(b'0' * (20 * 1024 * 1024))\n"
    result = sandbox.run_program(code)
    assert result.status == ExecStatus.ERROR
    assert "File too large" in result.stderr.text


@pytest.mark.parametrize("attack", ["os.kill(os.getppid(), 9)", "os.kill(-1, 9)"])
def test_killing_the_supervisor_is_reported_and_the_next_run_works(
    sandbox: Sandbox, attack: str
) -> None:
    result = sandbox.run_program(f"import os, time\n{attack}\ntime.sleep(5)\n")
    # The judge is the pid namespace's init in cold runs: the kernel ignores the SIGKILL, and
    # the program simply runs into its timeout.
    assert result.status in (ExecStatus.KILLED, ExecStatus.ERROR, ExecStatus.TIMEOUT)
    assert result.status != ExecStatus.PASSED
    again = sandbox.run_asserts("def f():\n    return 1\n", ["assert f() == 1"])
    assert again.status == ExecStatus.PASSED


def test_job_cannot_tamper_with_the_warm_server(sandbox: Sandbox) -> None:
    if not sandbox.warm:
        pytest.skip("only warm runs share a server with later runs")
    code = (
        "import os\ntry:\n    open(f'/proc/{os.getppid()}/mem', 'r+b')\n    print('open')\n"
        "except OSError as exc:\n    print(type(exc).__name__)\n"
    )
    result = sandbox.run_program(code)
    assert result.stdout.text == "PermissionError\n"
