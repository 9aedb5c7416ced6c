"""The in-sandbox side of an execution: loads the model's program and runs its tests.

Standard library only: this file runs inside the sandbox (as a script in cold mode, imported
by the fork server in warm mode), under the program's own interpreter and limits.

Protocol: the job spec is a JSON object; results are JSON lines written to a result fd:
  {"kind": "load", "ok": true} | {"kind": "load", "ok": false, "error": {...}}
  {"kind": "test", ...TestResult fields}
  {"kind": "program", "exit_code": N}
  {"kind": "exit", "exit_code": N | null, "signal": N | null, "maxrss_kb": N}  (supervisor)
Each line is also a heartbeat: the host extends its deadline when one arrives, because the
harness enforces per-test timeouts itself (a hanging test is that test's timeout).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import linecache
import operator
import os
import select
import signal
import sys
import time
import traceback
import types
from typing import Any

SOLUTION_FILE = "solution.py"
TEST_FILE = "<test>"
SETUP_FILE = "<setup>"
REPR_LIMIT = 600
TRACEBACK_LIMIT = 4000
EXIT_CHILD_CRASHED = 70

_COMPARE_OPS: dict[type[ast.cmpop], tuple[Any, str]] = {
    ast.Eq: (operator.eq, "=="),
    ast.NotEq: (operator.ne, "!="),
    ast.Lt: (operator.lt, "<"),
    ast.LtE: (operator.le, "<="),
    ast.Gt: (operator.gt, ">"),
    ast.GtE: (operator.ge, ">="),
    ast.Is: (operator.is_, "is"),
    ast.IsNot: (operator.is_not, "is not"),
    ast.In: (lambda a, b: a in b, "in"),
    ast.NotIn: (lambda a, b: a not in b, "not in"),
}


def short_repr(value: object, limit: int = REPR_LIMIT) -> str:
    try:
        text = repr(value)
    except BaseException as exc:  # a hostile __repr__
        text = f"<repr failed: {type(exc).__name__}>"
    if len(text) > limit:
        text = f"{text[: limit - 40]}... [{len(text) - limit + 40} more chars]"
    return text


def _register_source(filename: str, source: str) -> None:
    lines = [line if line.endswith("\n") else line + "\n" for line in source.splitlines()]
    linecache.cache[filename] = (len(source), None, lines, filename)


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """Type, message, the line in the model's program, and a traceback of the user frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if f.filename in (SOLUTION_FILE, TEST_FILE, SETUP_FILE)]
    lineno = None
    for frame in reversed(frames):
        if frame.filename == SOLUTION_FILE:
            lineno = frame.lineno
            break
    if lineno is None and isinstance(exc, SyntaxError) and exc.filename == SOLUTION_FILE:
        lineno = exc.lineno
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(own)] if own else []
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    if len(text) > TRACEBACK_LIMIT:
        text = text[: TRACEBACK_LIMIT // 2] + "\n...\n" + text[-TRACEBACK_LIMIT // 2 :]
    try:
        message = str(exc)
    except BaseException:
        message = "<str failed>"
    return {
        "exception_type": type(exc).__name__,
        "message": message[:REPR_LIMIT],
        "lineno": lineno,
        "traceback": text,
    }


def _emit(fd: int, record: dict[str, Any]) -> None:
    data = (json.dumps(record) + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


# ---------------------------------------------------------------- one test, in a forked child


def _run_compare(test: ast.Assert, source: str, ns: dict[str, Any]) -> dict[str, Any]:
    """`assert LEFT op RIGHT`: evaluate both sides once, report them (as pytest rewriting)."""
    cmp = test.test
    assert isinstance(cmp, ast.Compare)
    func, symbol = _COMPARE_OPS[type(cmp.ops[0])]
    left_src = ast.get_source_segment(source, cmp.left) or "left"
    left = eval(compile(ast.Expression(cmp.left), TEST_FILE, "eval"), ns)
    right = eval(compile(ast.Expression(cmp.comparators[0]), TEST_FILE, "eval"), ns)
    if func(left, right):
        return {"status": "passed"}
    actual, expected = short_repr(left), short_repr(right)
    result: dict[str, Any] = {"status": "failed", "expression": left_src}
    if symbol == "==":
        result.update(actual=actual, expected=expected)
        result["message"] = f"{left_src} returned {actual}, expected {expected}"
    else:
        result["message"] = f"{left_src} {symbol} {expected} is false: {left_src} = {actual}"
    if test.msg is not None:
        user_msg = eval(compile(ast.Expression(test.msg), TEST_FILE, "eval"), ns)
        result["message"] = f"{short_repr(user_msg)}: {result['message']}"
    return result


def run_one_test(source: str, ns: dict[str, Any]) -> dict[str, Any]:
    """Run one test statement in `ns`; never raises."""
    _register_source(TEST_FILE, source)
    try:
        tree = ast.parse(source, TEST_FILE)
    except SyntaxError as exc:
        return {"status": "error", **describe_exception(exc), "lineno": None}
    try:
        body = tree.body
        if (
            len(body) == 1
            and isinstance(body[0], ast.Assert)
            and isinstance(body[0].test, ast.Compare)
            and len(body[0].test.ops) == 1
            and type(body[0].test.ops[0]) in _COMPARE_OPS
        ):
            return _run_compare(body[0], source, ns)
        exec(compile(tree, TEST_FILE, "exec"), ns)
        return {"status": "passed"}
    except AssertionError as exc:
        info = describe_exception(exc)
        message = info["message"] or "assertion is false"
        return {"status": "failed", **info, "message": message}
    except BaseException as exc:
        return {"status": "error", **describe_exception(exc)}


def _child_run_test(source: str, ns: dict[str, Any], wfd: int) -> None:
    os.setpgid(0, 0)
    start = time.perf_counter()
    result = run_one_test(source, ns)
    _flush_std()
    result["duration_s"] = time.perf_counter() - start
    _emit(wfd, result)
    os._exit(0)


def _describe_death(status: int) -> dict[str, Any]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (a stack overflow: recursion too deep?)" if sig == signal.SIGSEGV else ""
        return {
            "status": "error",
            "exception_type": name,
            "message": f"the process was killed by signal {name}{hint}",
            "signal": sig,
        }
    code = os.WEXITSTATUS(status)
    return {
        "status": "error",
        "exception_type": "SystemExit",
        "message": f"the process exited with code {code} during this test",
        "exit_code": code,
    }


def run_test_forked(source: str, ns: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run one test in a forked child so a hang, crash or exit only affects that test."""
    rfd, wfd = os.pipe()
    _flush_std()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(rfd)
            _child_run_test(source, ns, wfd)
        finally:
            os._exit(EXIT_CHILD_CRASHED)
    os.close(wfd)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    data = b""
    deadline = start + timeout_s
    timed_out = False
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([rfd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(rfd)
    if timed_out:
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, 9)):
            with contextlib.suppress(OSError):
                target()
    _, status = os.waitpid(pid, 0)
    duration = time.perf_counter() - start
    if timed_out:
        return {
            "status": "timeout",
            "message": f"the test did not finish within {timeout_s:g} s",
            "duration_s": duration,
        }
    line = data.split(b"\n", 1)[0]
    if line:
        try:
            return json.loads(line)
        except ValueError:
            pass
    result = _describe_death(status)
    result["duration_s"] = duration
    return result


# ---------------------------------------------------------------- the job


def _fresh_module(name: str) -> dict[str, Any]:
    """A real module for the program (so `import __main__` and pickling of its classes work)."""
    module = types.ModuleType(name)
    module.__file__ = os.path.abspath(SOLUTION_FILE)
    sys.modules[name] = module
    return module.__dict__


def _exec_program(code: str, ns: dict[str, Any]) -> None:
    _register_source(SOLUTION_FILE, code)
    exec(compile(code, SOLUTION_FILE, "exec"), ns)


def _write_solution_file(code: str) -> None:
    with contextlib.suppress(OSError), open(SOLUTION_FILE, "w", encoding="utf-8") as fh:
        fh.write(code)


def run_asserts_job(spec: dict[str, Any], fd: int) -> int:
    """Load the program once, then each test in its own forked child. Returns the exit code."""
    code, tests = spec["code"], spec["tests"]
    _write_solution_file(code)
    ns = _fresh_module("solution")
    try:
        if spec.get("setup"):
            _register_source(SETUP_FILE, spec["setup"])
            exec(compile(spec["setup"], SETUP_FILE, "exec"), ns)
        _exec_program(code, ns)
    except BaseException as exc:  # incl. SystemExit from sys.exit("message") at import
        _flush_std()
        error = describe_exception(exc)
        _emit(fd, {"kind": "load", "ok": False, "error": error})
        sys.stderr.write(error["traceback"])
        return 1
    _emit(fd, {"kind": "load", "ok": True})
    for test in tests:
        result = run_test_forked(test, ns, float(spec["test_timeout_s"]))
        _emit(fd, {"kind": "test", "name": test, **result})
    return 0


def run_program_job(spec: dict[str, Any], fd: int) -> int:
    """Run the program as __main__, as `python solution.py` would, reporting its exit code."""
    code = spec["code"]
    _write_solution_file(code)
    sys.argv = [SOLUTION_FILE]
    sys.path.insert(0, os.getcwd())  # as `python solution.py` would
    ns = _fresh_module("__main__")
    exit_code = 0
    try:
        _exec_program(code, ns)
    except SystemExit as exc:
        if exc.code is None:
            exit_code = 0
        elif isinstance(exc.code, int):
            exit_code = exc.code
        else:
            _flush_std()
            sys.stderr.write(f"{exc.code}\n")
            exit_code = 1
    except BaseException as exc:
        _flush_std()
        error = describe_exception(exc)
        _emit(fd, {"kind": "load", "ok": False, "error": error})
        sys.stderr.write(error["traceback"])
        exit_code = 1
    _flush_std()
    _emit(fd, {"kind": "program", "exit_code": exit_code})
    return exit_code


def run_job(spec: dict[str, Any], fd: int) -> int:
    sys.path.extend(p for p in spec.get("sys_path", []) if p not in sys.path)
    sys.setrecursionlimit(int(spec.get("recursion_limit", 1000)))
    if spec["mode"] == "asserts":
        return run_asserts_job(spec, fd)
    if spec["mode"] == "program":
        return run_program_job(spec, fd)
    raise ValueError(f"unknown job mode {spec['mode']!r}")


def apply_limits(limits: dict[str, Any]) -> None:
    """Per-process rlimits (inherited by everything the program starts)."""
    import resource

    def cap(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))

    if limits.get("memory_bytes"):
        cap(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    if limits.get("cpu_s"):
        cap(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    if limits.get("file_bytes"):
        cap(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    if limits.get("nproc"):
        cap(resource.RLIMIT_NPROC, int(limits["nproc"]))
    cap(resource.RLIMIT_CORE, 0)


def supervise(spec: dict[str, Any], fd: int) -> None:
    """Fork the job, wait for it, and report how it ended (exit code, signal, peak memory).

    The job runs in its own process group, so `os.killpg(0, 9)` in the program ends the job,
    not the supervisor, and its end is still reported.
    """
    _flush_std()
    pid = os.fork()
    if pid == 0:
        code = EXIT_CHILD_CRASHED
        try:
            os.setpgid(0, 0)
            apply_limits(spec.get("limits", {}))
            code = run_job(spec, fd)
            _flush_std()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    _, status, usage = os.wait4(pid, 0)
    record: dict[str, Any] = {"kind": "exit", "exit_code": None, "signal": None}
    if os.WIFSIGNALED(status):
        record["signal"] = os.WTERMSIG(status)
    else:
        record["exit_code"] = os.WEXITSTATUS(status)
    record["maxrss_kb"] = int(usage.ru_maxrss)
    _emit(fd, record)


def main(argv: list[str]) -> None:
    """Cold mode: `python -I harness.py SPEC_FD RESULT_FD`."""
    spec_fd, result_fd = int(argv[1]), int(argv[2])
    with io.open(spec_fd, "rb", closefd=True) as fh:
        spec = json.loads(fh.read())
    os.set_inheritable(result_fd, False)
    supervise(spec, result_fd)


if __name__ == "__main__":
    main(sys.argv)
