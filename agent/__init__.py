"""fixloop's core: models, sandbox, repair loop, session log, git workspace.

This package never imports textual: every UI is a consumer of the typed event
stream that :mod:`agent.loop` yields.
"""

__version__ = "0.1.0"
