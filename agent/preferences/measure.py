"""The measurement issue 16 asks for: on the reference set, with a model as the author, the
verifier yield of synthesis and the agreement of the generated verifiers with the
hand-written ones on the labelled snippet corpus (`bench/bench_preferences.py` records it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from agent.backends.base import Backend
from agent.preferences.reference import ReferencePreference, reference_set
from agent.preferences.synth import Candidate, SynthesisConfig, synthesize
from agent.preferences.verify import VerifierRunner


@dataclass
class PreferenceMeasure:
    id: str
    functions: int  # distinct functions the model wrote
    kept: int  # functions that survived cross-validation
    examples: int  # distinct examples the model wrote
    kept_examples: int
    verifier: bool  # whether a verifier came out
    agreement: float | None  # the proposed verifier vs the hand-written one, on the corpus
    kept_agreement: float | None  # the mean over every kept function
    failure: str | None
    duration_s: float
    # every function written: {"stage", "problem", "accuracy", "source"} (why each went)
    candidates: list[dict] = field(default_factory=list)

    @property
    def function_yield(self) -> float:
        return self.kept / self.functions if self.functions else 0.0


def fate(candidate: Candidate) -> dict:
    """What became of one function the model wrote, and its source."""
    c = candidate
    return {"stage": c.stage, "problem": c.problem, "accuracy": c.accuracy, "source": c.source}


def agreement(runner: VerifierRunner, source: str, ref: ReferencePreference) -> float:
    """Share of the corpus on which `source` answers as the hand-written verifier does (the
    corpus labels, which the hand-written verifiers reproduce exactly: see the tests)."""
    run = runner.run_cases(source, ref.cases)
    return run.accuracy([c.follows for c in ref.cases])


def measure(
    backend: Backend,
    config: SynthesisConfig | None = None,
    prefs: Sequence[ReferencePreference] | None = None,
    *,
    runner: VerifierRunner | None = None,
    on_result: Callable[[PreferenceMeasure], None] | None = None,
) -> list[PreferenceMeasure]:
    config = config or SynthesisConfig()
    runner = runner or VerifierRunner(timeout_s=config.timeout_s)
    out: list[PreferenceMeasure] = []
    for ref in prefs if prefs is not None else reference_set():
        result = synthesize(ref.text, backend, config, runner=runner)
        best = result.best
        kept = [agreement(runner, c.source, ref) for c in result.kept]
        row = PreferenceMeasure(
            id=ref.id,
            functions=len(result.candidates),
            kept=len(result.kept),
            examples=len(result.cases),
            kept_examples=len(result.kept_cases),
            verifier=best is not None,
            agreement=agreement(runner, best.source, ref) if best is not None else None,
            kept_agreement=sum(kept) / len(kept) if kept else None,
            failure=result.failure,
            duration_s=round(result.duration_s, 2),
            candidates=[fate(c) for c in result.candidates],
        )
        out.append(row)
        if on_result is not None:
            on_result(row)
    return out


def totals(rows: Sequence[PreferenceMeasure]) -> dict[str, float | int]:
    functions = sum(r.functions for r in rows)
    kept = sum(r.kept for r in rows)
    agreements = [r.agreement for r in rows if r.agreement is not None]
    return {
        "preferences": len(rows),
        "with_verifier": sum(r.verifier for r in rows),
        "functions": functions,
        "kept": kept,
        "function_yield": round(kept / functions, 3) if functions else 0.0,
        "mean_agreement": round(sum(agreements) / len(agreements), 3) if agreements else 0.0,
        # a preference without a verifier agrees with nothing: counted as 0
        "agreement_all": round(sum(agreements) / len(rows), 3) if rows else 0.0,
    }


def as_dicts(rows: Sequence[PreferenceMeasure]) -> list[dict]:
    return [{**asdict(r), "function_yield": round(r.function_yield, 3)} for r in rows]
