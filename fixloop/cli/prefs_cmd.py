"""`fixloop prefs`: the user's standing preferences, checked on every attempt.

fixloop prefs add "TEXT" [--yes] [--verifier FILE [--cases FILE]] [--reference ID]
fixloop prefs list | show ID | test ID FILE.py | enable ID | disable ID | rm ID
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fixloop.cli.common import AdapterOpt, BaseUrlOpt, ModelOpt, NCtxOpt, fail, read_input, settings

if TYPE_CHECKING:
    from agent.preferences import Case, PreferenceStore, VerifierVersion
    from agent.preferences.synth import SynthesisResult
    from agent.preferences.verify import VerifierRun

app = typer.Typer(
    help="Standing preferences ('use pathlib, not os.path'): executable verifiers that check "
    "every attempt.",
    no_args_is_help=True,
)

MAX_CASES_SHOWN = 12


def _store() -> PreferenceStore:
    from agent.preferences import PreferenceStore

    return PreferenceStore.for_data_dir(settings().data_dir)


def _read_cases(path: Path) -> list[Case]:
    """Labelled snippets: a JSON list (or JSON lines) of {"code": ..., "follows": true|false}."""
    from pydantic import ValidationError

    from agent.preferences import Case

    text = read_input(path, "the cases file")
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            fail(f"the cases file {path} is neither JSON nor JSON lines ({exc})")
    if isinstance(data, dict):
        data = data.get("cases", [])
    try:
        return [Case.model_validate(item) for item in data]
    except (ValidationError, TypeError) as exc:
        fail(
            f"the cases file {path} must hold objects like "
            f'{{"code": "...", "follows": true}} ({str(exc).splitlines()[0]})'
        )


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def _show_cases(cases: list[Case], answers: list[bool | None] | None = None) -> None:
    from agent.preferences.review import case_line

    for i, case in enumerate(cases[:MAX_CASES_SHOWN]):
        marked = answers is not None and i < len(answers)
        typer.echo("  " + case_line(case, answers[i] if marked else None, marked=marked))
    if len(cases) > MAX_CASES_SHOWN:
        typer.echo(f"  ... and {len(cases) - MAX_CASES_SHOWN} more")


def _show_synthesis(result: SynthesisResult) -> None:
    from agent.preferences.review import candidate_lines, proposed_answers, yield_line

    typer.echo(f"\n{yield_line(result)}")
    for line in candidate_lines(result):
        typer.echo(f"  {line}")
    best = result.best
    if best is None:
        return
    typer.echo(f"\nproposed verifier (#{result.candidates.index(best) + 1}):")
    typer.echo(_indent(best.source))
    typer.echo(f"\ncases it was checked on ({len(result.kept_cases)}):")
    _show_cases(result.kept_cases, proposed_answers(result))


def _show_run(run: VerifierRun, cases: list[Case], accuracy: float | None) -> None:
    from agent.preferences.review import run_line

    typer.echo(run_line(cases, accuracy))
    if accuracy is not None:
        _show_cases(cases, run.answers)


def _progress_bar() -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    """A progress callback drawing one tqdm bar per stage, and a function closing the last."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="step", leave=True)
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def _approve(
    source: str, cases: list[Case], yes: bool, min_accuracy: float
) -> tuple[str, bool] | None:
    """Ask approve/edit/discard; (the verifier to store, whether it was edited), or None."""
    from agent.preferences.review import check_edit

    edited = False
    while not yes:
        choice = typer.prompt("[a]pprove, [e]dit, [d]iscard", default="a").strip().lower()
        if choice.startswith("d"):
            return None
        if choice.startswith("a"):
            break
        if not choice.startswith("e"):
            continue
        import click

        new = click.edit(source, extension=".py")
        if new is None or new.strip() == source.strip():
            typer.echo("unchanged")
            continue
        check = check_edit(new, cases, min_accuracy)
        if check.problem is not None:
            typer.secho(check.problem, fg=typer.colors.RED)
            continue
        _show_run(check.run, cases, check.accuracy)
        if check.warning is not None:
            typer.secho(check.warning, fg="yellow")
        source, edited = new, True
    return source, edited


def _store_version(text: str, version: VerifierVersion) -> None:
    from agent.preferences.review import stored_line

    typer.echo(stored_line(_store().add(text, version)))


@app.command("add")
def add(
    text: Annotated[
        str | None, typer.Argument(help="The preference, e.g. 'use pathlib, not os.path'.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Store without asking.")] = False,
    verifier: Annotated[
        Path | None,
        typer.Option(
            "--verifier", help="A hand-written verifier (defines evaluate(code) -> bool)."
        ),
    ] = None,
    cases: Annotated[
        Path | None,
        typer.Option("--cases", help='Labelled snippets for --verifier: [{"code", "follows"}].'),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="Add one of the reference set (see `prefs reference`)."),
    ] = None,
    samples: Annotated[int, typer.Option("--samples", "-k", help="Replies to sample (K).")] = 8,
    min_functions: Annotated[
        int, typer.Option("--min-functions", help="Distinct usable verifiers needed.")
    ] = 3,
    min_cases: Annotated[int, typer.Option("--min-cases", help="Distinct examples needed.")] = 10,
    min_accuracy: Annotated[
        float, typer.Option("--min-accuracy", help="Accuracy a verifier needs on kept examples.")
    ] = 0.8,
    back_translate: Annotated[
        bool,
        typer.Option("--back-translate/--no-back-translate", help="Drop contradicting verifiers."),
    ] = True,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds per verifier job in the sandbox.")
    ] = 10.0,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    adapter: AdapterOpt = None,
    n_ctx: NCtxOpt = None,
) -> None:
    """Add a preference: the model writes verifiers, the sandbox cross-checks them, you approve."""
    from agent.preferences import VerifierVersion
    from agent.preferences.review import edited_version
    from agent.preferences.synth import SynthesisConfig, check_verifier, synthesize
    from agent.preferences.verify import VerifierRunner

    if reference is not None:
        from agent.preferences.reference import reference as get_reference

        try:
            ref = get_reference(reference)
        except KeyError as exc:
            fail(str(exc.args[0]))
        typer.echo(f"reference preference {ref.id}: {ref.text}")
        _store_version(text or ref.text, ref.version())
        return
    if not text or not text.strip():
        fail("give the preference text, e.g. fixloop prefs add 'use pathlib, not os.path'")
    text = text.strip()
    if verifier is not None:
        source = read_input(verifier, "the verifier file")
        given = _read_cases(cases) if cases is not None else []
        run, accuracy = check_verifier(source, given, VerifierRunner(timeout_s=timeout))
        if not run.usable:
            fail(f"the verifier {verifier} cannot be used: it {run.problem}")
        _show_run(run, given, accuracy)
        if accuracy is not None and accuracy < min_accuracy:
            fail(
                f"the verifier gets {accuracy:.0%} of the cases right (need {min_accuracy:.0%}); "
                "fix it or the cases"
            )
        approved = _approve(source, given, yes, min_accuracy)
        if approved is None:
            typer.echo("discarded")
            raise typer.Exit(1)
        source, edited = approved
        version = VerifierVersion(
            version=1, verifier=source, cases=given, source="edited" if edited else "hand"
        )
        _store_version(text, version)
        return
    if cases is not None:
        fail("--cases goes with --verifier")
    from agent.backends import make_backend

    try:
        config = SynthesisConfig(
            samples=samples,
            min_functions=min_functions,
            min_cases=min_cases,
            min_accuracy=min_accuracy,
            back_translate=back_translate,
            timeout_s=timeout,
        )
    except ValueError as exc:
        fail(str(exc))
    cfg = settings(model=model, base_url=base_url, adapter=adapter, n_ctx=n_ctx)
    backend = make_backend(cfg)
    progress, close = _progress_bar()
    try:
        result = synthesize(
            text, backend, config, runner=VerifierRunner(timeout_s=timeout), progress=progress
        )
    finally:
        close()
    _show_synthesis(result)
    if result.best is None:
        fail(f"no verifier for {text!r}: {result.failure}", code=1)
    version = result.version()
    approved = _approve(version.verifier, version.cases, yes, min_accuracy)
    if approved is None:
        typer.echo("discarded")
        raise typer.Exit(1)
    source, _edited = approved
    _store_version(text, edited_version(version, source))


@app.command("list")
def list_prefs() -> None:
    """Every preference: id, active or not, version, cases, text."""
    prefs = _store().all()
    if not prefs:
        typer.echo('no preferences yet: fixloop prefs add "use pathlib, not os.path"')
        return
    from agent.preferences.review import preference_row

    typer.echo(f"{'ID':32} {'STATE':8} {'VER':>3} {'CASES':>5}  TEXT")
    for row in map(preference_row, prefs):
        typer.echo(f"{row.id:32} {row.state:8} {row.version:>3} {row.cases:>5}  {row.text}")


@app.command("show")
def show(
    pref_id: Annotated[str, typer.Argument(help="Preference id (or a unique prefix).")],
) -> None:
    """A preference: its text, versions, current verifier and cases."""
    pref = _store().get(pref_id)
    typer.echo(f"{pref.id}: {pref.text}")
    typer.echo(f"state: {'active' if pref.active else 'off'}")
    for v in pref.versions:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_at))
        extra = f", by {v.model}" if v.model else ""
        if v.report.get("function_yield") is not None:
            extra += f", yield {v.report['function_yield']:.0%}"
        typer.echo(f"  version {v.version}: {v.source}, {when}, {len(v.cases)} cases{extra}")
    current = pref.current
    typer.echo(f"\nverifier (version {current.version}):")
    typer.echo(_indent(current.verifier))
    if current.cases:
        typer.echo(f"\ncases ({len(current.cases)}):")
        _show_cases(current.cases)


@app.command("test")
def test(
    pref_id: Annotated[str, typer.Argument(help="Preference id (or a unique prefix).")],
    file: Annotated[Path, typer.Argument(help="A Python file to check.")],
) -> None:
    """Check one file against a preference (in the sandbox): exit 0 follows, 1 does not."""
    from agent.preferences.verify import VerifierRunner

    pref = _store().get(pref_id)
    code = read_input(file, "the file")
    run = VerifierRunner().run(pref.current.verifier, [code])
    answer = run.answers[0] if run.usable and run.answers else None
    if answer is None:
        why = run.problem or run.first_error or "it did not return True or False"
        fail(f"the verifier of {pref.id} could not decide on {file}: {why}")
    if answer:
        typer.echo(f"{file}: follows {pref.id} ({pref.text})")
        return
    typer.echo(f"{file}: does not follow {pref.id} ({pref.text})")
    raise typer.Exit(1)


@app.command("enable")
def enable(pref_id: Annotated[str, typer.Argument(help="Preference id.")]) -> None:
    """Check attempts against this preference again."""
    pref = _store().set_active(pref_id, True)
    typer.echo(f"{pref.id}: active")


@app.command("disable")
def disable(pref_id: Annotated[str, typer.Argument(help="Preference id.")]) -> None:
    """Keep the preference but stop checking attempts against it."""
    pref = _store().set_active(pref_id, False)
    typer.echo(f"{pref.id}: off")


@app.command("rm")
def rm(pref_id: Annotated[str, typer.Argument(help="Preference id.")]) -> None:
    """Delete a preference and all its versions."""
    pref = _store().remove(pref_id)
    typer.echo(f"removed {pref.id}")


@app.command("reference")
def reference_list() -> None:
    """The reference set: common preferences with hand-written verifiers (`add --reference ID`)."""
    from agent.preferences.reference import reference_set

    for ref in reference_set():
        typer.echo(f"{ref.id:24} {len(ref.cases):>3} cases  {ref.text}")
