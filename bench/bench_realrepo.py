"""The real-bug benchmark: fixloop fixes one injected bug at a time in real libraries.

Each bug of `bench/realrepo/manifest.toml` is a single-function change of one of the kinds
real commits fix (off-by-one, wrong branch, wrong operator, swapped arguments, a missing edge
case) to a small pure-Python library from its source distribution (licences recorded in the
manifest and bench/realrepo/README.md; the sources are downloaded, never committed here).
For each bug and model the script:

1. downloads the sdist (`pip download --no-binary :all: --no-deps NAME==VERSION`, cached,
   sha256 checked), unpacks it into a fresh git repository and commits it;
2. applies `bench/realrepo/patches/ID.patch` and commits it (the bug is in HEAD, as in a
   user's repository), then leaves the user's uncommitted work: a line appended to
   `user_file` and an untracked NOTES.local.txt;
3. runs the real command line

       fixloop solve "Make the failing test pass." --repo REPO --accept --json --model M \
           --test-cmd "python -m pytest -x -q [OPTIONS] TEST_FILE -k TEST"

4. and checks what a user would: the episode passed and fixloop committed (only the bug's
   file), the named tests pass and the whole test file passes afterwards (run directly), the
   user's uncommitted work is exactly as it was; from the session log: turns, completion
   tokens (total and per turn), seconds per turn, the first prompt's tokens, and the replies
   refused for rewriting a file the model was not shown whole.

Results are appended to WORK/results.jsonl as each run ends (`--resume` skips the runs
already there); a summary table per model is printed at the end.

    .venv/bin/python bench/bench_realrepo.py --dry-run            # no model: check the bugs
    .venv/bin/python bench/bench_realrepo.py --model qwen2.5-coder-1.5b --resume
    .venv/bin/python bench/bench_realrepo.py --only semver --model qwen2.5-coder-0.5b
    # the same bugs with fixloop as it was before a change (a checkout of an older commit):
    git worktree add /tmp/fixloop-before COMMIT
    .venv/bin/python bench/bench_realrepo.py --resume --label before \
        --fixloop "env PYTHONPATH=/tmp/fixloop-before .venv/bin/python -m fixloop"

`--dry-run` prepares every repository and checks, without any model: the sdist's sha256;
that the patch changes exactly the manifest's function; that the released library passes
the named tests and its whole test file; that with the bug the test command fails and every
test of the file it breaks is named by `test`; and, with `--context`, that `fixloop context`
(token estimate, no model) shows the buggy function whole.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.realrepo_prep import (  # noqa: E402
    Bug,
    git,
    load_manifest,
    log,
    prepare,
    user_work_intact,
)

TASK = "Make the failing test pass."
MODELS = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")
REFUSALS = ("You were not shown all of", "holds fixloop's note", "would delete most of it")
_FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.M)  # node ids may hold spaces


# ---------------------------------------------------------------- running tests directly
def pytest_argv(bug: Bug, *, selected: bool, extra: tuple[str, ...] = ()) -> list[str]:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"]
    argv += shlex.split(bug.library.test_options) + list(extra) + [bug.test_file]
    return argv + (["-k", bug.test] if selected else [])


def run_pytest(repo: Path, argv: list[str], timeout: float = 600) -> tuple[int, list[str], str]:
    proc = subprocess.run(
        argv, cwd=repo, capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc.returncode, _FAILED.findall(proc.stdout), proc.stdout[-2000:]


def selected_tests(bug: Bug, repo: Path) -> set[str]:
    proc = subprocess.run(
        pytest_argv(bug, selected=True, extra=("--collect-only",)),
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def changed_function(repo: Path, base: str, head: str, path: str) -> set[str]:
    """The qualified names of the definitions the commit `base..head` changes lines of."""
    diff = git(repo, "diff", "--unified=0", base, head, "--", path)
    lines: set[int] = set()
    for m in re.finditer(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", diff, re.M):
        start, count = int(m[1]), int(m[2] or 1)
        lines.update(range(start, start + max(count, 1)))
    tree = ast.parse((repo / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for line in lines:
        best: tuple[int, str] | None = None
        for node, qual in _defs(tree):
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                size = (node.end_lineno or node.lineno) - node.lineno
                if best is None or size < best[0]:
                    best = (size, qual)
        names.add(best[1] if best else "<module>")
    return names


def _defs(tree: ast.Module) -> list[tuple[ast.AST, str]]:
    out: list[tuple[ast.AST, str]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.append((node, node.name))
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        out.append((item, f"{node.name}.{item.name}"))
    for node in ast.walk(tree):  # nested helpers count as their own function
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if inner is not node and isinstance(inner, ast.FunctionDef):
                    out.append((inner, f"{node.name}.<locals>.{inner.name}"))
    return out


def function_span(repo: Path, path: str, qualname: str) -> tuple[int, int] | None:
    tree = ast.parse((repo / path).read_text(encoding="utf-8"))
    for node, qual in _defs(tree):
        if qual == qualname:
            return node.lineno, node.end_lineno or node.lineno  # type: ignore[attr-defined]
    return None


# ---------------------------------------------------------------- the dry run
def dry_run_bug(bug: Bug, work: Path, cache: Path, with_context: bool) -> dict[str, Any]:
    checks: dict[str, Any] = {"bug": bug.id, "kind": bug.kind, "function": bug.function}
    upstream: dict[str, Any] = {}

    def before_bug(repo: Path) -> None:
        code, _, tail = run_pytest(repo, pytest_argv(bug, selected=True))
        upstream["named"] = code == 0
        code_all, failing, _ = run_pytest(repo, pytest_argv(bug, selected=False))
        upstream["suite"] = code_all == 0
        upstream["suite_failing"] = failing
        if code != 0:
            upstream["tail"] = tail

    prepared = prepare(bug, work / "repos" / f"dry-{bug.id}", cache, before_bug=before_bug)
    repo = prepared.repo
    checks["released_passes_named"] = upstream["named"]
    checks["released_passes_suite"] = upstream["suite"]
    changed = changed_function(repo, prepared.base, prepared.head, bug.file)
    checks["patch_changes"] = sorted(changed)
    checks["patch_is_the_function"] = changed == {bug.function}
    code, _, tail = run_pytest(repo, [*_cmd_argv(bug)])
    checks["bug_fails_test_cmd"] = code == 1
    _, failing, _ = run_pytest(repo, pytest_argv(bug, selected=False))
    selected = selected_tests(bug, repo)
    checks["failing"] = len(failing)
    checks["selected"] = len(selected)
    checks["unnamed_failures"] = sorted(set(failing) - selected)
    checks["only_named_tests_fail"] = bool(failing) and set(failing) <= selected
    checks["user_work_left"] = user_work_intact(bug, prepared)
    if with_context:
        checks.update(context_check(bug, repo))
    keys = (
        "released_passes_named",
        "released_passes_suite",
        "patch_is_the_function",
        "bug_fails_test_cmd",
        "only_named_tests_fail",
        "user_work_left",
    )
    checks["ok"] = all(checks[k] for k in keys)
    if not checks["bug_fails_test_cmd"]:
        checks["tail"] = tail
    return checks


def _cmd_argv(bug: Bug) -> list[str]:
    """The benchmark's test command as the sandbox runs it (`python` is this interpreter)."""
    argv = shlex.split(bug.test_cmd())
    return [sys.executable, *argv[1:], "-p", "no:cacheprovider"]


def context_check(bug: Bug, repo: Path) -> dict[str, Any]:
    """What `fixloop context` (no model, estimated tokens) shows of the buggy function."""
    fixloop = Path(sys.executable).parent / "fixloop"
    argv = [str(fixloop), "context", TASK, "--repo", str(repo), "--test-cmd", bug.test_cmd()]
    proc = subprocess.run(
        [*argv, "--estimate", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        return {"context_error": (proc.stderr or proc.stdout)[-500:]}
    data = json.loads(proc.stdout)
    span = function_span(repo, bug.file, bug.function)
    view = next((f for f in data["files"] if f["path"] == bug.file), None)
    shown = view is not None and (
        view["whole"]
        or (span is not None and any(a <= span[0] and span[1] <= b for a, b in view["lines"]))
    )
    return {
        "context_shows_function": shown,
        "context_file_whole": bool(view and view["whole"]),
        "context_prompt_tokens": data["prompt_tokens"],
    }


# ---------------------------------------------------------------- a real run
def solve_bug(
    bug: Bug,
    model: str,
    work: Path,
    cache: Path,
    max_turns: int,
    timeout: float,
    fixloop_cmd: list[str] | None = None,
    policy: str | None = None,
) -> dict[str, Any]:
    slug = re.sub(r"[^\w.-]+", "_", model)
    prepared = prepare(bug, work / "repos" / f"{bug.id}--{slug}", cache)
    repo = prepared.repo
    sessions = work / "sessions"
    env = {**os.environ, "FIXLOOP_SESSIONS_DIR": str(sessions)}
    fixloop = fixloop_cmd or [str(Path(sys.executable).parent / "fixloop")]
    cmd = [*fixloop, "solve", TASK, "--repo", str(repo), "--test-cmd", bug.test_cmd()]
    cmd += ["--model", model, "--max-turns", str(max_turns), "--accept", "--json"]
    if policy:
        cmd += ["--policy", policy]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        stdout, stderr, code = "", f"timed out after {timeout:.0f} s: {exc}", -1
    wall = time.perf_counter() - start
    try:
        out = json.loads(stdout)
    except json.JSONDecodeError:
        out = {}
    head = git(repo, "rev-parse", "HEAD").strip()
    committed = head != prepared.head
    files = git(repo, "show", "--name-only", "--format=", head).split() if committed else []
    named, _, _ = run_pytest(repo, pytest_argv(bug, selected=True))
    suite, failing, _ = run_pytest(repo, pytest_argv(bug, selected=False))
    result: dict[str, Any] = {
        "bug": bug.id,
        "library": bug.library.name,
        "kind": bug.kind,
        "model": model,
        "exit_code": code,
        "outcome": out.get("outcome"),
        "committed": committed,
        "commit_files": files,
        "named_tests_pass": named == 0,
        "suite_passes": suite == 0,
        "suite_failing": failing[:10],
        "fixed_and_committed": committed and files == [bug.file] and named == 0,
        "user_work_survived": user_work_intact(bug, prepared),
        "turns": out.get("turns"),
        "completion_tokens": out.get("completion_tokens"),
        "wall_s": round(wall, 1),
        "session_id": out.get("session_id"),
        "errors": (out.get("errors") or [])[:3] or ([stderr[-500:]] if not out else []),
    }
    result.update(log_figures(Path(out["log_path"])) if out.get("log_path") else {})
    return result


def log_figures(path: Path) -> dict[str, Any]:
    """Per-turn figures from the session log: tokens and seconds, refusals, the first prompt."""
    replies, refused, format_errors = [], 0, 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("type") == "model_replied":
            replies.append(event)
        elif event.get("type") == "format_error":
            format_errors += 1
            refused += any(r in event.get("message", "") for r in REFUSALS)
    return {
        "reply_tokens": [r.get("completion_tokens", 0) for r in replies],
        "reply_seconds": [round(r.get("duration_s", 0.0), 1) for r in replies],
        "first_prompt_tokens": replies[0].get("prompt_tokens") if replies else None,
        "format_errors": format_errors,
        "refused_whole_file": refused,
    }


# ---------------------------------------------------------------- reporting
def summary(rows: list[dict[str, Any]]) -> str:
    """A markdown table per model: fixed and committed, turns, tokens, time, user work."""
    out = [
        "| model | fixed+committed | whole suite passes | mean turns | mean tokens | "
        "mean tokens/turn | mean s/turn | mean wall s | user work survived | refused whole files |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        n = len(mine)

        def mean(values: list[float]) -> str:
            values = [v for v in values if v is not None]
            return f"{sum(values) / len(values):.1f}" if values else "-"

        per_turn = [t for r in mine for t in r.get("reply_tokens", [])]
        seconds = [s for r in mine for s in r.get("reply_seconds", [])]
        out.append(
            f"| {model} | {sum(r['fixed_and_committed'] for r in mine)}/{n} "
            f"| {sum(r['suite_passes'] for r in mine)}/{n} "
            f"| {mean([r['turns'] for r in mine])} "
            f"| {mean([r['completion_tokens'] for r in mine])} "
            f"| {mean(per_turn)} | {mean(seconds)} | {mean([r['wall_s'] for r in mine])} "
            f"| {sum(r['user_work_survived'] for r in mine)}/{n} "
            f"| {sum(r.get('refused_whole_file', 0) for r in mine)} |"
        )
    out += ["", "| bug | kind | model | fixed+committed | turns | tokens per turn | wall s |"]
    out.append("|---|---|---|---|---|---|---|")
    for r in rows:
        out.append(
            f"| {r['bug']} | {r['kind']} | {r['model']} | "
            f"{'yes' if r['fixed_and_committed'] else 'no'} | {r['turns']} | "
            f"{r.get('reply_tokens')} | {r['wall_s']} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", help=f"model to run (repeatable; default {', '.join(MODELS)})"
    )
    parser.add_argument("--only", action="append", help="bug id or library (repeatable)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "fixloop"
        / "bench-realrepo",
        help="sdists, repositories, session logs and results.jsonl (default: %(default)s)",
    )
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per solve")
    parser.add_argument("--resume", action="store_true", help="skip runs in results.jsonl")
    parser.add_argument(
        "--dry-run", action="store_true", help="prepare and check every bug; no model"
    )
    parser.add_argument(
        "--context", action="store_true", help="with --dry-run: check `fixloop context` too"
    )
    parser.add_argument("--list", action="store_true", help="list the bugs and exit")
    parser.add_argument(
        "--fixloop",
        help="the fixloop command to benchmark (default: this environment's), e.g. "
        "'env PYTHONPATH=/tmp/fixloop-before python -m fixloop' for the figures before a change",
    )
    parser.add_argument(
        "--policy", help="the repair policy passed to solve (default: solve's default)"
    )
    parser.add_argument("--label", help="recorded with each result instead of the model name alone")
    args = parser.parse_args()

    bugs = [
        b
        for b in load_manifest()
        if not args.only or b.id in args.only or b.library.name in args.only
    ]
    if not bugs:
        raise SystemExit(f"no bug matches --only {args.only}")
    if args.list:
        for b in bugs:
            print(f"{b.id:34} {b.kind:18} {b.file}::{b.function}  ({b.what})")
        return
    work = args.work.expanduser()
    cache = work / "sdists"
    work.mkdir(parents=True, exist_ok=True)

    if args.dry_run:
        results = []
        for i, bug in enumerate(bugs, 1):
            log(f"[{i}/{len(bugs)}] {bug.id}: preparing and checking")
            checks = dry_run_bug(bug, work, cache, args.context)
            results.append(checks)
            log(
                f"    {'ok' if checks['ok'] else 'FAILED'}: {checks['failing']} failing tests "
                f"(all named: {checks['only_named_tests_fail']}), patch changes "
                f"{checks['patch_changes']}"
                + (
                    f", context shows the function: {checks.get('context_shows_function')}"
                    if args.context
                    else ""
                )
            )
        print(json.dumps(results, indent=2))
        bad = [c["bug"] for c in results if not c["ok"]]
        ctx_bad = [
            c["bug"] for c in results if args.context and not c.get("context_shows_function")
        ]
        log(
            f"dry run: {len(results) - len(bad)}/{len(results)} bugs ready"
            + (f"; not ready: {', '.join(bad)}" if bad else "")
            + (f"; context misses the function: {', '.join(ctx_bad)}" if ctx_bad else "")
        )
        raise SystemExit(1 if bad else 0)

    models = args.model or list(MODELS)
    results_path = work / "results.jsonl"
    done: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    if args.resume and results_path.is_file():
        for line in results_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("label") == args.label:
                done.add((row["bug"], row["model"]))
            rows.append(row)
    elif results_path.exists():
        results_path.rename(results_path.with_suffix(f".{int(time.time())}.jsonl"))
    plan = [(b, m) for m in models for b in bugs if (b.id, m) not in done]
    log(f"{len(plan)} runs to do ({len(done)} already in {results_path})")
    for i, (bug, model) in enumerate(plan, 1):
        log(f"[{i}/{len(plan)}] {bug.id} with {model} ...")
        fixloop_cmd = shlex.split(args.fixloop) if args.fixloop else None
        result = solve_bug(
            bug, model, work, cache, args.max_turns, args.timeout, fixloop_cmd, args.policy
        )
        result["policy"] = args.policy or "default"
        if args.label:
            result["label"] = args.label
        with open(results_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
        rows.append(result)
        log(
            f"    {'fixed+committed' if result['fixed_and_committed'] else 'NOT fixed'}: "
            f"turns {result['turns']}, tokens {result.get('reply_tokens')}, "
            f"{result['wall_s']} s, user work survived: {result['user_work_survived']}"
        )
    print(summary([r for r in rows if r["model"] in models and r.get("label") == args.label]))


if __name__ == "__main__":
    main()
