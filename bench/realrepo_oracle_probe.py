"""How often a model fixes a real-bug benchmark bug when told which function holds it.

An upper bound for `bench/bench_realrepo.py`: localization is given. For each bug of
`bench/realrepo/manifest.toml` (prepared by `bench_realrepo.py --dry-run`), the model is
shown the failure as fixloop describes it (`fixloop context`: pytest's E lines, the
traceback and each frame's locals) and the manifest's function alone, and asked for the
bug and the corrected function. K replies (the first greedy, the rest at T 0.8) are
spliced into the file by name (`agent.workspace.partial.splice_partial`) and the bug's test
command is run on a copy of the repository.

    .venv/bin/python bench/bench_realrepo.py --dry-run      # prepares the repositories
    .venv/bin/python bench/realrepo_oracle_probe.py --model qwen2.5-coder-1.5b -k 4
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.workspace.partial import splice_partial  # noqa: E402

SYSTEM = "You are a careful programmer. You fix bugs with the smallest change."
REPOS = Path.home() / ".cache" / "fixloop" / "bench-realrepo" / "repos"


def function_source(text: str, qualified: str) -> tuple[str, int]:
    """The source of `f` or `Class.method` in `text`, dedented, and its first line."""
    scope: ast.Module | ast.ClassDef = ast.parse(text)
    *owners, name = qualified.split(".")
    for owner in owners:
        scope = next(n for n in scope.body if isinstance(n, ast.ClassDef) and n.name == owner)
    node = next(
        n
        for n in scope.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
    )
    lines = text.splitlines()[node.lineno - 1 : node.end_lineno]
    return textwrap.dedent("\n".join(lines)), node.lineno


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("-k", type=int, default=4, help="replies per bug (the first greedy)")
    ap.add_argument("--only", action="append", help="bug id (repeatable)")
    args = ap.parse_args()

    from llama_cpp import Llama

    from agent.backends.llama_repack import model_params, repack_enabled
    from agent.config import load_settings
    from agent.models import Registry
    from agent.models.provision import model_path

    settings, _ = load_settings()
    spec = Registry(settings.data_dir).get(args.model)
    gguf = model_path(spec, settings.cache_dir)
    with model_params(repack=repack_enabled(settings.llama_repack)):
        llm = Llama(str(gguf), n_ctx=4096, n_threads=settings.n_threads or 2, verbose=False)
    manifest = tomllib.loads((ROOT / "bench/realrepo/manifest.toml").read_text())
    total = 0
    for bug in manifest["bugs"]:
        if args.only and bug["id"] not in args.only:
            continue
        lib = manifest["libraries"][bug["library"]]
        repo = REPOS / f"dry-{bug['id']}"
        options = f" {lib['test_options']}" if lib["test_options"] else ""
        cmd = f"python -m pytest -x -q{options} {bug['test_file']} -k {bug['test']}"
        context_cmd = ["context", "--repo", str(repo), "--test-cmd", cmd, "--estimate", "--json"]
        ctx = subprocess.run(
            [sys.executable, "-m", "fixloop", *context_cmd],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        first = json.loads(ctx.stdout)["messages"][1]["content"]
        failure = first.split("currently fails:", 1)[1].split("\n\nThe ", 1)[0].strip()
        current = (repo / bug["file"]).read_text()
        code, line = function_source(current, bug["function"])
        prompt = (
            f"The test command `{cmd}` fails:\n\n{failure}\n\nThe bug is in this function, "
            f"`{bug['function']}` ({bug['file']}, line {line}):\n\n```python\n{code}\n```\n\n"
            "Find the bug: compare what the test expects with what the function does, using "
            "the values above. Then reply with the corrected function, complete, in one "
            "```python code block."
        )
        fixed = 0
        for i in range(args.k):
            start = time.perf_counter()
            reply = llm.create_chat_completion(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                max_tokens=800,
                temperature=0.0 if i == 0 else 0.8,
                seed=i,
            )
            text = reply["choices"][0]["message"]["content"]
            block = re.search(r"```(?:python)?\n(.*?)```", text, re.S)
            new = splice_partial(current, block.group(1)) if block else None
            if block is None:
                verdict = "no code"
            elif new is None or new == current:
                verdict = "unchanged" if new == current else "not spliced"
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    work = Path(tmp) / "repo"
                    shutil.copytree(repo, work)
                    (work / bug["file"]).write_text(new)
                    run = subprocess.run(cmd.split(), cwd=work, capture_output=True, text=True)
                verdict = "PASS" if run.returncode == 0 else "fail"
            fixed += verdict == "PASS"
            tokens = reply["usage"]["completion_tokens"]
            print(
                f"{bug['id']} reply {i}: {verdict} ({tokens} tokens, "
                f"{time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        total += fixed
        print(f"{bug['id']}: {fixed}/{args.k} replies fixed it", flush=True)
    print(f"all bugs: {total} replies fixed their bug")


if __name__ == "__main__":
    main()
