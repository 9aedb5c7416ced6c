"""Options and helpers shared by every command, so model selection works the same everywhere."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from agent.config import PolicyName, Settings, load_settings

# The model/backend options. Every command that runs a model takes exactly these.
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Registered model name or version.")
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="OpenAI-compatible endpoint (llama.cpp server, vLLM, Ollama); several servers "
        "of one model: comma-separated.",
    ),
]
AdapterOpt = Annotated[
    Path | None, typer.Option("--adapter", help="LoRA adapter (GGUF) applied at load time.")
]
NCtxOpt = Annotated[int | None, typer.Option("--n-ctx", help="Context window in tokens.")]
PolicyOpt = Annotated[
    PolicyName | None,
    typer.Option(
        "--policy",
        help="After a failed attempt: greedy (repair), sampled (repair turns at T 0.8), "
        "restart (from the task when no better than the best so far), mixed (repair when "
        "some tests pass, else restart), adaptive (mixed; a repair that did not improve "
        "starts over), fresh (adaptive; a restart is the task alone, no note), resample "
        "(never repair: a new sample of the task after every failure). "
        "Default: the `policy` setting.",
    ),
]


class State:
    """Global flags given before the subcommand (`fixloop --model X solve ...`)."""

    overrides: dict[str, Any] = {}  # noqa: RUF012 - process-wide CLI state
    config_path: Path | None = None


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error (what is wrong and how to fix it) and exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def read_input(path: Path, what: str, *, allow_nul: bool = False) -> str:
    """The UTF-8 text of a file named on the command line; a clear error for anything else."""
    from agent.textfile import read_text

    try:  # not UTF-8 text: a NotTextError, reported by the root command
        return read_text(path, f"{what} {path}", allow_nul=allow_nul)
    except FileNotFoundError:
        fail(f"{what} {path} not found")
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror or exc}")


def check_sessions_dir(cfg: Settings) -> None:
    """Fail now, before any work, when the session logs could not be written."""
    from agent.session_log import ensure_sessions_dir

    ensure_sessions_dir(cfg.sessions_dir)


def settings(**flags: Any) -> Settings:
    """Effective settings: global flags, then this command's flags on top."""
    merged = {**State.overrides, **{k: v for k, v in flags.items() if v is not None}}
    return load_settings(merged, State.config_path)[0]


def settings_with_origin(**flags: Any) -> tuple[Settings, dict[str, str]]:
    merged = {**State.overrides, **{k: v for k, v in flags.items() if v is not None}}
    return load_settings(merged, State.config_path)


def is_tty() -> bool:
    return sys.stdout.isatty()
