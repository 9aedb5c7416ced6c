"""Reporting evaluation results: the results JSON, a side-by-side table, a pass-by-turn plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.metrics import PairedComparison, compliance_metric, paired_comparison
from evals.results import RateOut, SuiteResult


def comparisons(results: Sequence[SuiteResult]) -> list[dict[str, Any]]:
    """Every later model against the first, on the tasks both ran: first attempt and final."""
    if len(results) < 2:
        return []
    base = results[0]
    out: list[dict[str, Any]] = []
    for other in results[1:]:
        first = paired_comparison(base.task_passed(True), other.task_passed(True))
        final = paired_comparison(base.task_passed(), other.task_passed())
        item: dict[str, Any] = {
            "a": base.model,
            "b": other.model,
            "first_attempt": first.as_dict(),
            f"within_{min(base.max_turns, other.max_turns)}_turns": final.as_dict(),
        }
        for pref in preferences(results):
            follows = paired_comparison(base.task_followed(pref), other.task_followed(pref))
            item[compliance_metric(pref)] = follows.as_dict()
        out.append(item)
    return out


def preferences(results: Sequence[SuiteResult]) -> list[str]:
    """The preferences any of the runs measured compliance with."""
    return sorted({p for r in results for p in r.compliance})


def results_json(results: Sequence[SuiteResult]) -> dict[str, Any]:
    """Per task and totals for every model, and the paired comparisons."""
    return {
        "runs": [r.model_dump(mode="json") for r in results],
        "comparisons": comparisons(results),
    }


def write_json(results: Sequence[SuiteResult], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results_json(results), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _until(result: SuiteResult) -> str:
    return {
        None: "",
        "pass": ", until one passed",
        "public-pass": ", until one passed the prompt's tests",
    }[result.stop_at]


def _cell(rate: RateOut | None) -> str:
    return rate.short() if rate is not None else "-"


def _flips(cmp: PairedComparison) -> str:
    return f"+{len(cmp.only_b)} / -{len(cmp.only_a)} (p={cmp.p_value:.3g})"


def table(results: Sequence[SuiteResult]) -> str:
    """Rows of metrics, one column per model (rates as count/n, percent and 95% interval)."""
    if not results:
        return "(no results)"
    rows: list[tuple[str, list[str]]] = []
    head = results[0]
    rows.append(("suite", [f"{r.suite} ({r.n_tasks} tasks)" for r in results]))
    rows.append(("policy", [r.policy for r in results]))
    rows.append(("pass@1 (first attempt)", [_cell(r.pass_at_1) for r in results]))
    max_turns = max(r.max_turns for r in results)
    for t in range(2, max_turns + 1):
        rows.append((f"pass within {t} turns", [_cell(r.pass_within.get(t)) for r in results]))
    max_k = max(r.samples for r in results)
    for k in sorted({k for r in results for k in r.pass_at_k if k > 1}):
        cells = [_cell(r.pass_at_k.get(k)) for r in results]
        rows.append((f"pass@{k} ({k} samples, 1 turn)", cells))
    if max_k > 1:
        rows.append(
            (
                "samples per task",
                [f"{r.samples}{_until(r)}" for r in results],
            )
        )
    for pref in preferences(results):
        rows.append((compliance_metric(pref), [_cell(r.compliance.get(pref)) for r in results]))
    rows.append(("episodes (errors)", [f"{r.episodes} ({r.errors})" for r in results]))
    rows.append(("tokens generated", [f"{r.completion_tokens:,}" for r in results]))
    rows.append(("prompt tokens sent", [f"{r.prompt_tokens:,}" for r in results]))
    rows.append(
        (
            "prompt tokens evaluated",
            [
                "-" if r.prompt_tokens_evaluated is None else f"{r.prompt_tokens_evaluated:,}"
                for r in results
            ],
        )
    )
    rows.append(("model time", [f"{r.gen_s:.1f} s" for r in results]))
    rows.append(("tokens/s", [f"{r.tokens_per_s:.1f}" for r in results]))
    rows.append(("sandbox time", [f"{r.exec_s:.1f} s" for r in results]))
    rows.append(("wall time (episodes)", [f"{r.wall_s:.1f} s" for r in results]))
    rows.append(("wall per episode", [f"{r.wall_s / max(r.episodes, 1):.2f} s" for r in results]))
    rows.append(("harness overhead", [f"{r.overhead_s:.1f} s" for r in results]))
    if len(results) > 1:
        cmp_first = [""] + [
            _flips(paired_comparison(head.task_passed(True), r.task_passed(True)))
            for r in results[1:]
        ]
        cmp_final = [""] + [
            _flips(paired_comparison(head.task_passed(), r.task_passed())) for r in results[1:]
        ]
        rows.append((f"vs {head.model}: first attempt", cmp_first))
        rows.append((f"vs {head.model}: final", cmp_final))
        for pref in preferences(results):
            cells = [""] + [
                _flips(paired_comparison(head.task_followed(pref), r.task_followed(pref)))
                for r in results[1:]
            ]
            rows.append((f"vs {head.model}: {compliance_metric(pref)}", cells))
    names = [r.model for r in results]
    label_w = max(len(label) for label, _ in rows)
    widths = [
        max(len(names[i]), *(len(cells[i]) for _, cells in rows)) for i in range(len(results))
    ]
    lines = [
        " | ".join([" " * label_w, *(n.ljust(w) for n, w in zip(names, widths, strict=True))]),
        "-+-".join(["-" * label_w, *("-" * w for w in widths)]),
    ]
    for label, cells in rows:
        padded = (c.ljust(w) for c, w in zip(cells, widths, strict=True))
        lines.append(" | ".join([label.ljust(label_w), *padded]))
    return "\n".join(line.rstrip() for line in lines)


def flips_text(results: Sequence[SuiteResult]) -> str:
    """Which tasks flipped each way between the first model and each other one."""
    lines: list[str] = []
    for item in comparisons(results):
        for key, value in item.items():
            if not isinstance(value, dict):
                continue
            a_only = ", ".join(value["only_a"]) or "none"
            b_only = ", ".join(value["only_b"]) or "none"
            lines.append(
                f"{item['b']} vs {item['a']} ({key.replace('_', ' ')}): "
                f"gained [{b_only}]; lost [{a_only}]; "
                f"McNemar exact p={value['mcnemar_exact_p']:.3g}"
            )
    return "\n".join(lines)


def plot(results: Sequence[SuiteResult], path: Path, title: str | None = None) -> Path:
    """PNG: pass rate by turn budget, one line per model (95% intervals as bands); where
    a model drew several samples, pass@k by k samples of one turn dashed beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in results:
        turns = sorted(r.pass_within)
        rates = [100 * r.pass_within[t].rate for t in turns]
        low = [100 * r.pass_within[t].ci95[0] for t in turns]
        high = [100 * r.pass_within[t].ci95[1] for t in turns]
        (line,) = ax.plot(turns, rates, marker="o", label=f"{r.model}: repair loop")
        ax.fill_between(turns, low, high, alpha=0.12, color=line.get_color())
        if r.samples > 1:
            ks = sorted(r.pass_at_k)
            ax.plot(
                ks,
                [100 * r.pass_at_k[k].rate for k in ks],
                linestyle="--",
                marker="s",
                color=line.get_color(),
                label=f"{r.model}: pass@k, k samples of 1 turn",
            )
    max_x = max([max(r.pass_within) for r in results] + [max(r.pass_at_k) for r in results])
    ax.set_xticks(range(1, max_x + 1))
    ax.set_xlabel("turns (or samples) per task")
    ax.set_ylabel("tasks passed (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    suite = results[0].suite if results else ""
    n = results[0].n_tasks if results else 0
    ax.set_title(title or f"{suite}: pass rate by turn budget ({n} tasks)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_compliance(results: Sequence[SuiteResult], path: Path) -> Path | None:
    """PNG: per preference, the share of tasks whose final program follows it, one bar per
    model with its 95% interval (None: no result measured a preference)."""
    prefs = preferences(results)
    if not prefs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.8 + 0.9 * len(prefs) * max(1, len(results)) / 2), dpi=120)
    height = 0.8 / len(results)
    for i, r in enumerate(results):
        ys = [p + (i - (len(results) - 1) / 2) * height for p in range(len(prefs))]
        rates = [r.compliance.get(pref) for pref in prefs]
        values = [100 * x.rate if x else 0.0 for x in rates]
        errors = [
            [100 * (x.rate - x.ci95[0]) if x else 0.0 for x in rates],
            [100 * (x.ci95[1] - x.rate) if x else 0.0 for x in rates],
        ]
        ax.barh(ys, values, height=height, xerr=errors, capsize=3, label=r.model)
    ax.set_yticks(range(len(prefs)))
    ax.set_yticklabels([p if len(p) <= 40 else p[:38] + "..." for p in prefs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("tasks whose final program follows the preference (%)")
    n = results[0].n_tasks
    ax.set_title(f"{results[0].suite}: compliance ({n} tasks, 95% intervals)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


LOOP_KEYS = ("suite", "policy", "max_turns", "samples", "temperature", "seed", "stop_at")


def figures(result: SuiteResult) -> dict[str, Any]:
    """What a shipped version's manifest records of a run: the loop it ran, pass within
    each attempt count, and every task's first passing attempt (None: none passed)."""
    loop = result.model_dump(mode="json", include=set(LOOP_KEYS))
    return {
        **loop,
        "n_tasks": result.n_tasks,
        "pass_within": {str(k): int(v.count) for k, v in result.pass_within.items()},
        "pass_turn": {t.task_id: (t.pass_turns or [None])[0] for t in result.tasks},
    }


def read_results_json(path: Path) -> list[SuiteResult]:
    """The runs of a results.json written by `fixloop eval`, through their schema."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [SuiteResult.model_validate(r) for r in data["runs"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a results.json written by `fixloop eval` ({exc}); give the "
            "results.json from the eval's --out directory."
        ) from exc


def recorded_figures(path: Path, model: str) -> dict[str, Any]:
    """One model's `figures` from a results.json written by `fixloop eval`."""
    runs = read_results_json(path)
    mine = [r for r in runs if r.model == model]
    if len(mine) != 1:
        found = sorted({r.model for r in runs})
        raise ValueError(
            f"{path} holds no single run of {model!r} (its models: {', '.join(found)}); "
            f"evaluate it with `fixloop eval --model {model}` first."
        )
    return figures(mine[0])


def against_recorded(result: SuiteResult, recorded: Sequence[dict[str, Any]]) -> str | None:
    """This run of a shipped version against the figures its manifest recorded for the same
    suite and loop, task by task (None when none was recorded for this loop)."""
    mine = figures(result)
    same = [r for r in recorded if all(r.get(k) == mine[k] for k in LOOP_KEYS)]
    if not same:
        return None
    then, now = same[0]["pass_turn"], mine["pass_turn"]
    common = [t for t in now if t in then]
    differ = [t for t in common if now[t] != then[t]]
    passed_now = sum(now[t] is not None for t in common)
    passed_then = sum(then[t] is not None for t in common)
    head = (
        f"{result.model} against its recorded figures on {len(common)} of "
        f"{same[0]['n_tasks']} tasks: {passed_now} passed now, {passed_then} recorded; "
    )
    if not differ:
        return head + "every task passed at the recorded attempt."
    first = [t for t in differ if (then[t] == 1) != (now[t] == 1)]
    later = [t for t in differ if t not in first]
    if first:
        text = f"{len(first)} differ at the first attempt (recorded attempt -> now): "
        text += _shown(first, then, now)
    else:
        text = f"the first attempt is as recorded on all {len(common)}"
    if later:
        text += (
            f"; {len(later)} differ only in the repair turns: {_shown(later, then, now)}. "
            "A repair turn continues on the cached prompt, whose last bits depend on the "
            "CPU's kernels, so another machine can change it (docs/BENCHMARKS.md, "
            '"The shipped adapter on a new machine")'
        )
    return head + text + "."


def _shown(tasks: Sequence[str], then: dict[str, Any], now: dict[str, Any]) -> str:
    shown = ", ".join(f"{t} ({then[t]} -> {now[t]})" for t in tasks[:8])
    return shown + (f" and {len(tasks) - 8} more" if len(tasks) > 8 else "")
