"""The one root of every error a user of fixloop is meant to read.

Each user-facing error (a bad config, a missing model, a broken session log, a
refused repository operation, ...) derives from :class:`FixloopError` as well as
from the builtin it always had, so existing ``except ValueError`` callers keep
working. The CLI catches :class:`FixloopError` in one place and prints its
message; internal control-flow exceptions (a malformed reply fed back to the
model, a dead fork server) do not derive from it.
"""

from __future__ import annotations


class FixloopError(Exception):
    """A user-facing error whose message names the problem and the fix.

    The message is shown as is (``error: <message>``), never with a traceback,
    so it must say what went wrong and what to do about it.
    """

    def __str__(self) -> str:
        # KeyError (and others) would quote or tuple-format their args; the message is the text.
        if len(self.args) == 1 and isinstance(self.args[0], str):
            return self.args[0]
        return super().__str__()
