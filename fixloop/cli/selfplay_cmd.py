"""`fixloop data selfplay`: the model proposes new practice tasks; execution keeps good ones.

fixloop data selfplay [--from mbpp|sessions] [-n PROPOSALS] [-k SOLUTIONS] [--out FILE]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fixloop.cli.common import AdapterOpt, BaseUrlOpt, ModelOpt, NCtxOpt, fail, settings


def selfplay(
    source: Annotated[
        str, typer.Option("--from", help="Seed tasks: mbpp (its train split) or sessions.")
    ] = "mbpp",
    proposals: Annotated[int, typer.Option("--proposals", "-n", help="Tasks to propose.")] = 20,
    solutions: Annotated[
        int, typer.Option("--solutions", "-k", help="Solutions sampled per proposed task.")
    ] = 4,
    examples: Annotated[int, typer.Option("--examples", help="Seed tasks shown per proposal.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Base sampling seed.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where the kept tasks go (default DATA_DIR/selfplay/...)."),
    ] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    adapter: AdapterOpt = None,
    n_ctx: NCtxOpt = None,
) -> None:
    """Self-play: new tasks with tests, kept if some sampled solution passes them, a stub fails
    them, they run fast and deterministically and they are not evaluation tasks."""
    from tqdm import tqdm

    from agent.backends import make_backend
    from evals.suites import load_mbpp
    from trainer.data.selfplay import SelfPlayConfig, evaluation_texts, user_tasks, write_tasks
    from trainer.data.selfplay import selfplay as run_selfplay

    if proposals < 1 or solutions < 1 or examples < 1:
        fail("--proposals, --solutions and --examples must be at least 1")
    cfg = settings(model=model, base_url=base_url, adapter=adapter, n_ctx=n_ctx)
    if source == "mbpp":
        seeds = load_mbpp("train")
    elif source == "sessions":
        seeds = user_tasks(cfg.sessions_dir)
        if not seeds:
            fail(
                f"no tasks with assert tests in {cfg.sessions_dir} to seed from "
                "(held-out tasks are never used); use --from mbpp"
            )
    else:
        fail(f"--from {source!r}: use mbpp or sessions")
    target = out or cfg.data_dir / "selfplay" / f"selfplay-{source}.jsonl"
    eval_sets = evaluation_texts(cfg.sessions_dir)
    backend = make_backend(cfg)
    config = SelfPlayConfig(proposals=proposals, solutions=solutions, examples=examples, seed=seed)
    bar = tqdm(total=proposals, desc="proposing tasks", unit="task")

    def progress(_stage: str, done: int, _total: int) -> None:
        bar.n = done
        bar.refresh()

    try:
        result = run_selfplay(seeds, backend, config, eval_sets=eval_sets, progress=progress)
    finally:
        bar.close()
    report = write_tasks(result, target)
    counts = result.counts()
    dropped = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "kept" and v)
    checked = ", ".join(f"{k} ({v})" for k, v in result.eval_sets.items()) or "none found"
    typer.echo(
        f"kept {counts['kept']} of {len(result.outcomes)} proposed tasks"
        + (f"; dropped: {dropped}" if dropped else "")
    )
    typer.echo(f"checked against evaluation tasks: {checked}")
    typer.echo(f"wrote {target} and {report}")
    if counts["kept"]:
        typer.echo(f"next: fixloop data seed --suite {target}")
