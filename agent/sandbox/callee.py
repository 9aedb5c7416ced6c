"""The program's process: loads the model's program and answers the judge's calls.

Standard library only; runs inside the sandbox, forked by the judge before the judge has read
the job (so this process never holds the tests), under the program's rlimits. It holds no
result channel: all it can do is answer requests, and its answers are plain data
(`wire.encode`). Whatever the program does to this interpreter (replacing builtins, patching
`math.isclose`, walking frames, tracing) stays in this process.

Requests (pickles from the judge): ("load", spec) | ("run", spec) | (op, target, args,
kwargs, timeout_s) | ("quit",). Replies (JSON): {"ok": true, "names": {...}} |
{"ok": false, "error": {...}} | {"value": V} | {"raise": {...}} | {"timeout": true}.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
from typing import NoReturn

if __package__:
    from agent.sandbox import runtime, wire
else:  # inside the sandbox (see harness.py)
    import runtime
    import wire

_OPS = {
    "call": lambda target, args, kwargs: target(*args, **kwargs),
    "getattr": lambda target, args, kwargs: getattr(target, args[0]),
    "getitem": lambda target, args, kwargs: target[args[0]],
    "list": lambda target, args, kwargs: list(target),
    "len": lambda target, args, kwargs: len(target),
    "bool": lambda target, args, kwargs: bool(target),
    "str": lambda target, args, kwargs: str(target),
    "int": lambda target, args, kwargs: int(target),
    "float": lambda target, args, kwargs: float(target),
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, table: wire.HandleTable) -> None:
        super().__init__(io.BytesIO(data))
        self.table = table

    def persistent_load(self, pid: object) -> object:
        return self.table.objects[int(pid)]  # type: ignore[call-overload]


class Callee:
    def __init__(self, req_fd: int, resp_fd: int) -> None:
        self.req_fd, self.resp_fd = req_fd, resp_fd
        self.table = wire.HandleTable()
        self.ns: dict = {}

    def reply(self, message: dict) -> None:
        runtime.flush_std()
        try:
            payload = runtime.dumps(message).encode()
        except (ValueError, TypeError, RecursionError) as exc:
            payload = runtime.dumps({"raise": _describe(exc)}).encode()
        wire.write_frame(self.resp_fd, payload)

    def encode(self, value: object) -> object:
        return wire.encode(value, self.table, runtime.short_repr)

    def serve(self) -> None:
        while True:
            try:
                request = _Unpickler(wire.read_frame(self.req_fd), self.table).load()
            except wire.PeerGone:
                return
            op = request[0]
            if op == "quit":
                return
            if op == "load":
                self.reply(self.load(request[1]))
            elif op == "run":
                self.run_main(request[1])  # ends the process
            else:
                self.reply(self.call(*request))

    # ---------------------------------------------------------------- assert mode

    def load(self, spec: dict) -> dict:
        _prepare(spec)
        self.ns = _fresh_module("solution")
        try:
            if spec.get("setup"):
                runtime.register_source(runtime.SETUP_FILE, spec["setup"])
                exec(compile(spec["setup"], runtime.SETUP_FILE, "exec"), self.ns)
            _exec_program(spec["code"], self.ns)
        except BaseException as exc:  # incl. SystemExit from sys.exit("message") at import
            runtime.flush_std()
            error = _describe(exc)
            sys.stderr.write(error["traceback"])
            return {"ok": False, "error": error}
        names: dict[str, object] = {}
        for name, value in list(self.ns.items()):
            if name.startswith("__"):
                continue
            try:
                if isinstance(value, types.ModuleType):
                    names[name] = {"module": value.__name__, "h": self.table.add(value)}
                else:
                    names[name] = self.encode(value)
            except BaseException:
                continue
        return {"ok": True, "names": names}

    def call(self, op: str, target: object, args: tuple, kwargs: dict, timeout_s: float) -> dict:
        import signal

        func = _OPS.get(op)
        if func is None:
            return {"raise": {"exception_type": "ValueError", "message": f"unknown op {op!r}"}}
        signal.signal(signal.SIGALRM, runtime.on_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, max(timeout_s, 0.001))
            try:
                value = func(target, args, kwargs)
                encoded = self.encode(value)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except runtime.TestTimeout:
            return {"timeout": True}
        except BaseException as exc:
            return {"raise": _describe(exc)}
        return {"value": encoded}

    # ---------------------------------------------------------------- program mode

    def run_main(self, spec: dict) -> None:
        """Run the program as `python solution.py` would, then end this process with its
        exit status (which the judge reads from the kernel, not from a message)."""
        _prepare(spec)
        sys.path.insert(0, os.getcwd())  # as `python solution.py` would
        ns = _fresh_module("__main__")
        code = 0
        try:
            _exec_program(spec["code"], ns)
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException as exc:
            runtime.flush_std()
            error = _describe(exc)
            self.reply({"ok": False, "error": error})
            sys.stderr.write(error["traceback"])
            code = 1
        code = _shutdown(code)
        os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    runtime.flush_std()
    sys.stderr.write(f"{exc.code}\n")
    return 1


def _shutdown(code: int) -> int:
    """What the interpreter does at exit: join non-daemon threads, run atexit handlers."""
    import atexit

    try:
        import threading

        threading._shutdown()  # type: ignore[attr-defined]
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        pass
    try:
        atexit._run_exitfuncs()
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        pass
    runtime.flush_std()
    return code


def _describe(exc: BaseException) -> dict:
    try:
        return runtime.describe_exception(exc)
    except BaseException:
        return {"exception_type": "Exception", "message": "<undescribable>", "traceback": ""}


def _prepare(spec: dict) -> None:
    sys.path.extend(p for p in spec.get("sys_path", []) if p not in sys.path)
    sys.argv = [runtime.SOLUTION_FILE]
    sys.setrecursionlimit(int(spec.get("recursion_limit", 1000)))
    runtime.apply_limits(spec.get("limits", {}))
    try:
        with open(runtime.SOLUTION_FILE, "w", encoding="utf-8") as fh:
            fh.write(spec["code"])
    except OSError:
        pass
    import atexit

    atexit._clear()  # the warm interpreter's own handlers are not the program's


def _fresh_module(name: str) -> dict:
    """A real module for the program (so `import __main__` and pickling of its classes work)."""
    module = types.ModuleType(name)
    module.__file__ = os.path.abspath(runtime.SOLUTION_FILE)
    sys.modules[name] = module
    return module.__dict__


def _exec_program(code: str, ns: dict) -> None:
    runtime.register_source(runtime.SOLUTION_FILE, code)
    exec(compile(code, runtime.SOLUTION_FILE, "exec"), ns)


def main(req_fd: int, resp_fd: int) -> NoReturn:
    """Entry in the forked child: serve the judge until it says quit or goes away."""

    def body() -> None:
        runtime.die_with_parent()
        runtime.drop_capabilities()  # as root outside bubblewrap too: no ptrace of the judge
        runtime.set_dumpable(1)  # an ordinary process (the judge stays non-dumpable)
        Callee(req_fd, resp_fd).serve()

    runtime.run_child(body)
