"""The in-sandbox side of an execution: loads the model's program and runs its tests.

Standard library only: this file runs inside the sandbox (as a script in cold mode, imported
by the fork server in warm mode), under the program's own interpreter and limits.

Protocol: the job spec is a `marshal`-ed dict; results are JSON lines written to a result fd:
  {"kind": "load", "ok": true} | {"kind": "load", "ok": false, "error": {...}}
  {"kind": "test", "index": I, ...TestResult fields}
  {"kind": "program", "exit_code": N}
  {"kind": "exit", "exit_code": N | null, "signal": N | null, "maxrss_kb": N}  (supervisor)
Assert tests run one after another in the program's process (one module, state shared, as in
MBPP's and HumanEval's own harnesses), each under a SIGALRM timer. Each line is a heartbeat:
the host moves its deadline to one test's timeout after it, so a test the timer cannot stop
is killed by the host, which then runs the remaining tests in a new job (`start`).
"""

from __future__ import annotations

import marshal
import os
import sys
import time
import types

# Kept light: these imports are part of every cold run's start-up time, so `ast`, `traceback`,
# `linecache`, `signal` and `contextlib` are imported only where needed (hence try/except/pass).

SOLUTION_FILE = "solution.py"
TEST_FILE = "<test>"
SETUP_FILE = "<setup>"
REPR_LIMIT = 600
TRACEBACK_LIMIT = 4000
EXIT_CHILD_CRASHED = 70

_COMPARE_OPS: dict[str, tuple[object, str]] = {  # ast class name -> (function, symbol)
    "Eq": (lambda a, b: a == b, "=="),
    "NotEq": (lambda a, b: a != b, "!="),
    "Lt": (lambda a, b: a < b, "<"),
    "LtE": (lambda a, b: a <= b, "<="),
    "Gt": (lambda a, b: a > b, ">"),
    "GtE": (lambda a, b: a >= b, ">="),
    "Is": (lambda a, b: a is b, "is"),
    "IsNot": (lambda a, b: a is not b, "is not"),
    "In": (lambda a, b: a in b, "in"),
    "NotIn": (lambda a, b: a not in b, "not in"),
}
_SOURCES: dict[str, str] = {}  # pseudo-files shown in tracebacks (solution, test, setup)
_SYNCED: dict[str, str] = {}  # what linecache holds for each of them


def short_repr(value: object, limit: int = REPR_LIMIT) -> str:
    try:
        text = repr(value)
    except BaseException as exc:  # a hostile __repr__
        text = f"<repr failed: {type(exc).__name__}>"
    if len(text) > limit:
        text = f"{text[: limit - 40]}... [{len(text) - limit + 40} more chars]"
    return text


def _register_source(filename: str, source: str) -> None:
    """Remember a pseudo-file's source; it reaches linecache when a traceback is formatted."""
    _SOURCES[filename] = source
    if "linecache" in sys.modules:  # already loaded (by the program): keep it current
        _sync_linecache([filename])


def _sync_linecache(filenames: list[str] | None = None) -> None:
    import linecache

    for filename in filenames if filenames is not None else list(_SOURCES):
        source = _SOURCES[filename]
        if _SYNCED.get(filename) is source and filename in linecache.cache:
            continue  # this very source is already there
        _SYNCED[filename] = source
        lines = [line if line.endswith("\n") else line + "\n" for line in source.splitlines()]
        linecache.cache[filename] = (len(source), None, lines, filename)


def describe_exception(exc: BaseException) -> dict:
    """Type, message, the line in the model's program, and a traceback of the user frames."""
    import traceback

    _sync_linecache()
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


def dumps(value: object) -> str:
    """JSON for records (dict/list/str/int/float/bool/None), as `json.dumps` writes it,
    without importing `json` (and `re` with it) on the cold path."""
    from _json import encode_basestring_ascii

    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value) if value == value and abs(value) != float("inf") else "0"
    if isinstance(value, dict):
        items = (f"{encode_basestring_ascii(str(k))}: {dumps(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    return encode_basestring_ascii(repr(value))


def _emit(fd: int, record: dict) -> None:
    data = (dumps(record) + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105
            stream.flush()
        except BaseException:
            pass


# ---------------------------------------------------------------- one test, in a forked child


def _run_compare(test: object, source: str, ns: dict) -> dict:
    """`assert LEFT op RIGHT`: evaluate both sides once, report them (as pytest rewriting)."""
    import ast

    cmp = test.test
    assert isinstance(cmp, ast.Compare)
    func, symbol = _COMPARE_OPS[type(cmp.ops[0]).__name__]
    left_src = ast.get_source_segment(source, cmp.left) or "left"
    left = eval(compile(ast.Expression(cmp.left), TEST_FILE, "eval"), ns)
    right = eval(compile(ast.Expression(cmp.comparators[0]), TEST_FILE, "eval"), ns)
    if func(left, right):
        return {"status": "passed"}
    actual, expected = short_repr(left), short_repr(right)
    result: dict = {"status": "failed", "expression": left_src}
    if symbol == "==":
        result.update(actual=actual, expected=expected)
        result["message"] = f"{left_src} returned {actual}, expected {expected}"
    else:
        result["message"] = f"{left_src} {symbol} {expected} is false: {left_src} = {actual}"
    if test.msg is not None:
        user_msg = eval(compile(ast.Expression(test.msg), TEST_FILE, "eval"), ns)
        result["message"] = f"{short_repr(user_msg)}: {result['message']}"
    return result


def run_one_test(source: str, ns: dict) -> dict:
    """Run one test statement in `ns`; never raises."""
    import ast

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
            and type(body[0].test.ops[0]).__name__ in _COMPARE_OPS
        ):
            return _run_compare(body[0], source, ns)
        exec(compile(tree, TEST_FILE, "exec"), ns)
        return {"status": "passed"}
    except TestTimeout:
        return {"status": "timeout"}
    except AssertionError as exc:
        info = describe_exception(exc)
        message = info["message"] or "assertion is false"
        return {"status": "failed", **info, "message": message}
    except BaseException as exc:
        return {"status": "error", **describe_exception(exc)}


class TestTimeout(BaseException):
    """Raised into a test by the per-test timer (a BaseException: `except Exception` misses it)."""


def _on_alarm(signum: int, frame: object) -> None:
    raise TestTimeout


def run_test_timed(source: str, ns: dict, timeout_s: float) -> dict:
    """One test in this process, interrupted by SIGALRM after `timeout_s`.

    Code that does not return to the interpreter (a C-level loop) or swallows the interrupt
    is not stopped here: the host's deadline kills the process and resumes after this test.
    """
    import signal

    signal.signal(signal.SIGALRM, _on_alarm)
    start = time.perf_counter()
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            result = run_one_test(source, ns)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except TestTimeout:  # fired between the test's end and the disarm: still its time
        result = {"status": "timeout"}
    _flush_std()
    if result["status"] == "timeout":
        result = {"status": "timeout", "message": f"the test did not finish within {timeout_s:g} s"}
    result["duration_s"] = time.perf_counter() - start
    return result


# ---------------------------------------------------------------- the job


def _fresh_module(name: str) -> dict:
    """A real module for the program (so `import __main__` and pickling of its classes work)."""
    module = types.ModuleType(name)
    module.__file__ = os.path.abspath(SOLUTION_FILE)
    sys.modules[name] = module
    return module.__dict__


def _exec_program(code: str, ns: dict) -> None:
    _register_source(SOLUTION_FILE, code)
    exec(compile(code, SOLUTION_FILE, "exec"), ns)


def _write_solution_file(code: str) -> None:
    try:
        with open(SOLUTION_FILE, "w", encoding="utf-8") as fh:
            fh.write(code)
    except OSError:
        pass


def run_asserts_job(spec: dict, fd: int) -> int:
    """Load the program, then run tests[start:] one by one, each under its own timer.

    A test that ends the process (os._exit, a signal, a hang the timer cannot break) is
    attributed by the host, which starts a new job from the next test (`start`).
    """
    code, tests, first = spec["code"], spec["tests"], int(spec.get("start", 0))
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
    for index in range(first, len(tests)):
        result = run_test_timed(tests[index], ns, float(spec["test_timeout_s"]))
        _emit(fd, {"kind": "test", "index": index, "name": tests[index], **result})
    return 0


def run_program_job(spec: dict, fd: int) -> int:
    """Run the program as __main__, as `python solution.py` would, reporting its exit code."""
    code = spec["code"]
    _write_solution_file(code)
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


def run_job(spec: dict, fd: int) -> int:
    sys.path.extend(p for p in spec.get("sys_path", []) if p not in sys.path)
    sys.argv = [SOLUTION_FILE]
    sys.setrecursionlimit(int(spec.get("recursion_limit", 1000)))
    if spec["mode"] == "asserts":
        return run_asserts_job(spec, fd)
    if spec["mode"] == "program":
        return run_program_job(spec, fd)
    raise ValueError(f"unknown job mode {spec['mode']!r}")


def apply_limits(limits: dict) -> None:
    """Per-process rlimits (inherited by everything the program starts)."""
    import resource

    def cap(which: int, value: int) -> None:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:  # noqa: SIM105
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    if limits.get("memory_bytes"):
        cap(resource.RLIMIT_AS, int(limits["memory_bytes"]))
    if limits.get("cpu_s"):
        cap(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    if limits.get("file_bytes"):
        cap(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
    if limits.get("nproc"):
        cap(resource.RLIMIT_NPROC, int(limits["nproc"]))
    cap(resource.RLIMIT_CORE, 0)


def supervise(spec: dict, fd: int) -> None:
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
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    try:  # noqa: SIM105
        os.setpgid(pid, pid)
    except OSError:
        pass
    _, status, usage = os.wait4(pid, 0)
    record: dict = {"kind": "exit", "exit_code": None, "signal": None}
    if os.WIFSIGNALED(status):
        record["signal"] = os.WTERMSIG(status)
    else:
        record["exit_code"] = os.WEXITSTATUS(status)
    record["maxrss_kb"] = int(usage.ru_maxrss)
    _emit(fd, record)


def main(argv: list[str]) -> None:
    """Cold mode: `python -I harness.py SPEC_FD RESULT_FD`."""
    spec_fd, result_fd = int(argv[1]), int(argv[2])
    with open(spec_fd, "rb", closefd=True) as fh:
        spec = marshal.loads(fh.read())
    os.set_inheritable(result_fd, False)
    supervise(spec, result_fd)


if __name__ == "__main__":
    main(sys.argv)
