"""Preference verifiers (issue 16): synthesis yield and agreement with hand-written verifiers.

For each preference of the reference set (agent/preferences/reference), the model writes K
candidate verifiers and labelled examples; AutoIF's cross-validation keeps some (see
agent/preferences/synth.py). Reported per preference and in total: functions written and
kept (the yield), distinct examples written and kept, and the agreement of the proposed
verifier with the hand-written one on the reference snippet corpus (about 10 snippets per
preference). Every verifier runs in the sandbox.

    .venv/bin/python bench/bench_preferences.py --model qwen2.5-coder-1.5b --record
    .venv/bin/python bench/bench_preferences.py --model qwen2.5-coder-1.5b --only no_print -k 4
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.backends import make_backend  # noqa: E402
from agent.config import load_settings  # noqa: E402
from agent.preferences.measure import PreferenceMeasure, as_dicts, measure, totals  # noqa: E402
from agent.preferences.reference import reference_set  # noqa: E402
from agent.preferences.synth import SynthesisConfig  # noqa: E402
from bench.benchmarks_md import add_rows  # noqa: E402

SECTION = "## Preference verifiers (AutoIF)"


def record(rows: list[str]) -> None:
    add_rows(
        SECTION,
        "Measured by `bench/bench_preferences.py` (see its docstring) on the 12 reference\n"
        "preferences: yield = verifiers kept / distinct verifiers written; agreement = share\n"
        "of the reference snippet corpus on which the proposed verifier answers as the\n"
        "hand-written one (a preference without a verifier counts 0 in 'all').\n\n"
        "| date | machine | model | K | thresholds | with verifier | yield | agreement "
        "(with verifier / all) |\n|---|---|---|---|---|---|---|---|",
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="registered model name, .gguf or dir")
    parser.add_argument("--samples", "-k", type=int, default=8)
    parser.add_argument("--min-functions", type=int, default=3)
    parser.add_argument("--min-cases", type=int, default=10)
    parser.add_argument("--min-accuracy", type=float, default=0.8)
    parser.add_argument("--no-back-translate", action="store_true")
    parser.add_argument("--only", action="append", help="reference ids (repeatable)")
    parser.add_argument("--machine", default="cpu-2c")
    parser.add_argument("--json", type=Path, help="write every row as JSON here")
    parser.add_argument("--record", action="store_true", help="add a row to docs/BENCHMARKS.md")
    parser.add_argument("--record-json", type=Path, help="record this --json file, run nothing")
    args = parser.parse_args()
    if args.record_json:
        record_json(args.record_json, args.machine)
        return

    settings = load_settings({"model": args.model} if args.model else {})[0]
    backend = make_backend(settings)
    config = SynthesisConfig(
        samples=args.samples,
        min_functions=args.min_functions,
        min_cases=args.min_cases,
        min_accuracy=args.min_accuracy,
        back_translate=not args.no_back_translate,
    )
    prefs = [p for p in reference_set() if not args.only or p.id in args.only]

    def show(row: PreferenceMeasure) -> None:
        agree = f"{row.agreement:.2f}" if row.agreement is not None else "-"
        print(
            f"{row.id:22} kept {row.kept}/{row.functions} functions, "
            f"{row.kept_examples}/{row.examples} examples, agreement {agree}, "
            f"{row.duration_s:.0f}s{'  ' + row.failure if row.failure else ''}",
            flush=True,
        )
        for c in row.candidates:
            if c["problem"]:
                print(f"    dropped at {c['stage']}: {c['problem'][:160]}", flush=True)

    rows = measure(backend, config, prefs, on_result=show)
    total = totals(rows)
    print(json.dumps(total, indent=2))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": backend.identity.key,
                    "config": asdict(config),
                    "totals": total,
                    "rows": as_dicts(rows),
                },
                indent=2,
            )
        )
    if args.record:
        record([table_row(args.machine, backend.identity.key, config, total)])
        print("recorded in docs/BENCHMARKS.md")


def table_row(machine: str, model: str, config: SynthesisConfig, total: dict) -> str:
    thresholds = (
        f"{config.min_functions}/{config.min_cases}/{config.min_accuracy}"
        f"{'' if config.back_translate else ', no back-translation'}"
    )
    return (
        f"| {date.today()} | {machine} | {model} | {config.samples} "
        f"| {thresholds} | {total['with_verifier']}/{total['preferences']} "
        f"| {total['function_yield']:.0%} ({total['kept']}/{total['functions']}) "
        f"| {total['mean_agreement']:.0%} / {total['agreement_all']:.0%} |"
    )


def record_json(path: Path, machine: str) -> None:
    """Record a --json file's measurement (a run that was not started with --record)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    config = SynthesisConfig(**data["config"])
    record([table_row(machine, data["model"], config, data["totals"])])
    print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
