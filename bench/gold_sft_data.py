"""SFT rows from MBPP train's reference programs: the control for the learning loop (issue 13).

ILF (Chen et al. 2023) measures its feedback-trained model against fine-tuning on MBPP's
gold programs. This writes that baseline's dataset: for each MBPP train task, the agent's
own first turn (`agent.prompts`: system prompt and task prompt, the public tests shown) and
the reference program as the assistant's reply, kept only if it passes the task's tests
in the sandbox. Rows are split into train and held-out train tasks as `fixloop data build`
splits them (`split_of`), so `fixloop train --method sft --data OUT` reads it as any
built dataset. Only the train split (ids 601-974) is read; no validation or test task.

    .venv/bin/python bench/gold_sft_data.py --out runs/gold/data
    fixloop train --method sft --base qwen2.5-coder-0.5b --data runs/gold/data --epochs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def gold_rows(limit: int | None = None) -> tuple[list[dict], list[str]]:
    """(rows, task ids whose reference program failed its own tests)."""
    from agent.prompts import SYSTEM, code_reply, task_prompt
    from agent.sandbox.limits import SandboxLimits
    from agent.sandbox.sandbox import Sandbox
    from evals.suites import load_mbpp, mbpp_references
    from trainer.data.build import BuildOptions, split_of

    held_out = BuildOptions.validation_fraction  # the share `fixloop data build` holds out
    references = mbpp_references("train")
    tasks = load_mbpp("train")[:limit]
    sandbox = Sandbox(SandboxLimits(timeout_s=10.0))
    rows, failed = [], []
    for task in tasks:
        # MBPP's references indent with tabs and end lines with spaces; the sandbox checks
        # the tidied program, which is what the model is taught.
        lines = references[str(task.task_id)].replace("\t", "    ").splitlines()
        code = "\n".join(line.rstrip() for line in lines).strip("\n")
        if not sandbox.run_asserts(code, list(task.tests), task.test_setup).passed:
            failed.append(str(task.task_id))
            continue
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": task_prompt(task)},
            {"role": "assistant", "content": code_reply(code)},
        ]
        rows.append(
            {
                "messages": messages,
                "source": "mbpp-reference",
                "task_key": task.task_id,
                "task_id": task.task_id,
                "split": split_of(str(task.task_id), held_out),
            }
        )
    return rows, failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, help="the first N train tasks")
    args = ap.parse_args()
    start = time.perf_counter()
    rows, failed = gold_rows(args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "sft.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    held = sum(r["split"] == "validation" for r in rows)
    print(
        f"{len(rows)} rows ({len(rows) - held} train, {held} held out) -> {args.out / 'sft.jsonl'};"
        f" {len(failed)} reference programs failed their tests and were left out"
        f"{': ' + ', '.join(failed) if failed else ''}; {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
