"""`fixloop eval`: pass@1, pass@k and pass within t turns of one or more models on a suite.

Runs the agent's own repair loop (every episode is a logged session with
purpose "eval"), prints a side-by-side table with 95% intervals and paired
flips, and writes results.json and pass_by_turn.png to the output directory.
Rerunning the same command continues an interrupted run.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fixloop.cli.common import (
    AdapterOpt,
    BaseUrlOpt,
    NCtxOpt,
    PolicyOpt,
    check_sessions_dir,
    fail,
    settings,
)

if TYPE_CHECKING:
    from evals.results import StopRule


def recorded_evals(data_dir: Path, name: str) -> list[dict]:
    """The figures a version's lineage recorded (a shipped adapter's manifest), if any."""
    from agent.models.registry import Registry, UnknownModelError

    try:
        return Registry(data_dir).get(name).lineage.get("evals", [])
    except UnknownModelError:  # a server's model name, say
        return []


def default_out_dir(
    data_dir: Path,
    suite: str,
    split: str | None,
    ids: str | None,
    limit: int | None,
    max_turns: int,
    samples: int,
    temperature: float,
    seed: int,
    policy: str = "greedy",
    preferences: bool = False,
    stop_at: str | None = None,
) -> Path:
    """A directory named by the arguments, so that rerunning a command resumes it (a policy
    other than greedy, and --preferences, are part of the name: greedy runs keep the names
    they always had)."""
    parts = [Path(suite).stem if suite not in ("mbpp", "humaneval", "sessions") else suite]
    if split:
        parts.append(split)
    if ids:
        parts.append("ids" + ids)
    if limit:
        parts.append(f"n{limit}")
    parts += [f"t{max_turns}", f"k{samples}", f"T{temperature:g}", f"s{seed}"]
    if policy != "greedy":
        parts.append(policy)
    if preferences:
        parts.append("prefs")
    if stop_at:
        parts.append(f"until-{stop_at}")
    name = re.sub(r"[^A-Za-z0-9.,+-]+", "_", "-".join(parts))
    return data_dir / "eval" / name


def eval_command(
    suite: Annotated[
        str,
        typer.Option("--suite", help="mbpp, humaneval, sessions, or an MBPP-format .jsonl path"),
    ] = "mbpp",
    split: Annotated[
        str | None,
        typer.Option("--split", help="MBPP: train, validation (default), prompt, test."),
    ] = None,
    ids: Annotated[
        str | None, typer.Option("--ids", help="Task id numbers, e.g. 511-520,530.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="First N tasks only.")] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model to evaluate (repeat for a side-by-side table)."),
    ] = None,
    base_url: BaseUrlOpt = None,
    adapter: AdapterOpt = None,
    n_ctx: NCtxOpt = None,
    max_turns: Annotated[
        int, typer.Option("--max-turns", min=1, max=50, help="Repair turns per episode.")
    ] = 4,
    samples: Annotated[
        int, typer.Option("--samples", min=1, help="Independent episodes per task (pass@k).")
    ] = 1,
    temperature: Annotated[
        float, typer.Option("--temperature", min=0.0, max=2.0, help="0 = greedy.")
    ] = 0.0,
    policy: PolicyOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Episodes in flight. In process: tests run while the model generates, one "
            "generation at a time (keep 1: interleaved episodes lose the prompt cache). With "
            "--base-url: up to N generations at once, for a server with N parallel slots.",
        ),
    ] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (sample i uses seed+i).")] = 0,
    stop_at_pass: Annotated[
        bool,
        typer.Option(
            "--stop-at-pass",
            help="Draw a task's --samples in order and stop at the first that passes (with "
            "--max-turns 1): pass@k is then 'one of the first k', and the costs are what "
            "sampling until a pass spends. Where the scoring tests are hidden, this is an "
            "oracle's choice of sample.",
        ),
    ] = False,
    stop_at_public_pass: Annotated[
        bool,
        typer.Option(
            "--stop-at-public-pass",
            help="As --stop-at-pass, but stop at the first sample that passes the prompt's "
            "tests and score that one, as a loop that cannot see hidden tests would.",
        ),
    ] = False,
    with_preferences: Annotated[
        bool,
        typer.Option(
            "--preferences",
            help="Apply the active preferences as a session does (listed in the prompt, every "
            "attempt checked) and report how many first programs follow each.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results JSON instead of the table.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Results directory (default: named by these arguments)."),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Evaluate models with the repair loop: pass@1, pass@k, pass within t turns, 95% CIs."""
    from evals import report
    from evals.runner import run_suite
    from evals.suites import load_suite

    if stop_at_pass and stop_at_public_pass:
        fail("--stop-at-pass and --stop-at-public-pass: give one of them")
    stop_at: StopRule | None = (
        "pass" if stop_at_pass else "public-pass" if stop_at_public_pass else None
    )
    base = settings(base_url=base_url, adapter=adapter, n_ctx=n_ctx, policy=policy)
    tasks = load_suite(suite, split=split, ids=ids, limit=limit, sessions_dir=base.sessions_dir)
    check_sessions_dir(base)  # every episode is logged there: fail before running any
    models = model or [base.model]
    if len(set(models)) != len(models):
        fail(f"--model given twice: {', '.join(models)}")
    prefs = []
    if with_preferences:
        from agent.preferences import PreferenceError, PreferenceStore

        try:
            prefs = PreferenceStore.for_data_dir(base.data_dir).require_active(
                "--preferences measures how well the models follow them"
            )
        except PreferenceError as exc:
            fail(str(exc))
    out_dir = out or default_out_dir(
        base.data_dir,
        suite,
        split,
        ids,
        limit,
        max_turns,
        samples,
        temperature,
        seed,
        base.policy,
        preferences=bool(prefs),
        stop_at=stop_at,
    )
    progress = not no_progress
    typer.echo(
        f"evaluating {', '.join(models)} on {suite}"
        + (f" ({split})" if split else "")
        + f": {len(tasks)} tasks x {samples} sample(s), up to {max_turns} turns, policy "
        f"{base.policy}"
        + (f"; preferences {', '.join(p.id for p in prefs)}" if prefs else "")
        + f"; results in {out_dir}",
        err=True,
    )
    results = []
    try:
        for name in models:
            cfg = settings(
                model=name, base_url=base_url, adapter=adapter, n_ctx=n_ctx, policy=policy
            )
            results.append(
                run_suite(
                    tasks,
                    cfg,
                    max_turns=max_turns,
                    samples=samples,
                    temperature=temperature,
                    workers=workers,
                    seed=seed,
                    out_dir=out_dir,
                    progress=progress,
                    suite_name=suite if split is None else f"{suite}/{split}",
                    preferences=prefs,
                    stop_at=stop_at,
                )
            )
    except KeyboardInterrupt:
        typer.secho(
            f"\ninterrupted: finished episodes are kept in {out_dir}; run the same command "
            "again to continue",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(130) from None
    json_path = report.write_json(results, out_dir / "results.json")
    png_path = report.plot(results, out_dir / "pass_by_turn.png")
    compliance_png = report.plot_compliance(results, out_dir / "compliance.png")
    if as_json:
        sys.stdout.write(json.dumps(report.results_json(results), indent=2) + "\n")
        return
    typer.echo(report.table(results))
    flips = report.flips_text(results)
    if flips:
        typer.echo("\n" + flips)
    for result in results:  # a shipped version against what it was measured at
        line = report.against_recorded(result, recorded_evals(base.data_dir, result.model))
        if line:
            typer.echo("\n" + line)
    typer.echo(f"\nresults: {json_path}\nplot:    {png_path}")
    if compliance_png is not None:
        typer.echo(f"compliance: {compliance_png}")
