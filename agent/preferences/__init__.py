"""The user's standing preferences as executable verifiers (AutoIF for code, issue 16).

- `store`: preferences stored versioned in `DATA_DIR/preferences/` (`PreferenceStore`).
- `verify`: a verifier `evaluate(code: str) -> bool` runs only in the sandbox
  (`VerifierRunner`); one that hangs, crashes, prints or tries the network is discarded.
- `synth`: a model writes candidate verifiers and labelled snippets, cross-validated by
  execution with AutoIF's rules (`synthesize`).
- `review`: what the user reviews before a verifier is stored (yield, cases, the re-check of
  an edit), shared by `fixloop prefs add` and the TUI's `/prefer`.
- `env`: every attempt is also checked against the active preferences
  (`PreferenceEnv`, one `TestResult` named "preference: TEXT" per preference).
- `reference`: a dozen common preferences with hand-written verifiers and labelled snippets.
"""

from agent.preferences.store import (
    Case,
    Preference,
    PreferenceError,
    PreferenceStore,
    VerifierVersion,
)

__all__ = ["Case", "Preference", "PreferenceError", "PreferenceStore", "VerifierVersion"]
