"""The `fixloop` command. With no subcommand it opens the TUI in the current directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from agent import __version__
from agent.errors import FixloopError
from fixloop.cli import (
    config_cmd,
    data_cmd,
    eval_cmd,
    exec_cmd,
    models_cmd,
    prefs_cmd,
    repo_cmd,
    selfplay_cmd,
    sessions_cmd,
    solve_cmd,
    train_cmd,
    tui_cmd,
)
from fixloop.cli.common import AdapterOpt, BaseUrlOpt, ModelOpt, NCtxOpt, State, fail


class FixloopGroup(TyperGroup):
    """The root command: the one place a user-facing error becomes `error: ...` and exit 2.

    Every :class:`FixloopError` raised by any subcommand (or by the TUI launched with
    none) ends here; its message already names the problem and the fix, so no
    traceback is shown. Commands catch an error themselves only to do more with it
    (another exit code, a hint, cleanup).
    """

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except FixloopError as exc:
            fail(str(exc))


app = typer.Typer(
    cls=FixloopGroup,
    name="fixloop",
    help="A local coding agent that writes, runs and repairs code, and learns from your fixes.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_cmd.app, name="models")
app.add_typer(config_cmd.app, name="config")
app.command("exec")(exec_cmd.exec_command)
app.command("solve")(solve_cmd.solve)
app.add_typer(sessions_cmd.app, name="sessions")
app.command("eval")(eval_cmd.eval_command)
app.add_typer(data_cmd.app, name="data")
data_cmd.app.command("selfplay")(selfplay_cmd.selfplay)
app.add_typer(prefs_cmd.app, name="prefs")
app.command("train")(train_cmd.train)
app.command("export")(train_cmd.export)
app.command("gate")(train_cmd.gate)
app.command("retrain")(train_cmd.retrain)
app.command("replay")(tui_cmd.replay)
repo_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fixloop {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    adapter: AdapterOpt = None,
    n_ctx: NCtxOpt = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Config file (default: XDG config).")
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Open the TUI (no subcommand) or run a subcommand."""
    State.overrides = {
        k: v
        for k, v in {
            "model": model,
            "base_url": base_url,
            "adapter": adapter,
            "n_ctx": n_ctx,
        }.items()
        if v is not None
    }
    State.config_path = config
    if ctx.invoked_subcommand is None:
        from fixloop.cli.launch import launch_default

        launch_default()


def main() -> None:
    app()
