"""Reviewing a proposed verifier before it is stored, shared by `fixloop prefs add` and the
TUI's `/prefer`: the yield line, what became of each candidate, the cases with the
verifier's answers, the re-check of a verifier the user edited, and storing the approved
version. Plain text only: each front end draws it its own way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.preferences.store import Case, Preference, VerifierVersion
from agent.preferences.synth import SynthesisResult, check_verifier
from agent.preferences.verify import VerifierRun, VerifierRunner

CASE_CHARS = 72


def yield_line(result: SynthesisResult) -> str:
    """One line: verifiers written and kept (the yield), examples written and kept, time."""
    report = result.report()
    return (
        f"{report['functions_generated']} verifier(s) from {report['samples']} sample(s): "
        f"{report['functions_kept']} kept (yield {report['function_yield']:.0%}); "
        f"examples: {report['examples_generated']} written, {report['examples_distinct']} "
        f"distinct, {report['examples_kept']} kept; {report['duration_s']:.1f}s"
    )


def candidate_lines(result: SynthesisResult) -> list[str]:
    """One line per generated verifier: kept with its accuracy, or where and why it went."""
    lines = []
    for i, candidate in enumerate(result.candidates, 1):
        head = f"#{i} (sample {candidate.sample + 1})"
        if candidate.kept:
            lines.append(f"{head} kept, accuracy {candidate.accuracy:.2f}")
        else:
            lines.append(f"{head} dropped at {candidate.stage}: {candidate.problem}")
    return lines


def proposed_answers(result: SynthesisResult) -> list[bool | None]:
    """The proposed verifier's answer on each kept case, in `result.kept_cases` order."""
    best = result.best
    if best is None:
        return []
    kept = {c.code for c in result.kept_cases}
    return [a for case, a in zip(result.cases, best.answers, strict=False) if case.code in kept]


def case_label(case: Case) -> str:
    return "follows" if case.follows else "violates"


def case_mark(case: Case, answer: bool | None) -> str:
    """' ✓' when the verifier agrees with the label, else what it said."""
    return " ✓" if answer == case.follows else f" ✗ verifier said {answer}"


def flat_code(code: str, width: int = CASE_CHARS) -> str:
    """A snippet on one line (its lines joined by ⏎), cut at `width`."""
    lines = [line.strip() for line in code.splitlines() if line.strip()]
    flat = " ⏎ ".join(lines)
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def case_line(case: Case, answer: bool | None = None, *, marked: bool = False) -> str:
    """'[follows ] ✓  from pathlib import Path ⏎ ...': the label, the verdict if `marked`."""
    mark = case_mark(case, answer) if marked else ""
    return f"[{case_label(case):8}]{mark}  {flat_code(case.code)}"


def run_line(cases: Sequence[Case], accuracy: float | None) -> str:
    """What a hand-written or edited verifier did on the cases."""
    if accuracy is None:
        return "no cases given: it loads and answers True/False on a simple program"
    return f"accuracy on {len(cases)} case(s): {accuracy:.0%}"


@dataclass
class EditCheck:
    """An edited verifier re-checked on the proposal's cases."""

    run: VerifierRun
    accuracy: float | None
    min_accuracy: float

    @property
    def usable(self) -> bool:
        return self.run.usable

    @property
    def problem(self) -> str | None:
        """Why the edit cannot be used (it stays out); None when it can."""
        if self.run.usable:
            return None
        return f"the edited verifier is unusable: {self.run.problem}"

    @property
    def warning(self) -> str | None:
        """Set when it runs but gets too few cases right: approve only if the cases are wrong."""
        if self.accuracy is None or self.accuracy >= self.min_accuracy:
            return None
        return f"below {self.min_accuracy:.0%}: approve only if the cases are wrong"


def check_edit(
    source: str,
    cases: Sequence[Case],
    min_accuracy: float,
    runner: VerifierRunner | None = None,
) -> EditCheck:
    """Re-check an edited verifier with the same cross-validation as a hand-written one."""
    run, accuracy = check_verifier(source, cases, runner)
    return EditCheck(run=run, accuracy=accuracy, min_accuracy=min_accuracy)


def edited_version(version: VerifierVersion, source: str) -> VerifierVersion:
    """`version` with the user's edit of its verifier (unchanged when the source is)."""
    if source == version.verifier:
        return version
    return version.model_copy(update={"verifier": source, "source": "edited"})


def stored_line(pref: Preference) -> str:
    return (
        f"stored preference {pref.id} (version {pref.current.version}, active): "
        "every attempt is now checked against it"
    )


@dataclass(frozen=True)
class PreferenceRow:
    """A stored preference as a list shows it."""

    id: str
    state: str  # "active" or "off"
    version: int  # 0: no verifier
    cases: int
    text: str


def preference_row(pref: Preference) -> PreferenceRow:
    version = pref.versions[-1] if pref.versions else None
    return PreferenceRow(
        id=pref.id,
        state="active" if pref.active else "off",
        version=version.version if version else 0,
        cases=len(version.cases) if version else 0,
        text=pref.text,
    )
