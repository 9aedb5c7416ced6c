"""The learning-loop experiment (issue 13): the base against each training recipe, resumable.

One seed run of the base over MBPP train (`fixloop data seed`), one dataset (`fixloop data
build`), then per recipe: `fixloop train`, `fixloop export` (the adapter alone as a GGUF
LoRA, or merged for LeTI, whose reward tokens change the vocabulary), and finally one
`fixloop eval` of the base and every exported recipe on MBPP validation (and HumanEval with
`--humaneval`): pass@1 and pass within --turns, 95% intervals, paired flips against the base
with McNemar's exact p (the eval's own table, saved as `report-<suite>.md`).

Every stage is an ordinary fixloop command, printed before it runs and appended to
`commands.log` with its wall time, so each figure has its command. Rerun the same command
after an interruption: seed and eval skip finished episodes, a finished training run
(`train-<recipe>.json`) and export (`export-<recipe>.json`) are not redone, and an
unfinished training run is continued with `fixloop train --resume`.

Recipes: sft (its own passing samples), sft-repair (plus repair trajectories), leti, dpo,
dpo-nll (DPO plus the chosen reply's NLL, as RPO), kto, and teacher (SFT on the --teacher
model's passing samples, strong-to-weak; seeded into its own sessions), and gold (SFT on
MBPP train's reference programs, `bench/gold_sft_data.py`: ILF's baseline, the control for
what SFT on this many tasks can do at all). Heavy stages run
one at a time: one model process on the CPU.

    .venv/bin/python bench/learning_loop.py --base qwen2.5-coder-0.5b --recipes sft \
        --seed-samples 1 --seed-turns 1 --seed-temperature 0.8 --out runs/exp05
    .venv/bin/python bench/learning_loop.py ... --dry-run      # the commands only
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from agent.config import load_settings  # noqa: E402
from agent.models.registry import Registry, UnknownModelError  # noqa: E402

FIXLOOP = [sys.executable, "-m", "fixloop"]

# recipe -> (train method, extra train flags, export flags)
RECIPES: dict[str, tuple[str, list[str], list[str]]] = {
    "sft": ("sft", [], ["--lora-only"]),
    "sft-repair": ("sft", ["--with-repair"], ["--lora-only"]),
    "leti": ("leti", [], []),
    "dpo": ("dpo", [], ["--lora-only"]),
    "dpo-nll": ("dpo", ["--rpo-alpha", "1.0"], ["--lora-only"]),
    "kto": ("kto", [], ["--lora-only"]),
    "teacher": ("sft", [], ["--lora-only"]),
    "gold": ("sft", [], ["--lora-only"]),
}
GOLD_DATA = [sys.executable, str(ROOT / "bench" / "gold_sft_data.py")]


class Runner:
    """Runs (or with dry_run, prints) fixloop commands, logging each with its wall time."""

    def __init__(self, out: Path, dry_run: bool) -> None:
        self.out, self.dry_run = out, dry_run
        out.mkdir(parents=True, exist_ok=True)

    def __call__(self, args: list[str], capture: bool = False, program: list[str] = FIXLOOP) -> str:
        shown = ["fixloop"] if program is FIXLOOP else [Path(program[-1]).relative_to(ROOT)]
        line = shlex.join([*map(str, shown), *args])
        print(f"$ {line}", file=sys.stderr, flush=True)
        if self.dry_run:
            return ""
        start = time.time()
        proc = subprocess.run(
            [*program, *args], cwd=ROOT, text=True, stdout=subprocess.PIPE if capture else None
        )
        took = time.time() - start
        with (self.out / "commands.log").open("a", encoding="utf-8") as fh:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            fh.write(f"{stamp}\t{took:.0f}s\trc={proc.returncode}\t{line}\n")
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}) after {took:.0f} s: {line}")
        return proc.stdout or ""


def seed_and_build(run: Runner, args: argparse.Namespace, model: str, name: str) -> Path:
    """Seed sessions with `model` into OUT/<name>, build them into OUT/data-<name>."""
    sessions, data = args.out / name, args.out / f"data-{name}"
    run(
        ["data", "seed", "--suite", "mbpp", "--split", "train", "--model", model]
        + ["--samples", str(args.seed_samples), "--max-turns", str(args.seed_turns)]
        + ["--temperature", str(args.seed_temperature), "--workers", str(args.workers)]
        + ["--sessions-dir", str(sessions), "--out", str(args.out / f"{name}-progress")]
        + (["--limit", str(args.seed_limit)] if args.seed_limit else [])
    )
    if not (data / "manifest.json").is_file():
        strip = ["--strip-copied-tests"] if args.strip_copied_tests else []
        run(["data", "build", "--sessions", str(sessions), "--out", str(data), *strip])
    return data


def registered(name: str) -> bool:
    """Whether this machine's registry holds `name` with its files in place.

    An export registers the model in the user's data directory, outside the run directory;
    a run restored on a fresh machine (bench/seeds/) has the export's record and the trained
    run, not the registration, so the export runs again (seconds to minutes, no training).
    """
    try:
        spec = Registry(load_settings({})[0].data_dir).get(name)
    except UnknownModelError:
        return False
    return all(p is None or p.is_file() for p in (spec.path, spec.adapter))


def train_and_export(run: Runner, args: argparse.Namespace, recipe: str, data: Path) -> str:
    """The recipe's registered model name (trained and exported once)."""
    method, train_flags, export_flags = RECIPES[recipe]
    if args.merged:
        export_flags = [f for f in export_flags if f != "--lora-only"]
    trained, exported = args.out / f"train-{recipe}.json", args.out / f"export-{recipe}.json"
    name = f"{args.base}-{recipe}-{args.out.name}"
    if exported.is_file() and registered(json.loads(exported.read_text())["name"]):
        return json.loads(exported.read_text())["name"]
    if not trained.is_file():
        parent = args.out / "train" / recipe
        unfinished = sorted(p for p in parent.glob("*") if (p / "config.json").is_file())
        if unfinished and not run.dry_run:
            run(["train", "--resume", str(unfinished[-1])])
        else:
            where = ["--base", args.base, "--data", str(data), "--out", str(parent)]
            hyper = ["--epochs", str(args.epochs), "--lr", str(args.lr)]
            run(["train", "--method", method, *where, *hyper, "--max-len", str(args.max_len),
                 *train_flags, *shlex.split(args.train_flags)])  # fmt: skip
        if run.dry_run:
            run(["export", "RUN_DIR", "--name", name, *export_flags])
            return name
        done = sorted(p for p in parent.glob("*") if (p / "metrics.json").is_file())
        if not done:
            raise SystemExit(f"no finished run under {parent}")
        trained.write_text(json.dumps({"run_dir": str(done[-1])}) + "\n")
    run_dir = json.loads(trained.read_text())["run_dir"]
    run(["export", run_dir, "--name", name, *export_flags])
    exported.write_text(json.dumps({"name": name, "run_dir": run_dir}) + "\n")
    return name


def evaluate(run: Runner, args: argparse.Namespace, models: list[str]) -> None:
    """One eval of every model per suite; the table goes to OUT/report-<suite>.md."""
    suites = [("mbpp-validation", ["--suite", "mbpp", "--split", "validation"])]
    if args.humaneval:
        suites.append(("humaneval", ["--suite", "humaneval"]))
    for name, flags in suites:
        cmd = ["eval", *flags, "--max-turns", str(args.turns), "--workers", str(args.workers)]
        cmd += ["--policy", "greedy"]  # the recorded evals' loop (the default is resample)
        cmd += [x for m in models for x in ("--model", m)]
        cmd += ["--out", str(args.out / f"eval-{name}")]
        table = run(cmd, capture=True)
        if table:
            (args.out / f"report-{name}.md").write_text(f"$ fixloop {shlex.join(cmd)}\n\n{table}")
            print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="qwen2.5-coder-0.5b")
    ap.add_argument("--recipes", default="sft", help=f"comma-separated: {', '.join(RECIPES)}")
    ap.add_argument("--teacher", default="qwen2.5-coder-1.5b", help="the teacher recipe's seed")
    ap.add_argument("--out", type=Path, default=Path("runs/learning-loop"))
    ap.add_argument("--seed-samples", type=int, default=1)
    ap.add_argument("--seed-turns", type=int, default=3)
    ap.add_argument("--seed-temperature", type=float, default=0.8)
    ap.add_argument("--seed-limit", type=int, default=None, help="first N MBPP train tasks")
    ap.add_argument(
        "--strip-copied-tests",
        action="store_true",
        help="build the data with `data build --strip-copied-tests` (use a new --out)",
    )
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument(
        "--train-flags",
        default="",
        help="more `fixloop train` options for every recipe, e.g. '--gradient-checkpointing "
        "--save-every 5' (DPO's 8 sequences of up to 1024 tokens need 24 GB without it)",
    )
    ap.add_argument("--turns", type=int, default=1, help="eval: attempts per episode")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="episodes in flight (in process, more than 1 loses the prompt cache across turns)",
    )
    ap.add_argument("--humaneval", action="store_true", help="also evaluate on HumanEval")
    ap.add_argument(
        "--merged",
        action="store_true",
        help="export every recipe merged and quantized, as `fixloop retrain` does (a GGUF "
        "LoRA applied at load time generates up to a fifth slower)",
    )
    ap.add_argument("--no-eval", action="store_true", help="stop after the exports")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args()
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        ap.error(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    run = Runner(args.out, args.dry_run)
    own_seed = any(r not in ("teacher", "gold") for r in recipes)  # those bring their data
    data = seed_and_build(run, args, args.base, "seed") if own_seed else args.out / "data-seed"
    models = [args.base]
    for recipe in recipes:
        source = data
        if recipe == "teacher":
            source = seed_and_build(run, args, args.teacher, "teacher")
        elif recipe == "gold":
            source = args.out / "data-gold"
            if not (source / "sft.jsonl").is_file():
                run(["--out", str(source)], program=GOLD_DATA)
        models.append(train_and_export(run, args, recipe, source))
    if not args.no_eval:
        evaluate(run, args, models)


if __name__ == "__main__":
    main()
