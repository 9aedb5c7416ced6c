"""`fixloop accept`, `fixloop undo`, `fixloop harvest`: fixloop's commits in the user's repository.

(`fixloop context`, what the model would see of a repository, is registered here too:
:mod:`fixloop.cli.context_cmd`.)

* `accept [SESSION]` commits a workspace session's proposal (fixloop's hunks only);
  with `--edited`, the user has put their own version of the proposal's files in the
  working tree: that version is committed and the difference from the proposal is
  logged as the user's correction.
* `undo` reverts fixloop's last commit while it is still HEAD, exactly as a session
  logged making it (not amended, not a copy), and refuses otherwise.
* `harvest` finds later fixes of fixloop's commits and logs them as corrections.

Each writes to the session's log (Committed, Correction, UserRejected for an undo).
Exit status: 0 done, 1 refused (nothing changed; the message says why), 2 bad usage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from fixloop.cli.common import fail, settings

if TYPE_CHECKING:
    from agent.workspace import GitRepo

RepoOpt = Annotated[
    Path, typer.Option("--repo", help="The git repository (default: the current directory).")
]
SessionsDirOpt = Annotated[
    Path | None, typer.Option("--sessions-dir", help="Where session logs are (default: config).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _repo(path: Path) -> GitRepo:
    from agent.workspace import GitRepo, WorkspaceError

    try:
        return GitRepo(path)
    except WorkspaceError as exc:
        fail(f"{exc} fixloop commits only inside a git repository; pass --repo PATH.")


def _sessions_dir(option: Path | None) -> Path:
    return option if option is not None else settings().sessions_dir


def _refused(message: str) -> NoReturn:
    typer.secho(message, fg=typer.colors.YELLOW, err=True)
    raise typer.Exit(1)


def _latest_workspace_session(sessions_dir: Path, root: Path) -> Path:
    from agent.session_log import SessionLogError, read_session, session_files
    from agent.workspace import GitRepo

    for path in reversed(session_files(sessions_dir)):
        try:
            task = read_session(path).header.task
        except SessionLogError:
            continue
        if task.workdir and GitRepo.root_of(task.workdir) == root:
            return path
    fail(f"no workspace session for {root} under {sessions_dir}; give the session id")


def accept(
    session: Annotated[
        str | None,
        typer.Argument(help="Session id or prefix (default: the latest for this repository)."),
    ] = None,
    edited: Annotated[
        bool,
        typer.Option(
            "--edited",
            help="Commit your own version of the proposal's files, as they are in the working "
            "tree, and log the difference from the proposal as your correction.",
        ),
    ] = False,
    repo: RepoOpt = Path("."),
    sessions_dir: SessionsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Commit a workspace session's proposal (fixloop's hunks only; `--edited`: your version)."""
    from agent.session_log import find_session, read_session
    from agent.workspace import GitRepo, WorkspaceError
    from agent.workspace.sessionlog import accept_logged

    with _repo(repo) as git_repo:
        where = _sessions_dir(sessions_dir)
        log = (
            find_session(where, session)
            if session
            else _latest_workspace_session(where, git_repo.root)
        )
        record = read_session(log)
        workdir = record.header.task.workdir
        if not workdir or GitRepo.root_of(workdir) != git_repo.root:
            fail(
                f"session {record.session_id} worked on {workdir or 'no repository'}, not "
                f"{git_repo.root}; pass the right --repo"
            )
        try:
            done = accept_logged(git_repo, record, edited)
        except WorkspaceError as exc:  # a refusal, not an input error: exit 1
            _refused(str(exc))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "sha": done.sha,
                    "files": done.files,
                    "session_id": record.session_id,
                    "correction_logged": done.corrected,
                    "log_path": str(log),
                },
                indent=2,
            )
        )
        return
    typer.echo(
        f"committed {done.sha[:10]} ({', '.join(done.files)}) for session {record.session_id}"
    )
    if edited:
        typer.echo(
            "your edits were logged as a correction"
            if done.corrected
            else "no difference from the proposal: no correction logged"
        )


def undo(
    repo: RepoOpt = Path("."), sessions_dir: SessionsDirOpt = None, as_json: JsonOpt = False
) -> None:
    """Revert fixloop's last commit while it is still HEAD (your uncommitted work is kept)."""
    from agent.events import UserRejected
    from agent.session_log import read_session
    from agent.workspace import WorkspaceError, undo_last
    from agent.workspace.sessionlog import append_events

    with _repo(repo) as git_repo:
        try:
            undone = undo_last(git_repo, _sessions_dir(sessions_dir))
        except WorkspaceError as exc:
            _refused(str(exc))
        head = git_repo.head_sha() or ""
    log = undone.log
    turns = [getattr(e, "turn", 0) for e in read_session(log).events]
    reason = f"undone with `fixloop undo` ({undone.sha[:10]})"
    append_events(log, [UserRejected(turn=max(turns, default=0), reason=reason)])
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "undone": undone.sha,
                    "head": head,
                    "session_id": undone.session_id,
                    "files": undone.files,
                    "logged": True,
                },
                indent=2,
            )
        )
        return
    typer.echo(
        f"undid {undone.sha[:10]} {undone.subject!r} ({', '.join(undone.files)}); "
        f"HEAD is now {head[:10]}"
    )


def harvest(
    repo: RepoOpt = Path("."),
    window: Annotated[
        int, typer.Option("--window", help="Commits after a fixloop commit to look at.")
    ] = 10,
    sessions_dir: SessionsDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Log later fixes (follow-up commits, amends) of fixloop's commits as corrections."""
    from agent.workspace import harvest as find_corrections
    from agent.workspace.sessionlog import append_events, logged_corrections, session_log_for

    with _repo(repo) as git_repo:
        found = find_corrections(git_repo, window=window)
    where = _sessions_dir(sessions_dir)
    rows = []
    for item in found:
        log = session_log_for(where, item.session_id)
        if log is None:
            state = "no session log here"
        elif item.fix_sha in logged_corrections(log):
            state = "already logged"
        else:
            append_events(log, [item.correction])
            state = "logged"
        rows.append(
            {
                "session_id": item.session_id,
                "fixloop_commit": item.fixloop_sha,
                "fix_commit": item.fix_sha,
                "kind": item.kind,
                "files": sorted(item.correction.final),
                "state": state,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no corrections of fixloop commits within {window} commits")
    for r in rows:
        typer.echo(
            f"{r['kind']:9} {r['fixloop_commit'][:10]} -> {r['fix_commit'][:10]}  "
            f"session {r['session_id']}  {', '.join(r['files'])}  [{r['state']}]"
        )


def register(app: typer.Typer) -> None:
    """Add `accept`, `undo`, `harvest` and `context` to the `fixloop` command."""
    from fixloop.cli.context_cmd import context

    app.command("accept")(accept)
    app.command("undo")(undo)
    app.command("harvest")(harvest)
    app.command("context")(context)
