"""End to end on a real repository: the off-by-one fixture repaired by a real model.

Copies `tests/fixtures/offbyone_repo` to a temporary directory, `git init`s and commits it,
adds uncommitted work of the user's (an edited README, an untracked file), then runs the
real command line:

    fixloop solve "Make the failing tests pass." --repo COPY \
        --test-cmd "python -m pytest -x -q" --model MODEL --accept --json

and checks what a user would: did it pass, in how many turns, is the commit exactly
fixloop's file with the `Fixloop-Session` trailer, is the user's uncommitted work untouched,
and do the repository's tests pass afterwards (run directly, outside fixloop).

    .venv/bin/python bench/bench_workspace.py --model qwen2.5-coder-1.5b --record
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "offbyone_repo"
TASK = "Make the failing tests pass."
TEST_CMD = "python -m pytest -x -q"
SECTION = "## Git workspace (end to end)"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_repo(where: Path) -> Path:
    repo = where / "offbyone"
    shutil.copytree(FIXTURE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    git(repo, "config", "user.name", "Bench")
    git(repo, "config", "user.email", "bench@example.invalid")
    with open(repo / "README.md", "a", encoding="utf-8") as fh:
        fh.write("\nThe user's uncommitted note.\n")
    (repo / "scratchpad.txt").write_text("untracked work in progress\n", encoding="utf-8")
    return repo


def run(model: str, max_turns: int, timeout: float) -> dict[str, Any]:
    fixloop = Path(sys.executable).parent / "fixloop"
    with tempfile.TemporaryDirectory(prefix="fixloop-bench-ws-") as tmp:
        repo = make_repo(Path(tmp))
        initial = git(repo, "rev-parse", "HEAD").strip()
        env = {**os.environ, "FIXLOOP_SESSIONS_DIR": str(Path(tmp) / "sessions")}
        cmd = [
            str(fixloop),
            "solve",
            TASK,
            "--repo",
            str(repo),
            "--test-cmd",
            TEST_CMD,
            "--model",
            model,
            "--max-turns",
            str(max_turns),
            "--accept",
            "--json",
        ]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        wall = time.perf_counter() - start
        try:
            out = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise SystemExit(
                f"fixloop solve printed no JSON:\n{proc.stdout}\n{proc.stderr}"
            ) from exc
        head = git(repo, "rev-parse", "HEAD").strip()
        committed = head != initial
        files = git(repo, "show", "--name-only", "--format=", head).split() if committed else []
        message = git(repo, "log", "-1", "--format=%B") if committed else ""
        status = sorted(git(repo, "status", "--porcelain").splitlines())
        after = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        replies = []
        for log in (Path(tmp) / "sessions").glob("*/*.jsonl"):
            for line in log.read_text(encoding="utf-8").splitlines():
                event = json.loads(line)
                if event["type"] in ("model_replied", "format_error"):
                    replies.append(
                        {k: event[k] for k in ("type", "turn", "text", "message") if k in event}
                    )
        return {
            "model": model,
            "outcome": out.get("outcome"),
            "turns": out.get("turns"),
            "completion_tokens": out.get("completion_tokens"),
            "wall_s": round(wall, 1),
            "committed": committed,
            "commit_files": files,
            "trailer": f"Fixloop-Session: {out.get('session_id')}" in message,
            "json_commit_is_head": (out.get("committed") or {}).get("sha") == head,
            "user_work_untouched": status == [" M README.md", "?? scratchpad.txt"],
            "tests_pass_after": after.returncode == 0,
            "final_code": out.get("final_code"),
            "replies": replies,
            "session_id": out.get("session_id"),
        }


def record(result: dict[str, Any]) -> None:
    path = ROOT / "docs" / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8")
    if SECTION not in text:
        text = text.rstrip("\n") + (
            f"\n\n{SECTION}\n\n"
            "Measured by `bench/bench_workspace.py` (see its docstring): the off-by-one fixture\n"
            "repository, the real CLI (`fixloop solve --repo ... --accept --json`), greedy\n"
            "decoding. `fixed` = the episode passed, the commit holds only `ranges.py` with the\n"
            "session trailer (and is the sha `--json` reports), the user's uncommitted work is\n"
            "untouched and the repository's tests pass when run directly afterwards.\n\n"
            "| date | machine | model | fixed | turns | tokens | wall time | notes |\n"
            "|---|---|---|---|---|---|---|---|\n"
        )
    fixed = (
        result["outcome"] == "passed"
        and result["commit_files"] == ["ranges.py"]
        and result["trailer"]
        and result["user_work_untouched"]
        and result["tests_pass_after"]
        and result["json_commit_is_head"]
    )
    notes = (
        f"outcome {result['outcome']}; commit {result['commit_files'] or 'none'}; "
        f"user work untouched: {result['user_work_untouched']}"
    )
    row = (
        f"| {date.today()} | cpu-2c (shared) | {result['model']} | {'yes' if fixed else 'no'} "
        f"| {result['turns']} | {result['completion_tokens']} | {result['wall_s']} s | {notes} |"
    )
    head, sep, tail = text.partition(SECTION)
    section, heading, rest = tail.partition("\n## ")  # this section only, not the next one
    lines = section.split("\n")
    last = max(i for i, line in enumerate(lines) if line.startswith("|"))
    lines[last + 1 : last + 1] = [row]
    path.write_text(head + sep + "\n".join(lines) + heading + rest, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the solve")
    parser.add_argument("--record", action="store_true", help="add a row to docs/BENCHMARKS.md")
    args = parser.parse_args()
    result = run(args.model, args.max_turns, args.timeout)
    print(json.dumps(result, indent=2))
    if args.record:
        record(result)
        print("recorded in docs/BENCHMARKS.md")


if __name__ == "__main__":
    main()
