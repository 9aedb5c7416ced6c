"""Plain reference for `fixloop eval`: raw llama-cpp-python, greedy, raw tracebacks as feedback.

usage: python bench/reference_repair.py MODEL.gguf TASKS.jsonl [--limit N] [--turns 4] [--out F]

Prints pass@1 (single-shot greedy) and pass within --turns turns, where each
retry sees only the raw traceback of the previous attempt. No sandbox, no
expected-vs-actual rendering, no duplicate detection, no context trimming.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from llama_cpp import Llama

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.backends.llama_repack import model_params, repack_from_environment

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("tasks")
p.add_argument("--limit", type=int)
p.add_argument("--turns", type=int, default=4)
p.add_argument("--out")
a = p.parse_args()
with open(a.tasks) as fh:
    rows = [json.loads(line) for line in fh if line.strip()][: a.limit]
with model_params(repack=repack_from_environment()):  # off on AMX CPUs: they segfault
    llm = Llama(model_path=a.model, n_ctx=4096, verbose=False, seed=0)
SYSTEM = "You are a Python programmer. Reply with the complete program in one ```python block."
first = [0] * len(rows)  # the turn at which each task first passed (0: never)
tokens, t0 = 0, time.time()
for i, row in enumerate(rows):
    tests = "\n".join(row["test_list"])
    user = f"{row['text']}\n\nYour code should pass these tests:\n```python\n{tests}\n```"
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    for turn in range(1, a.turns + 1):
        out = llm.create_chat_completion(msgs, temperature=0.0, max_tokens=1024, seed=0)
        reply = out["choices"][0]["message"]["content"] or ""
        tokens += out["usage"]["completion_tokens"]
        m = re.search(r"```(?:python|py)?\n(.*?)(?:```|$)", reply, re.S)
        prog = "\n".join([row.get("test_setup_code") or "", m.group(1) if m else reply, tests])
        try:
            run = subprocess.run(
                [sys.executable, "-c", prog], capture_output=True, text=True, timeout=10
            )
            ok, err = run.returncode == 0, run.stderr[-3000:]
        except subprocess.TimeoutExpired:
            ok, err = False, "Timeout: the program ran for more than 10 seconds."
        if ok:
            first[i] = turn
            break
        msgs += [{"role": "assistant", "content": reply}, {"role": "user", "content": err}]
    result = f"passed at turn {first[i]}" if first[i] else "failed"
    print(row["task_id"], result, f"(tokens so far: {tokens})", flush=True)
n = len(rows)
res = {
    "tasks": n,
    "pass@1": sum(f == 1 for f in first) / n,
    f"pass_within_{a.turns}": sum(f > 0 for f in first) / n,
    "passed_at_turn": {str(r["task_id"]): f for r, f in zip(rows, first, strict=True)},
    "tokens": tokens,
    "wall_s": round(time.time() - t0, 1),
}
print(json.dumps(res, indent=1))
if a.out:
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)
