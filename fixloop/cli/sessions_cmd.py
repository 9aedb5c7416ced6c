"""`fixloop sessions ...`: the log format's JSON Schema, the list of sessions, one session."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from fixloop.cli.common import settings

app = typer.Typer(help="Inspect logged sessions.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def schema() -> None:
    """Print the JSON Schema of one log line (any event; line 1 is session_started)."""
    from agent.events import EVENT_ADAPTER, SCHEMA_VERSION

    doc = EVENT_ADAPTER.json_schema()
    doc["title"] = f"fixloop session log event (schema version {SCHEMA_VERSION})"
    typer.echo(json.dumps(doc, indent=2))


@app.command("list")
def list_cmd(
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Newest N sessions.")] = 50,
) -> None:
    """The logged sessions, newest last: id, start time, model, outcome, turns, task."""
    from agent.session_log import list_sessions

    cfg = settings()
    rows = list_sessions(cfg.sessions_dir)[-limit:] if limit > 0 else []
    if as_json:
        typer.echo(
            json.dumps([{**vars(r), "path": str(r.path)} for r in rows], indent=2, default=str)
        )
        return
    if not rows:
        typer.echo(f"no sessions under {cfg.sessions_dir}")
        return
    typer.echo(f"{'SESSION':24} {'STARTED':16} {'PURPOSE':7} {'OUTCOME':9} {'TURNS':>5}  TASK")
    for r in rows:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
        outcome = r.outcome or ("unreadable" if r.error else "-")
        task = r.task if len(r.task) <= 50 else r.task[:47] + "..."
        typer.echo(f"{r.session_id:24} {started:16} {r.purpose:7} {outcome:9} {r.turns:>5}  {task}")
    typer.echo(f"\n{len(rows)} session(s) under {cfg.sessions_dir}")


@app.command()
def show(
    session_id: Annotated[str, typer.Argument(help="Session id (or a unique prefix).")],
    as_json: JsonOpt = False,
) -> None:
    """One session: header, then every event (prompts, replies, runs, user actions, outcome)."""
    from agent.session_log import find_session, read_session

    cfg = settings()
    record = read_session(find_session(cfg.sessions_dir, session_id))
    if as_json:
        for event in [record.header, *record.events]:
            typer.echo(event.model_dump_json())
        return
    h = record.header
    typer.echo(f"session {h.session_id}  ({record.path})")
    typer.echo(f"model:   {h.model.key} [{h.model.backend}] {h.model.location or ''}")
    typer.echo(f"purpose: {h.purpose}  fixloop {h.fixloop_version}  schema {h.schema_version}")
    typer.echo(f"task:    {h.task.text.strip()}")
    for test in h.task.tests:
        typer.echo(f"         {test}")
    if record.torn_tail:
        typer.secho("(the last line was cut off by a crash and is skipped)", fg="yellow")
    for event in record.events:
        typer.echo(describe(event))


def describe(event: object) -> str:
    """A readable rendering of one event, a few lines at most for long texts."""
    from agent.events import (
        CodeProposed,
        ContextTrimmed,
        EpisodeFinished,
        ErrorRaised,
        ExecFinished,
        FormatError,
        ModelReplied,
        PromptSent,
        RepairRequested,
        TurnStarted,
        UserAccepted,
        UserEdited,
        UserFeedback,
        UserRejected,
    )

    def indent(text: str) -> str:
        return "\n".join("    " + line for line in text.rstrip().splitlines())

    seq = f"{getattr(event, 'seq', 0):>4} "
    if isinstance(event, TurnStarted):
        return f"\n{seq}== turn {event.turn} =="
    if isinstance(event, PromptSent):
        s = event.sampling
        return (
            f"{seq}prompt: {len(event.messages)} messages, {event.prompt_tokens} tokens, "
            f"temperature {s.temperature}, seed {s.seed}"
        )
    if isinstance(event, ModelReplied):
        return (
            f"{seq}reply ({event.completion_tokens} tokens, {event.tokens_per_s:.1f} tok/s, "
            f"{event.finish_reason}):\n{indent(event.text)}"
        )
    if isinstance(event, CodeProposed):
        dup = f" (same as turn {event.duplicate_of})" if event.duplicate_of is not None else ""
        return f"{seq}code{dup}"
    if isinstance(event, ExecFinished):
        r = event.result
        label = "hidden tests" if event.hidden else "run"
        failing = [t for t in r.tests if t.status != "passed"][:3]
        lines = [f"{seq}{label}: {r.status} {r.n_passed}/{r.n_tests} ({r.duration_s:.2f}s)"]
        lines += [f"      {t.status}: {t.name}  {t.message}".rstrip() for t in failing]
        return "\n".join(lines)
    if isinstance(event, RepairRequested):
        return f"{seq}feedback ({event.reason}):\n{indent(event.feedback)}"
    if isinstance(event, FormatError):
        return f"{seq}format error: {event.message}"
    if isinstance(event, ContextTrimmed):
        return (
            f"{seq}context trimmed: dropped {event.dropped_messages} messages, "
            f"{event.tokens_before} -> {event.tokens_after} tokens (n_ctx {event.n_ctx})"
        )
    if isinstance(event, UserFeedback):
        return f"{seq}user feedback: {event.text}"
    if isinstance(event, UserEdited):
        status = event.result.status if event.result else "not run"
        return f"{seq}user edited the code ({status})"
    if isinstance(event, UserAccepted):
        return f"{seq}accepted{' (edited)' if event.edited else ''}"
    if isinstance(event, UserRejected):
        return f"{seq}rejected: {event.reason}"
    if isinstance(event, ErrorRaised):
        return f"{seq}error ({event.where}): {event.message}"
    if isinstance(event, EpisodeFinished):
        extra = ""
        if event.hidden_passed is not None:
            extra = f", hidden tests {'passed' if event.hidden_passed else 'failed'}"
        return (
            f"{seq}episode {event.outcome}: best turn {event.best_turn}, "
            f"{event.best_passed}/{event.n_tests} tests{extra}, {event.turns} turns, "
            f"{event.duration_s:.1f}s"
        )
    return f"{seq}{getattr(event, 'type', type(event).__name__)}"
