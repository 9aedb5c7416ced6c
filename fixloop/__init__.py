"""fixloop: the command-line entry point that ties agent, tui and trainer together."""

from agent import __version__

__all__ = ["__version__"]
