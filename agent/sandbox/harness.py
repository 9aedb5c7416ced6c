"""The judge: the trusted side of a job, which runs the tests and alone writes the verdict.

Standard library only: this file runs inside the sandbox (as a script in cold mode, imported
by the fork server in warm mode). A job is two processes:

- the judge (this module): non-dumpable, so no other process of the sandbox can ptrace it or
  read its memory and descriptors (capabilities are dropped); it alone holds the result
  channel; it evaluates every test expression and comparison in its own interpreter;
- the program's process (`callee.py`), forked *before* the judge reads the job, so it never
  sees the tests. Every name the program defines reaches the judge as plain data or as a
  `wire.Handle`; calling a handle is a request to the program's process, whose answer is
  plain data again. Nothing the program does to its own interpreter changes a comparison.

The tests' names resolve to the judge's builtins and the setup's own definitions first, the
program's globals after: a program that defines `set`, `sorted` or `check` changes nothing the
test calls under those names. The program's exit status and peak memory come from `wait4` in
the judge, never from a message. Records (JSON lines on the result fd), checked by the host
(`agent/sandbox/records.py`):
  {"kind": "load", "ok": true} | {"kind": "load", "ok": false, "error": {...}}
  {"kind": "test", "index": I, "status": ..., ...TestResult fields}
  {"kind": "exit", "exit_code": N | null, "signal": N | null, "maxrss_kb": N}
A test that takes the program's process down (a hang past its timeout, os._exit, a signal)
gets its result from the judge, which then ends the job; the host starts a new job from the
next test. Each record is also a heartbeat for the host's deadline.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import marshal
import os
import pickle
import sys
import time

if __package__:  # imported by the host (for its constants and path)
    from agent.sandbox import callee, runtime, wire
else:  # inside the sandbox: the siblings, imported by path; the path is not kept
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, _HERE)
    import callee
    import runtime
    import wire

    sys.path.remove(_HERE)

GRACE_S = 1.0  # how long after a test's timeout the program's process may take to answer
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


_BUILTIN_NAMES = frozenset(dir(builtins))


class ProgramLost(BaseException):
    """The program's process is gone or unusable; the job ends after the current test."""

    def __init__(self, record: dict) -> None:
        super().__init__(record.get("message", ""))
        self.record = record


class ProgramRaised(Exception):
    """Base of the judge's stand-ins for exceptions raised in the program's process."""

    remote: dict


_STAND_INS: dict[str, type] = {}


def stand_in(info: dict) -> BaseException:
    """An exception the test can catch as it would the program's (`except ValueError`)."""
    name = str(info.get("exception_type") or "Exception")
    cls = _STAND_INS.get(name)
    if cls is None:
        base = getattr(builtins, name, None)
        usable = isinstance(base, type) and issubclass(base, Exception)
        if not usable or issubclass(base, StopIteration | StopAsyncIteration):
            base = Exception
        cls = type(name, (ProgramRaised, base), {"__module__": "builtins"})
        _STAND_INS[name] = cls
    try:
        exc = cls(str(info.get("message", "")))
    except BaseException:
        cls = _STAND_INS.setdefault(name + "*", type(name, (ProgramRaised,), {}))
        exc = cls(str(info.get("message", "")))
    exc.remote = info
    return exc


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> object:
        return obj.number if type(obj) is wire.Handle else None


class Program:
    """The judge's end of the program's process."""

    def __init__(self, pid: int, req_fd: int, resp_fd: int) -> None:
        self.pid, self.req_fd, self.resp_fd = pid, req_fd, resp_fd
        self.deadline: float | None = None  # of the current test
        try:  # readable once the process has ended, even if its children keep the pipe open
            self.pidfd: int | None = os.pidfd_open(pid)
        except (OSError, AttributeError):
            self.pidfd = None
        self.status: tuple[int | None, int | None, int] | None = None  # exit, signal, maxrss

    @classmethod
    def spawn(cls) -> Program:
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        runtime.flush_std()
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)
                runtime.close_fds_except({0, 1, 2, req_r, resp_w})
            finally:
                callee.main(req_r, resp_w)
        try:  # noqa: SIM105
            os.setpgid(pid, pid)
        except OSError:
            pass
        os.close(req_r)
        os.close(resp_w)
        return cls(pid, req_w, resp_r)

    # ---------------------------------------------------------------- requests

    def send(self, request: tuple) -> None:
        buffer = io.BytesIO()
        try:
            _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(request)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(
                f"the test passes a value the program's process cannot receive ({exc}); only "
                "picklable values and the program's own objects cross the sandbox boundary"
            ) from None
        try:
            wire.write_frame(self.req_fd, buffer.getvalue())
        except wire.PeerGone:
            raise ProgramLost(self.lost()) from None

    def receive(self, deadline: float | None) -> dict:
        import json

        try:
            payload = wire.read_frame(self.resp_fd, deadline, self.pidfd)
        except wire.WireTimeout:
            raise ProgramLost(self.lost(timed_out=True)) from None
        except wire.PeerGone:
            raise ProgramLost(self.lost()) from None
        except wire.WireError as exc:
            raise ProgramLost(self.lost(broken=str(exc))) from None
        try:
            reply = json.loads(payload)
        except (ValueError, RecursionError):
            raise ProgramLost(self.lost(broken="a reply that is not JSON")) from None
        if type(reply) is not dict:
            raise ProgramLost(self.lost(broken="a reply that is not an object"))
        return reply

    def request(self, op: str, target: wire.Handle, args: tuple, kwargs: dict) -> object:
        """One operation on a program object; plain data or a handle comes back."""
        deadline = self.deadline
        left = 3600.0 if deadline is None else max(deadline - time.monotonic(), 0.001)
        self.send((op, target, args, kwargs, left))
        reply = self.receive(None if deadline is None else deadline + GRACE_S)
        if "value" in reply:
            try:
                return wire.decode(reply["value"], self.handle)
            except (wire.WireError, RecursionError) as exc:
                raise ProgramLost(self.lost(broken=f"a malformed value: {exc}")) from None
        if reply.get("timeout") is True:
            raise runtime.TestTimeout
        info = reply.get("raise")
        if type(info) is dict:
            raise stand_in(info)
        raise ProgramLost(self.lost(broken="a reply of no known shape"))

    def handle(self, number: int, type_name: str, text: str) -> wire.Handle:
        return wire.Handle(number, type_name, text[: runtime.REPR_LIMIT], self.request)

    # ---------------------------------------------------------------- its end

    def kill(self) -> None:
        for target in (-self.pid, self.pid):
            try:  # noqa: SIM105
                os.kill(target, 9)
            except OSError:
                pass

    def wait(self) -> tuple[int | None, int | None, int]:
        if self.status is None:
            try:
                _, status, usage = os.wait4(self.pid, 0)
            except ChildProcessError:
                self.status = (None, None, 0)
            else:
                code = sig = None
                if os.WIFSIGNALED(status):
                    sig = os.WTERMSIG(status)
                else:
                    code = os.WEXITSTATUS(status)
                self.status = (code, sig, int(usage.ru_maxrss))
            for fd in (self.req_fd, self.resp_fd, self.pidfd):
                if fd is None:
                    continue
                try:  # noqa: SIM105
                    os.close(fd)
                except OSError:
                    pass
        return self.status

    def quit(self) -> None:
        if self.status is None:  # ask it to end; it may have exec'd and not hear: then wait
            with contextlib.suppress(wire.PeerGone, OSError):
                wire.write_frame(self.req_fd, pickle.dumps(("quit",)))
        self.wait()

    def lost(self, timed_out: bool = False, broken: str | None = None) -> dict:
        """The record of a test during which the program's process was lost."""
        self.kill()
        code, sig, _rss = self.wait()
        if timed_out:
            return {"status": "timeout", "message": "the test did not finish in time (killed)"}
        if broken is not None:
            return {
                "status": "error",
                "exception_type": "ProtocolError",
                "message": f"the program's process broke the test protocol: {broken}",
            }
        if sig is not None:
            import signal

            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            if sig == signal.SIGXCPU:
                return {
                    "status": "timeout",
                    "message": "the test used up the CPU-time limit (killed by SIGXCPU)",
                }
            hint = " (a stack overflow: recursion too deep?)" if sig == signal.SIGSEGV else ""
            return {
                "status": "error",
                "exception_type": name,
                "message": f"the process was killed by {name} during this test{hint}",
            }
        return {
            "status": "error",
            "exception_type": "SystemExit",
            "message": f"the process exited with code {code} during this test",
        }


# ---------------------------------------------------------------- the tests, in the judge


def describe(exc: BaseException) -> dict:
    """A test's exception; for one raised in the program, the program's own traceback."""
    info = runtime.describe_exception(exc)
    remote = getattr(exc, "remote", None)
    if isinstance(exc, ProgramRaised) and type(remote) is dict:
        head = info["traceback"].split("\n")
        own = "\n".join(line for line in head[:-2]) if len(head) > 2 else ""
        theirs = str(remote.get("traceback") or "")
        theirs = theirs.split("\n", 1)[1] if theirs.startswith("Traceback") else theirs
        lineno = remote.get("lineno")
        info = {
            "exception_type": str(remote.get("exception_type") or "Exception")[:100],
            "message": str(remote.get("message") or "")[: runtime.REPR_LIMIT],
            "lineno": lineno if type(lineno) is int else None,
            "traceback": runtime.clip(f"{own}\n{theirs}" if own else theirs),
        }
    return info


def _run_compare(test: object, source: str, ns: dict) -> dict:
    """`assert LEFT op RIGHT`: evaluate both sides once, report them (as pytest rewriting)."""
    import ast

    cmp = test.test  # type: ignore[attr-defined]
    func, symbol = _COMPARE_OPS[type(cmp.ops[0]).__name__]
    left_src = ast.get_source_segment(source, cmp.left) or "left"
    left = eval(compile(ast.Expression(cmp.left), runtime.TEST_FILE, "eval"), ns)
    right = eval(compile(ast.Expression(cmp.comparators[0]), runtime.TEST_FILE, "eval"), ns)
    if func(left, right):  # type: ignore[operator]
        return {"status": "passed"}
    actual, expected = runtime.short_repr(left), runtime.short_repr(right)
    result: dict = {"status": "failed", "expression": left_src}
    if symbol == "==":
        result.update(actual=actual, expected=expected)
        result["message"] = f"{left_src} returned {actual}, expected {expected}"
    else:
        result["message"] = f"{left_src} {symbol} {expected} is false: {left_src} = {actual}"
    if test.msg is not None:  # type: ignore[attr-defined]
        msg = eval(compile(ast.Expression(test.msg), runtime.TEST_FILE, "eval"), ns)  # type: ignore[attr-defined]
        result["message"] = f"{runtime.short_repr(msg)}: {result['message']}"
    return result


def run_one_test(source: str, ns: dict) -> dict:
    """Run one test statement in the judge's namespace `ns`; raises only ProgramLost."""
    import ast

    runtime.register_source(runtime.TEST_FILE, source)
    try:
        tree = ast.parse(source, runtime.TEST_FILE)
    except SyntaxError as exc:
        return {"status": "error", **runtime.describe_exception(exc), "lineno": None}
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
        exec(compile(tree, runtime.TEST_FILE, "exec"), ns)
        return {"status": "passed"}
    except ProgramLost:
        raise
    except runtime.TestTimeout:
        return {"status": "timeout"}
    except AssertionError as exc:
        info = describe(exc)
        return {"status": "failed", **info, "message": info["message"] or "assertion is false"}
    except BaseException as exc:
        return {"status": "error", **describe(exc)}


def run_test_timed(source: str, ns: dict, program: Program, timeout_s: float) -> dict:
    """One test, its calls into the program bounded by `timeout_s` (the program's process
    interrupts itself; the judge kills it `GRACE_S` later), the judge's own work by SIGALRM."""
    import signal

    start = time.monotonic()
    program.deadline = start + timeout_s
    signal.signal(signal.SIGALRM, runtime.on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s + 2 * GRACE_S)
        try:
            result = run_one_test(source, ns)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except runtime.TestTimeout:  # the judge itself was interrupted, maybe mid-request
        raise ProgramLost(program.lost(timed_out=True)) from None
    finally:
        program.deadline = None
    if result["status"] == "timeout":
        result["message"] = f"the test did not finish within {timeout_s:g} s"
    result["duration_s"] = time.monotonic() - start
    return result


def _namespace(names: dict, program: Program) -> dict:
    """The judge's view of the program's globals: plain data, handles, and the judge's own
    copy of each standard module the program imported."""
    ns: dict = {"__name__": "__fixloop_test__", "__builtins__": builtins}
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    for name, value in names.items():
        if name in _BUILTIN_NAMES:  # `set = lambda *a: 1` must not reach the tests' `set(...)`
            continue
        if type(value) is dict and "module" in value and len(value) == 2:
            module = str(value["module"])
            if module.partition(".")[0] in stdlib or module in sys.modules:
                try:
                    ns[name] = __import__(module, fromlist=["_"])
                    continue
                except BaseException:
                    pass
            ns[name] = program.handle(int(value["h"]), "module", f"<module {module!r}>")
            continue
        ns[name] = wire.decode(value, program.handle)
    return ns


def run_asserts_job(spec: dict, program: Program, fd: int) -> None:
    """Load the program in its process, then run tests[start:] in the judge, one by one."""
    tests, first = spec["tests"], int(spec.get("start", 0))
    program.send(("load", _program_spec(spec)))
    reply = program.receive(None)
    if reply.get("ok") is not True:
        error = reply.get("error")
        error = error if type(error) is dict else {"exception_type": "Exception", "message": ""}
        runtime.emit(fd, {"kind": "load", "ok": False, "error": _clean_error(error)})
        return
    try:
        ns = _namespace(reply.get("names") or {}, program)
        if spec.get("setup"):  # the tests' own helpers (e.g. HumanEval's `check`) win
            runtime.register_source(runtime.SETUP_FILE, spec["setup"])
            exec(compile(spec["setup"], runtime.SETUP_FILE, "exec"), ns)
    except BaseException as exc:
        runtime.emit(fd, {"kind": "load", "ok": False, "error": describe(exc)})
        return
    runtime.emit(fd, {"kind": "load", "ok": True})
    timeout_s = float(spec["test_timeout_s"])
    for index in range(first, len(tests)):
        try:
            result = run_test_timed(tests[index], ns, program, timeout_s)
        except ProgramLost as lost:
            runtime.emit(fd, {"kind": "test", "index": index, **lost.record})
            return
        runtime.emit(fd, {"kind": "test", "index": index, **result})


def run_program_job(spec: dict, program: Program, fd: int) -> None:
    """The program as `python solution.py`; its exit status is the kernel's (`job` waits)."""
    import json

    program.send(("run", _program_spec(spec)))
    while True:  # until the pipe closes: the program ended, or exec'd another program
        try:
            payload = wire.read_frame(program.resp_fd, None, program.pidfd)
            reply = json.loads(payload)
        except (wire.PeerGone, wire.WireError, ValueError, RecursionError):
            break
        if type(reply) is not dict:
            continue
        error = reply.get("error")
        if reply.get("ok") is False and type(error) is dict:
            runtime.emit(fd, {"kind": "load", "ok": False, "error": _clean_error(error)})


def _clean_error(error: dict) -> dict:
    lineno = error.get("lineno")
    return {
        "exception_type": str(error.get("exception_type") or "Exception")[:100],
        "message": str(error.get("message") or "")[: runtime.REPR_LIMIT],
        "lineno": lineno if type(lineno) is int else None,
        "traceback": runtime.clip(str(error.get("traceback") or "")),
    }


def _program_spec(spec: dict) -> dict:
    """What the program's process is told: its code and limits, never the tests."""
    keys = ("code", "setup", "limits", "sys_path", "recursion_limit")
    return {k: spec[k] for k in keys if k in spec}


def job(spec_fd: int, result_fd: int) -> None:
    """One job: fork the program's process, then read the spec, judge, report its end."""
    runtime.set_dumpable(0)
    program = Program.spawn()
    with open(spec_fd, "rb", closefd=True) as fh:
        spec = marshal.loads(fh.read())
    sys.path.extend(p for p in spec.get("sys_path", []) if p not in sys.path)
    try:
        if spec["mode"] == "asserts":
            run_asserts_job(spec, program, result_fd)
        elif spec["mode"] == "program":
            run_program_job(spec, program, result_fd)
        else:
            raise ValueError(f"unknown job mode {spec['mode']!r}")
    except ProgramLost:
        pass
    finally:
        program.quit()
        code, sig, rss = program.wait()
        runtime.emit(
            result_fd, {"kind": "exit", "exit_code": code, "signal": sig, "maxrss_kb": rss}
        )


def main(argv: list[str]) -> None:
    """Cold mode: `python -I harness.py SPEC_FD RESULT_FD`."""
    spec_fd, result_fd = int(argv[1]), int(argv[2])
    os.set_inheritable(result_fd, False)
    code = 0
    try:
        job(spec_fd, result_fd)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = runtime.EXIT_CHILD_CRASHED
    runtime.flush_std()
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv)
