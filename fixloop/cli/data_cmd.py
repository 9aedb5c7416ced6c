"""`fixloop data`: compile session logs into training datasets, and seed sessions without a human.

fixloop data build [--sessions DIR ...] [--out DIR] [--formats leti,sft,...]
fixloop data seed --suite mbpp --split train [--samples K] [--limit N] [--model NAME]
fixloop data summary [DIR]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from fixloop.cli.common import (
    AdapterOpt,
    BaseUrlOpt,
    ModelOpt,
    NCtxOpt,
    PolicyOpt,
    check_sessions_dir,
    fail,
    settings,
)

app = typer.Typer(
    help="Compile session logs into feedback-tuning datasets (LeTI, ILF, SFT, DPO, KTO, RLEF).",
    no_args_is_help=True,
)

ALL_FORMATS = "leti,ilf,sft,dpo,kto,episodes"


def _formats(spec: list[str] | None) -> tuple[str, ...]:
    from trainer.data.formats import FORMATS

    if not spec:
        return FORMATS
    chosen = [f.strip() for item in spec for f in item.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        fail(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(chosen))


@app.command("build")
def build_cmd(
    sessions: Annotated[
        list[Path] | None,
        typer.Option("--sessions", "-s", help="Session log directory or file (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: DATA_DIR/datasets)."),
    ] = None,
    formats: Annotated[
        list[str] | None,
        typer.Option("--formats", "-f", help=f"Formats to write, comma-separated ({ALL_FORMATS})."),
    ] = None,
    validation_fraction: Annotated[
        float, typer.Option("--validation-fraction", help="Share of TASKS held for validation.")
    ] = 0.1,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Drop rows longer than this many tokens.")
    ] = 4096,
    near_duplicate: Annotated[
        float,
        typer.Option(
            "--near-duplicate", help="Similarity at which rows count as duplicates (1: off)."
        ),
    ] = 0.95,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="Count tokens with this tokenizer dir, .gguf or model name (default: a proxy).",
        ),
    ] = None,
    strip_copied_tests: Annotated[
        bool,
        typer.Option(
            "--strip-copied-tests",
            help="Drop the task's asserts that a trained reply repeats (SFT, repair, DPO, KTO).",
        ),
    ] = False,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Write summary.png.")] = True,
) -> None:
    """Compile every logged session into leti/ilf/sft/dpo/kto/episodes JSONL and a manifest."""
    from trainer.data.build import BuildOptions, build
    from trainer.data.summary import chart as draw_chart
    from trainer.data.summary import summarize, table

    cfg = settings()
    sources = sessions or [cfg.sessions_dir]
    missing = [str(p) for p in sources if not Path(p).exists()]
    if missing:
        fail(
            f"no sessions at {', '.join(missing)}: pass a directory of session logs with "
            "--sessions DIR (fixloop writes them under sessions/; `fixloop data seed` makes some)"
        )
    target = out or cfg.data_dir / "datasets"
    try:
        options = BuildOptions(
            sessions=[Path(p) for p in sources],
            out=target,
            formats=_formats(formats),
            validation_fraction=validation_fraction,
            max_tokens=max_tokens,
            near_duplicate_threshold=near_duplicate,
            tokenizer=tokenizer,
            strip_copied_tests=strip_copied_tests,
            progress=True,
        )
    except ValueError as exc:
        fail(str(exc))
    started = time.perf_counter()
    try:
        result = build(options)
    except (ValueError, RuntimeError) as exc:  # a bad --tokenizer: the message says why
        fail(str(exc))
    for problem in result.problems:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    for refusal in result.refused:
        typer.secho(f"refused: {refusal}", fg=typer.colors.YELLOW, err=True)
    if result.sessions == 0:
        fail(
            f"no usable sessions under {', '.join(map(str, sources))} "
            f"({len(result.problems)} log problems, {len(result.refused)} refused)",
            code=1,
        )
    summary = summarize(target)
    typer.echo(table(summary))
    if chart:
        typer.echo(f"chart: {draw_chart(summary, target / 'summary.png')}")
    typer.echo(
        f"wrote {', '.join(f'{f}.jsonl' for f in options.formats)} and manifest.json to {target} "
        f"from {result.sessions} sessions in {time.perf_counter() - started:.1f} s"
    )


@app.command("summary")
def summary_cmd(
    directory: Annotated[
        Path | None, typer.Argument(help="A build directory (default: DATA_DIR/datasets).")
    ] = None,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Write summary.png.")] = True,
) -> None:
    """Print the table of a build (rows per format, pass/fail balance, feedback kinds)."""
    from trainer.data.summary import chart as draw_chart
    from trainer.data.summary import summarize, table

    target = directory or settings().data_dir / "datasets"
    try:
        summary = summarize(target)
    except FileNotFoundError as exc:
        fail(str(exc))
    typer.echo(table(summary))
    if chart:
        typer.echo(f"chart: {draw_chart(summary, target / 'summary.png')}")


@app.command("hidden-tests")
def hidden_tests_cmd(
    split: Annotated[str, typer.Option(help="MBPP split to derive for (train).")] = "train",
    workers: Annotated[int, typer.Option(help="Sandbox jobs in parallel.")] = 2,
) -> None:
    """Derive RLEF's hidden tests for MBPP: the reference solution on varied inputs.

    Written beside the split (`<split>_hidden.jsonl`); resumable; the tasks then carry them
    (`fixloop data seed` and `train --method rlef` reward on them, never shown to the model).
    """
    from evals.hidden_tests import derive_split, hidden_path
    from evals.suites import MBPP_SPLITS, mbpp_dir

    if split not in MBPP_SPLITS or split in ("test", "validation"):
        fail(f"derive hidden tests for a training split (train or prompt), not {split!r}")
    path = mbpp_dir() / f"{split}.jsonl"
    if not path.is_file():
        fail(f"{path} not found: MBPP's {split} split is needed to derive its hidden tests")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    out = hidden_path(path)
    kept, total = derive_split(rows, out, workers=workers)
    typer.echo(f"{kept} of {total} tasks have hidden tests; written to {out}")


@app.command("seed")
def seed_cmd(
    suite: Annotated[str, typer.Option("--suite", help="mbpp, or a .jsonl task file.")] = "mbpp",
    split: Annotated[
        str, typer.Option("--split", help="Split to seed from (never test or validation).")
    ] = "train",
    samples: Annotated[int, typer.Option("--samples", "-k", help="Episodes per task.")] = 1,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="First N tasks only.")] = None,
    ids: Annotated[str | None, typer.Option("--ids", help="Task ids, e.g. 601-650.")] = None,
    max_turns: Annotated[int, typer.Option("--max-turns", help="Attempts per episode.")] = 3,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", help="Sampling temperature (default 0, or 0.8 with -k>1)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Episodes in flight: in process, tests overlap generation; with --base-url, "
            "up to N generations at once (a server with N parallel slots).",
        ),
    ] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Base sampling seed.")] = 0,
    sessions_dir: Annotated[
        Path | None, typer.Option("--sessions-dir", help="Where the session logs go.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Progress file directory (resume by rerunning the same)."),
    ] = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    adapter: AdapterOpt = None,
    n_ctx: NCtxOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """LeTI without a human: run the agent over train tasks with the sandbox as teacher.

    Every episode is logged as a session (purpose "seed") that `fixloop data build`
    compiles. Interrupted? Run the same command again: finished episodes are skipped.
    """
    from trainer.data.seed import SEED_POLICY, SeedError, seed_sessions, seed_tasks

    try:
        tasks = seed_tasks(suite, split, ids=ids, limit=limit)
    except SeedError as exc:
        fail(str(exc))
    cfg = settings(
        model=model,
        base_url=base_url,
        adapter=adapter,
        n_ctx=n_ctx,
        sessions_dir=sessions_dir,
        policy=policy or SEED_POLICY,
    )
    check_sessions_dir(cfg)  # every episode is logged there: fail before running any
    target = out or cfg.data_dir / "seed" / f"{Path(suite).stem}-{split}"
    typer.echo(
        f"seeding {len(tasks)} tasks x {samples} sample(s), up to {max_turns} turns, "
        f"model {cfg.base_url or cfg.model}, policy {cfg.policy}; sessions -> {cfg.sessions_dir}"
    )
    started = time.perf_counter()
    result = seed_sessions(
        tasks,
        cfg,
        out_dir=target,
        suite_name=f"{suite}-{split}",
        samples=samples,
        max_turns=max_turns,
        temperature=temperature,
        workers=workers,
        seed=seed,
    )
    wall = time.perf_counter() - started
    typer.echo(
        f"seeded {result.episodes} episodes of {result.n_tasks} tasks in {wall:.0f} s "
        f"(this run; {result.wall_s:.0f} s in all): passed {result.passed.count:.0f}"
        f"/{result.passed.n}, {result.tokens_per_s:.1f} tok/s; progress file {result.results_file}"
    )
    typer.echo(f"next: fixloop data build --sessions {cfg.sessions_dir}")
