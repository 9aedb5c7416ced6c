"""A reference set of common code preferences, for tests and measurement (issue 16, item 5).

Each has a hand-written verifier (`<id>.py` here, run as source in the sandbox like any
other verifier, never imported) and a labelled snippet corpus (`preferences.json`): about
ten snippets each, half following the preference, with some traps a string search gets wrong
(`os.path` in a comment, `%` used as modulo, `print` inside a string).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from agent.preferences.store import Case, VerifierVersion

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ReferencePreference:
    id: str
    text: str
    verifier: str  # the hand-written verifier's source
    cases: tuple[Case, ...]

    def version(self) -> VerifierVersion:
        """As a stored verifier version (`fixloop prefs add --reference ID`)."""
        return VerifierVersion(
            version=1, verifier=self.verifier, cases=list(self.cases), source="reference"
        )


@cache
def reference_set() -> tuple[ReferencePreference, ...]:
    data = json.loads((HERE / "preferences.json").read_text(encoding="utf-8"))
    return tuple(
        ReferencePreference(
            id=entry["id"],
            text=entry["text"],
            verifier=(HERE / f"{entry['id']}.py").read_text(encoding="utf-8"),
            cases=tuple(Case.model_validate(c) for c in entry["cases"]),
        )
        for entry in data["preferences"]
    )


def reference(pref_id: str) -> ReferencePreference:
    for pref in reference_set():
        if pref.id == pref_id:
            return pref
    known = ", ".join(p.id for p in reference_set())
    raise KeyError(f"no reference preference {pref_id!r} (known: {known})")
