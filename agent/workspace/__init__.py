"""The git workspace: fixloop edits a real repository through a scratch copy and commits on accept.

`WorkspaceEnv` is the repair loop's environment for workspace tasks; `GitRepo`
wraps gitpython; `accept_files`, `undo_last` and `harvest` are the history
operations behind `fixloop solve --accept`, `fixloop undo` and `fixloop harvest`.
"""

from agent.workspace.commit import accept_files, commit_message, session_of
from agent.workspace.edit_format import parse_edits, render_files
from agent.workspace.edits import apply_edits
from agent.workspace.env import WorkspaceEnv
from agent.workspace.history import Harvested, Undone, harvest, undo_last
from agent.workspace.repo import ANY_GIT_ERROR, GitRepo, WorkspaceError

__all__ = [
    "ANY_GIT_ERROR",
    "GitRepo",
    "Harvested",
    "Undone",
    "WorkspaceEnv",
    "WorkspaceError",
    "accept_files",
    "apply_edits",
    "commit_message",
    "harvest",
    "parse_edits",
    "render_files",
    "session_of",
    "undo_last",
]
