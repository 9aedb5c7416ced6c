"""`fixloop config show`: the effective settings and where each value came from."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import SecretStr

from agent import paths
from fixloop.cli.common import State, settings_with_origin

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command()
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print each setting, its value and its source (default, file, env, flag)."""
    cfg, origin = settings_with_origin()
    rows = {}
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        if isinstance(value, SecretStr):
            value = "********"
        rows[name] = {"value": None if value is None else str(value), "source": origin[name]}
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"config file: {State.config_path or paths.config_file()}")
    for name, row in rows.items():
        typer.echo(f"{name:14} = {row['value']!s:48} ({row['source']})")
