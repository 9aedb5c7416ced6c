"""The boundary between the judge and the program: frames, and values as plain data.

Standard library only (runs inside the sandbox). The judge (trusted: it evaluates the tests)
and the program (untrusted) are separate processes joined by two pipes. Each message is a
frame: an 8-byte big-endian length, then the payload.

- judge -> program: a pickle (the program may unpickle whatever it likes: it is the
  untrusted side). Program objects travel back as `Handle` persistent ids.
- program -> judge: JSON (decoded by the C parser), with values in a tagged form that
  `decode` turns into plain Python data only: None, bool, int, float, complex, str, bytes,
  bytearray, list, tuple, dict, set, frozenset, range, and the standard library's Counter,
  OrderedDict, deque, Fraction and Decimal (rebuilt by the judge from their contents; a
  defaultdict arrives as a dict). Any other object stays in the program and
  comes back as a `Handle`, which can be passed back as an argument, called, indexed or
  iterated (each such use is a call into the program that again returns plain data), but
  never compared: a comparison the program could answer is a verdict it could forge.
"""

from __future__ import annotations

import os
import select
import time

HEADER = 8
MAX_FRAME = 64 << 20  # bytes: a larger value is refused, not read into the judge's memory
MAX_DEPTH = 200  # nesting of a decoded value
_PLAIN_EXACT = (type(None), bool, int, float, str)


class WireError(Exception):
    """The other side broke the protocol: a malformed, oversized or unexpected frame."""


class PeerGone(Exception):
    """The other side closed its end (it exited or was killed)."""


class WireTimeout(Exception):
    """No frame arrived before the deadline."""


# ---------------------------------------------------------------- frames


def write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(len(payload).to_bytes(HEADER, "big") + payload)
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError as exc:
            raise PeerGone("the other side closed the pipe") from exc
        data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None, ended_fd: int | None) -> bytes:
    chunks: list[bytes] = []
    watch = [fd] if ended_fd is None else [fd, ended_fd]
    while n:
        if deadline is not None or ended_fd is not None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WireTimeout
            ready, _, _ = select.select(watch, [], [], left)
            if not ready:
                raise WireTimeout
            if fd not in ready:  # the writer has ended and nothing is left to read
                raise PeerGone("the other side has ended")
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise PeerGone("the other side closed the pipe")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None, ended_fd: int | None = None) -> bytes:
    """One frame's payload. `deadline`: a `time.monotonic()` value or None (wait forever);
    `ended_fd`: a pidfd of the writer, so that its end counts as the end of the pipe even
    when a process it started still holds the pipe open."""
    size = int.from_bytes(_read_exact(fd, HEADER, deadline, ended_fd), "big")
    if size > MAX_FRAME:
        raise WireError(f"a message of {size} bytes is over the {MAX_FRAME >> 20} MiB limit")
    return _read_exact(fd, size, deadline, ended_fd)


# ---------------------------------------------------------------- values, program side


class HandleTable:
    """The program's objects the judge holds handles to (kept alive until the job ends)."""

    def __init__(self) -> None:
        self.objects: dict[int, object] = {}
        self._ids: dict[int, int] = {}  # id(obj) -> handle number

    def add(self, obj: object) -> int:
        key = id(obj)
        number = self._ids.get(key)
        if number is None:
            number = len(self.objects) + 1
            self.objects[number] = obj
            self._ids[key] = number
        return number


def encode(value: object, table: HandleTable, repr_of: object, depth: int = 0) -> object:
    """`value` as JSON-able tagged data; objects that are not plain data become handles.

    Only exact built-in types count as data (a subclass of int may redefine `==`).
    """
    kind = type(value)
    if kind in _PLAIN_EXACT:
        if kind is float and (value != value or value in (float("inf"), float("-inf"))):
            return {"F": repr(value)}
        if kind is int and not -(1 << 62) < value < (1 << 62):  # type: ignore[operator]
            return {"I": format(value, "x")}
        return value
    if depth > MAX_DEPTH:
        raise WireError("the value is nested too deeply to send")
    d = depth + 1
    if kind is list:
        return [encode(v, table, repr_of, d) for v in value]  # type: ignore[attr-defined]
    if kind is tuple:
        return {"t": [encode(v, table, repr_of, d) for v in value]}  # type: ignore[attr-defined]
    if kind is dict:
        items = value.items()  # type: ignore[attr-defined]
        return {
            "d": [[encode(k, table, repr_of, d), encode(v, table, repr_of, d)] for k, v in items]
        }
    if kind is set or kind is frozenset:
        tag = "s" if kind is set else "f"
        return {tag: [encode(v, table, repr_of, d) for v in value]}  # type: ignore[attr-defined]
    if kind is bytes or kind is bytearray:
        return {"b" if kind is bytes else "B": value.hex()}  # type: ignore[attr-defined]
    if kind is complex:
        return {"c": [repr(value.real), repr(value.imag)]}  # type: ignore[attr-defined]
    if kind is range:
        return {"r": [value.start, value.stop, value.step]}  # type: ignore[attr-defined]
    std = _standard_kind(kind)
    if std is not None:  # read through the base types' own methods, never the program's
        if std in ("Counter", "OrderedDict", "defaultdict"):
            items = dict.items(value)  # type: ignore[arg-type]
            pairs = [[encode(k, table, repr_of, d), encode(v, table, repr_of, d)] for k, v in items]
            return {std: pairs}
        if std == "deque":
            return {std: [encode(v, table, repr_of, d) for v in list(value)]}  # type: ignore[call-overload]
        if std == "Fraction":
            return {std: [value.numerator, value.denominator]}  # type: ignore[attr-defined]
        return {std: str(value)}  # Decimal
    return {"h": table.add(value), "type": kind.__qualname__, "repr": repr_of(value)}  # type: ignore[operator]


_STANDARD = {  # module -> types sent as data; a program can only hold them if it imported them
    "collections": ("Counter", "OrderedDict", "defaultdict", "deque"),
    "fractions": ("Fraction",),
    "decimal": ("Decimal",),
}


def _standard_kind(kind: type) -> str | None:
    import sys

    for module_name, names in _STANDARD.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name in names:
            if getattr(module, name, None) is kind:
                return name
    return None


# ---------------------------------------------------------------- values, judge side


class Handle:
    """An object that lives in the program's process. Set by the judge: `_call` performs one
    operation on it in the program and returns plain data (or another handle)."""

    __slots__ = ("_call", "number", "text", "type_name")

    def __init__(self, number: int, type_name: str, text: str, call: object) -> None:
        self.number = number
        self.type_name = type_name
        self.text = text
        self._call = call

    def __repr__(self) -> str:
        return self.text

    def _refuse(self, *_args: object) -> bool:
        raise TypeError(
            f"cannot compare an object of the program's type {self.type_name}: only plain data "
            "(numbers, strings, bytes, None, lists, tuples, dicts, sets) is compared outside "
            "the sandbox"
        )

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse

    def __hash__(self) -> int:
        return hash(("fixloop-handle", self.number))

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._call("call", self, args, kwargs)  # type: ignore[operator]

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._call("getattr", self, (name,), {})  # type: ignore[operator]

    def __getitem__(self, key: object) -> object:
        return self._call("getitem", self, (key,), {})  # type: ignore[operator]

    def __iter__(self) -> object:
        return iter(_checked(self._call("list", self, (), {}), list, "iter"))  # type: ignore[operator]

    def __len__(self) -> int:
        n = _checked(self._call("len", self, (), {}), int, "len")  # type: ignore[operator]
        if n < 0:
            raise ValueError("__len__() should return >= 0")
        return n

    def __bool__(self) -> bool:
        return _checked(self._call("bool", self, (), {}), bool, "bool")  # type: ignore[operator]

    def __contains__(self, item: object) -> bool:
        return item in list(self)  # compared here: the program never sees what is looked for

    def __str__(self) -> str:
        return _checked(self._call("str", self, (), {}), str, "str")  # type: ignore[operator]

    def __int__(self) -> int:
        return _checked(self._call("int", self, (), {}), int, "int")  # type: ignore[operator]

    __index__ = __int__

    def __float__(self) -> float:
        return _checked(self._call("float", self, (), {}), float, "float")  # type: ignore[operator]


def _checked(value: object, kind: type, what: str) -> object:
    if type(value) is not kind:
        raise TypeError(
            f"{what}() of a program object returned {type(value).__name__}, not {kind.__name__}"
        )
    return value


def decode(data: object, make_handle: object, depth: int = 0) -> object:
    """Tagged JSON data from the program -> plain Python data and handles. Raises WireError."""
    kind = type(data)
    if kind in _PLAIN_EXACT:
        return data
    if depth > MAX_DEPTH:
        raise WireError("the value is nested too deeply")
    d = depth + 1
    if kind is list:
        return [decode(v, make_handle, d) for v in data]  # type: ignore[attr-defined]
    if kind is not dict or not data:
        raise WireError(f"unexpected {kind.__name__} in a value")
    try:
        ((tag, body),) = data.items()  # type: ignore[attr-defined]
    except ValueError:
        if "h" in data:  # type: ignore[operator]
            return make_handle(int(data["h"]), str(data.get("type")), str(data.get("repr")))  # type: ignore[index,operator]
        raise WireError("a value with several tags") from None
    try:
        if tag == "t":
            return tuple(decode(v, make_handle, d) for v in body)
        if tag == "d":
            return {decode(k, make_handle, d): decode(v, make_handle, d) for k, v in body}
        if tag == "s":
            return {decode(v, make_handle, d) for v in body}
        if tag == "f":
            return frozenset(decode(v, make_handle, d) for v in body)
        if tag == "b":
            return bytes.fromhex(body)
        if tag == "B":
            return bytearray.fromhex(body)
        if tag == "c":
            return complex(float(body[0]), float(body[1]))
        if tag == "F":
            return float(body)
        if tag == "I":
            return int(body, 16)
        if tag == "r":
            return range(int(body[0]), int(body[1]), int(body[2]))
        if tag in ("Counter", "OrderedDict", "defaultdict"):
            import collections

            pairs = [(decode(k, make_handle, d), decode(v, make_handle, d)) for k, v in body]
            # a defaultdict's factory stays in the program: its contents compare as a dict
            if tag == "defaultdict":
                return dict(pairs)
            return getattr(collections, tag)(dict(pairs) if tag == "Counter" else pairs)
        if tag == "deque":
            import collections

            return collections.deque(decode(v, make_handle, d) for v in body)
        if tag == "Fraction":
            import fractions

            return fractions.Fraction(int(body[0]), int(body[1]))
        if tag == "Decimal":
            import decimal

            return decimal.Decimal(str(body))
    except (TypeError, ValueError) as exc:  # unhashable keys, bad numbers, wrong shapes
        raise WireError(f"a malformed {tag!r} value: {exc}") from None
    raise WireError(f"unknown value tag {tag!r}")
