"""What both sides of a job share inside the sandbox: sources for tracebacks, exception
descriptions, records, limits and process hygiene.

Standard library only: imported by the judge (`harness.py`), the program's process
(`callee.py`) and the fork server, inside the sandbox. Kept light: `ast`, `traceback`,
`linecache` and `resource` are imported only where needed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

SOLUTION_FILE = "solution.py"
TEST_FILE = "<test>"
SETUP_FILE = "<setup>"
REPR_LIMIT = 600
TRACEBACK_LIMIT = 4000
EXIT_CHILD_CRASHED = 70
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4

_SOURCES: dict[str, str] = {}  # pseudo-files shown in tracebacks (solution, test, setup)
_SYNCED: dict[str, str] = {}  # what linecache holds for each of them


class TestTimeout(BaseException):
    """Raised by a per-test timer (a BaseException: `except Exception` misses it)."""


def on_alarm(signum: int, frame: object) -> None:
    raise TestTimeout


def short_repr(value: object, limit: int = REPR_LIMIT) -> str:
    try:
        text = repr(value)
    except BaseException as exc:  # a hostile __repr__
        text = f"<repr failed: {type(exc).__name__}>"
    if type(text) is not str:
        text = "<repr returned a non-string>"
    if len(text) > limit:
        text = f"{text[: limit - 40]}... [{len(text) - limit + 40} more chars]"
    return text


def register_source(filename: str, source: str) -> None:
    """Remember a pseudo-file's source; it reaches linecache when a traceback is formatted."""
    _SOURCES[filename] = source
    if "linecache" in sys.modules:  # already loaded (by the program): keep it current
        sync_linecache([filename])


def sync_linecache(filenames: list[str] | None = None) -> None:
    import linecache

    for filename in filenames if filenames is not None else list(_SOURCES):
        source = _SOURCES[filename]
        if _SYNCED.get(filename) is source and filename in linecache.cache:
            continue  # this very source is already there
        _SYNCED[filename] = source
        lines = [line if line.endswith("\n") else line + "\n" for line in source.splitlines()]
        linecache.cache[filename] = (len(source), None, lines, filename)


def clip(text: str, limit: int = TRACEBACK_LIMIT) -> str:
    if len(text) > limit:
        return text[: limit // 2] + "\n...\n" + text[-limit // 2 :]
    return text


def describe_exception(exc: BaseException) -> dict:
    """Type, message, the line in the model's program, and a traceback of the user frames."""
    import traceback

    sync_linecache()
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
    try:
        lines += traceback.format_exception_only(type(exc), exc)
    except BaseException:  # a hostile __str__
        lines.append(f"{type(exc).__name__}: <str failed>\n")
    try:
        message = str(exc)
    except BaseException:
        message = "<str failed>"
    return {
        "exception_type": type(exc).__name__,
        "message": message[:REPR_LIMIT] if type(message) is str else "<str failed>",
        "lineno": lineno,
        "traceback": clip("".join(lines)),
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


def emit(fd: int, record: dict) -> None:
    """Write one result record (a JSON line) to the result channel."""
    data = (dumps(record) + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105
            stream.flush()
        except BaseException:
            pass


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


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_dumpable(value: int) -> bool:
    """Non-dumpable (0): without CAP_SYS_PTRACE (dropped) no other process of the sandbox can
    ptrace this one or open its /proc/PID/mem, fd or environ. True when it took effect."""
    return _prctl(PR_SET_DUMPABLE, value)


def die_with_parent() -> bool:
    """SIGKILL this process when the process that forked it ends."""
    return _prctl(PR_SET_PDEATHSIG, 9)


def run_child(body: Callable[[], None]) -> NoReturn:
    """The whole life of a forked child: run `body`, report a crash on stderr, flush, and
    leave with `os._exit` (never back into the parent's code)."""
    code = EXIT_CHILD_CRASHED
    try:
        body()
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        flush_std()
        os._exit(code)


def close_fds_except(keep: set[int]) -> None:
    """Close every descriptor of this process but `keep` (a forked child's inheritance)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            try:  # noqa: SIM105
                os.close(fd)
            except OSError:
                pass


def drop_capabilities() -> bool:
    """Give up every capability (root's included): without CAP_SYS_PTRACE this process cannot
    attach to a non-dumpable one, whatever the isolation level. True when it took effect."""
    try:
        import ctypes

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inh")]

        libc = ctypes.CDLL(None, use_errno=True)
        for cap in range(64):  # the bounding set too, so that exec cannot regain them
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                break
        header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
        return libc.capset(ctypes.byref(header), data) == 0
    except (OSError, AttributeError):
        return False
